"""What the trainer trains: the task's model, loss, training data and images.

The `Trainer` is the same for every task; a task says how its network is
built from `model_fn`, which loss it minimises and reports, which features of
the training pipeline a step reads, and what its image summaries show.
`PanopticTask` is Panoptic-DeepLab on a panoptic dataset (`data.dataset_info`).
"""

import keras

from swiderrnet_tf import common
from swiderrnet_tf.data import dataset_info as dataset_info_lib
from swiderrnet_tf.training import data_setup
from swiderrnet_tf.training import distribution
from swiderrnet_tf.training import eval_loop
from swiderrnet_tf.training import summaries
from swiderrnet_tf.training import visualization

# Order of the losses a panoptic step reports; the first is minimised.
PANOPTIC_LOSS_KEYS = (
    common.TOTAL_LOSS,
    common.SEMANTIC_LOSS,
    common.CENTER_LOSS,
    common.OFFSET_LOSS,
)
# Features a panoptic training step reads; the others stay on the host.
PANOPTIC_TRAIN_FEATURES = (
    common.IMAGE,
    common.SEMANTIC_LABEL,
    common.SEMANTIC_WEIGHTS,
    common.CENTER_TARGET,
    common.CENTER_WEIGHTS,
    common.OFFSET_TARGET,
    common.OFFSET_WEIGHTS,
)


class PanopticTask:
    """Panoptic-DeepLab on a registered panoptic dataset.

    Args:
      dataset_name: A registered dataset (`data.dataset_info`).
    """

    loss_keys = PANOPTIC_LOSS_KEYS

    def __init__(self, dataset_name: str):
        self.info = dataset_info_lib.get_dataset_info(dataset_name)

    def build_model(self, model_fn, *, sync_batch_norm: bool) -> keras.Model:
        """`model_fn(num_classes=..., sync_batch_norm=...)`, inside the strategy's scope."""
        return model_fn(num_classes=self.info.num_classes, sync_batch_norm=sync_batch_norm)

    def build_loss(self, loss_fn):
        """`loss_fn(ignore_label=...)` -> `loss(features, outputs)` with `loss_keys`."""
        return loss_fn(ignore_label=self.info.ignore_label)

    def file_pattern(self, data_dir: str, split: str) -> str:
        return data_setup.file_pattern(self.info, data_dir, split)

    def dataset(self, dataset_fn, *, file_pattern, crop_size, batch_size, input_context, seed):
        """The training pipeline of one input pipeline, holding only the step's features."""
        dataset = dataset_fn(
            dataset_info=self.info,
            file_pattern=file_pattern,
            mode="train",
            crop_size=tuple(crop_size),
            batch_size=batch_size,
            input_context=input_context,
            seed=seed,
        )
        return dataset.map(lambda f: {k: f[k] for k in PANOPTIC_TRAIN_FEATURES})

    @staticmethod
    def output_stride(model) -> int:
        return int(model.backbone.output_stride)

    def summary_images(self, strategy, model, dataset_fn, *, file_pattern, crop_size, count):
        """Fixed training images shown with their ground truth and the prediction."""
        return _PanopticImages(
            strategy, model, self.info, dataset_fn, file_pattern, crop_size, count
        )


class _PanopticImages:
    """`write(writer, step)`: image | ground truth | prediction panels."""

    def __init__(self, strategy, model, info, dataset_fn, pattern, crop_size, count):
        replicas = 1 if distribution.is_multi_worker(strategy) else strategy.num_replicas_in_sync
        dataset = dataset_fn(
            dataset_info=info,
            file_pattern=pattern,
            mode="eval",
            crop_size=tuple(crop_size),
            batch_size=count,
        )
        batch = next(iter(dataset))
        self.images = batch[common.IMAGE].numpy()
        self.ground_truth = batch[common.PANOPTIC_LABEL].numpy()
        self.info = info
        batch_size = -(-len(self.images) // replicas) * replicas
        self.predictor = eval_loop.BatchPredictor(
            strategy, eval_loop.panoptic_predictor(model, info), batch_size
        )

    def write(self, writer, step: int) -> None:
        predictions = self.predictor(self.images)[common.PANOPTIC]
        panels = visualization.comparison_panels(
            self.images, self.ground_truth, predictions, self.info
        )
        with writer.as_default():
            summaries.images("panoptic/image_truth_prediction", panels, step)
        writer.flush()
