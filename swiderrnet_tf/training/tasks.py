"""What the trainer trains: the task's model, loss, training data and images.

The `Trainer` is the same for every task; a task says how its network is
built from `model_fn`, which loss it minimises and reports, which features of
the training pipeline a step reads, and what its image summaries show.
`PanopticTask` is Panoptic-DeepLab on a panoptic dataset (`data.dataset_info`),
`ClassificationTask` the ImageNet pre-training of a backbone with its head
(`data.classification_info`); `for_dataset` picks one by the dataset's name.
"""

import keras
from absl import logging

from swiderrnet_tf import common
from swiderrnet_tf.data import classification_info
from swiderrnet_tf.data import dataset_info as dataset_info_lib
from swiderrnet_tf.data import imagenet
from swiderrnet_tf.data import pipeline
from swiderrnet_tf.data import validation
from swiderrnet_tf.losses import classification_losses
from swiderrnet_tf.losses import panoptic_losses
from swiderrnet_tf.training import data_setup
from swiderrnet_tf.training import distribution
from swiderrnet_tf.training import eval_common
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


def check_panoptic_crop(crop_size, output_stride: int) -> None:
    """Refuses crops the network cannot see; notes sizes that are not `k * stride + 1`.

    Raises:
      ValueError: A side below `output_stride + 1` (the deepest features would
        hold a single position, so every image-level context is that pixel).
    """
    for side in crop_size:
        if side < output_stride + 1:
            raise ValueError(
                f"train.crop_size {tuple(crop_size)}: each side must be at least "
                f"{output_stride + 1} (output stride {output_stride} + 1), got {side}"
            )
    if any((side - 1) % output_stride for side in crop_size):
        logging.warning(
            "train.crop_size %s is not of the form k * %d + 1 (e.g. 513, 641, 1025) that every "
            "paper recipe uses: the feature grids then do not align with the crop's corners",
            tuple(crop_size),
            output_stride,
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

    def build_loss(self, loss_fn, model):
        """`loss_fn(ignore_label=...)` (default `PanopticLoss`) -> `loss(features, outputs)`."""
        del model
        return (loss_fn or panoptic_losses.PanopticLoss)(ignore_label=self.info.ignore_label)

    def file_pattern(self, data_dir: str, split: str) -> str:
        return data_setup.file_pattern(self.info, data_dir, split)

    def check_data(self, data_dir: str, split: str, *, allow_incomplete: bool) -> None:
        """Before the first step: every file opens and holds records of this dataset."""
        validation.check_data_files(self.info, data_dir, split, allow_incomplete=allow_incomplete)

    def locate_read_error(self, data_dir, split, error, last_checkpoint):
        """A `DataError` naming the file and record that failed to read, or None."""
        return validation.locate_read_error(
            self.info, data_dir, split, error, last_checkpoint=last_checkpoint
        )

    def dataset(self, dataset_fn, *, file_pattern, crop_size, batch_size, input_context, seed):
        """The training pipeline of one input pipeline, holding only the step's features."""
        dataset = (dataset_fn or pipeline.build_dataset)(
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
    def check_crop_size(crop_size, model) -> None:
        check_panoptic_crop(crop_size, int(model.backbone.output_stride))

    def summary_images(self, strategy, model, dataset_fn, *, file_pattern, crop_size, count):
        """Fixed training images shown with their ground truth and the prediction."""
        dataset_fn = dataset_fn or pipeline.build_dataset
        return _PanopticImages(
            strategy, model, self.info, dataset_fn, file_pattern, crop_size, count
        )


class ClassificationTask:
    """ImageNet-style pre-training of a backbone with its classification head.

    Args:
      dataset_name: A registered classification dataset (`data.classification_info`).
    """

    loss_keys = classification_losses.LOSS_KEYS

    def __init__(self, dataset_name: str):
        self.info = classification_info.get_classification_info(dataset_name)

    def build_model(self, model_fn, *, sync_batch_norm: bool) -> keras.Model:
        """`model_fn(num_classes=..., sync_batch_norm=...)`, e.g. `build_classifier`."""
        return model_fn(num_classes=self.info.num_classes, sync_batch_norm=sync_batch_norm)

    def build_loss(self, loss_fn, model):
        """`loss_fn(num_classes=..., decayed_variables=...)` (default `ClassificationLoss`)."""
        return (loss_fn or classification_losses.ClassificationLoss)(
            num_classes=self.info.num_classes,
            decayed_variables=classification_losses.decayed_kernels(model),
        )

    def file_pattern(self, data_dir: str, split: str) -> str:
        return data_setup.file_pattern(self.info, data_dir, split)

    def check_data(self, data_dir: str, split: str, *, allow_incomplete: bool) -> None:
        """Before the first step: the files exist and hold records of the expected layout."""
        del allow_incomplete  # the built-in converters of classification sets write no manifest
        files = pipeline.list_files(self.file_pattern(data_dir, split))
        imagenet.check_record_layout(self.info, files)

    def locate_read_error(self, data_dir, split, error, last_checkpoint):
        """None: the read error is reported as it is."""
        return None

    def dataset(self, dataset_fn, *, file_pattern, crop_size, batch_size, input_context, seed):
        """Random-resized crops of side `crop_size[0]` with their labels."""
        return (dataset_fn or imagenet.build_classification_dataset)(
            dataset_info=self.info,
            file_pattern=file_pattern,
            mode="train",
            image_size=int(crop_size[0]),
            batch_size=batch_size,
            input_context=input_context,
            seed=seed,
        )

    @staticmethod
    def check_crop_size(crop_size, model) -> None:
        """Square crops of at least 32 (the network's stride before pooling)."""
        del model
        height, width = crop_size
        if height != width or height < 32:
            raise ValueError(
                f"train.crop_size {tuple(crop_size)}: classification trains on square crops "
                "of side 32 or more, e.g. (224, 224)"
            )

    def summary_images(self, strategy, model, dataset_fn, *, file_pattern, crop_size, count):
        """None: classification runs write no image summaries."""
        logging.info("train.image_summary_every_n_steps is ignored for classification")
        return None


def for_dataset(dataset_name: str):
    """The task of a registered dataset: classification or panoptic."""
    if dataset_name in classification_info.list_classification_datasets():
        return ClassificationTask(dataset_name)
    return PanopticTask(dataset_name)


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
        self.predictor = eval_common.BatchPredictor(
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
