"""ImageNet evaluation of a pre-training run: top-1 and top-5 accuracy.

Every image of the split is counted once (`build_classification_dataset` in
`eval` mode keeps the last, smaller batch; `BatchPredictor` pads it), through
the 87.5% center crop. `evaluate(...)` calls this for a classification
dataset, so `--mode=eval`, `train_and_eval` and `continuous_eval` work for
pre-training runs as for panoptic ones; results go to
`output_dir/results_step_<step>.json` and TensorBoard scalars `metrics/*`.
"""

import os

import numpy as np
from absl import logging

from swiderrnet_tf import common
from swiderrnet_tf.data import classification_info
from swiderrnet_tf.data import imagenet
from swiderrnet_tf.training import data_setup
from swiderrnet_tf.training import eval_common


class TopKAccuracy:
    """Accumulates top-1 and top-5 hits over batches of logits."""

    def __init__(self):
        self.count = 0
        self.top_1 = 0
        self.top_5 = 0

    def update(self, logits: np.ndarray, labels: np.ndarray) -> None:
        """`[n, classes]` logits and `[n]` labels."""
        # The label's rank: how many classes score strictly higher.
        true_scores = np.take_along_axis(logits, labels[:, None].astype(np.int64), axis=1)
        rank = np.sum(logits > true_scores, axis=1)
        self.count += len(labels)
        self.top_1 += int(np.sum(rank < 1))
        self.top_5 += int(np.sum(rank < 5))

    def result(self) -> dict:
        if not self.count:
            raise ValueError("no image was evaluated (is the split empty?)")
        return {
            "top_1_accuracy": 100.0 * self.top_1 / self.count,
            "top_5_accuracy": 100.0 * self.top_5 / self.count,
            "num_images": self.count,
        }


def evaluate_classifier(
    *,
    strategy,
    model_dir: str,
    model=None,
    checkpoint: str | None = None,
    output_dir: str | None = None,
    step: int | None = None,
    until_step: int | None = None,
    model_fn=None,
    dataset_name: str,
    data_dir: str | None = None,
    prepare_data_fn=None,
    dataset_fn=None,
    split: str = "val",
    crop_size=(224, 224),
    batch_size: int = 1,
    checkpoint_timeout: float | None = None,
) -> dict | None:
    """Top-1 / top-5 of a given, restored, or each new checkpoint (see `evaluate`).

    Returns:
      `{top_1_accuracy, top_5_accuracy (percent), num_images, step}` of the last
      checkpoint evaluated; None if continuous evaluation saw no checkpoint.
    """
    info = classification_info.get_classification_info(dataset_name)
    batch_size = eval_common.replica_batch_size(strategy, batch_size)
    data_dir = data_setup.resolve_data_dir(
        data_dir=data_dir, prepare_data_fn=prepare_data_fn, model_dir=model_dir
    )
    dataset = (dataset_fn or imagenet.build_classification_dataset)(
        dataset_info=info,
        file_pattern=data_setup.file_pattern(info, data_dir, split),
        mode="eval",
        image_size=int(crop_size[0]),
        batch_size=batch_size,
    )
    output_dir = output_dir or os.path.join(model_dir, "eval")
    given_model = model is not None
    if not given_model:
        if model_fn is None:
            raise ValueError(
                "evaluate.model_fn is not set (e.g. evaluate.model_fn = @build_classifier)"
            )
        with strategy.scope():
            model = model_fn(num_classes=info.num_classes)
    predictor = eval_common.BatchPredictor(
        strategy,
        lambda images: {
            common.CLASSIFICATION_LOGITS: model(images, training=False)[
                common.CLASSIFICATION_LOGITS
            ]
        },
        batch_size,
    )

    def run_once(step, where):
        accuracy = TopKAccuracy()
        for batch in dataset:
            logits = predictor(batch[common.IMAGE].numpy())[common.CLASSIFICATION_LOGITS]
            accuracy.update(logits, batch[common.LABEL].numpy())
        results = {**accuracy.result(), "step": step}
        print(
            f"\nImageNet evaluation of {info.name} {split} at {where}: "
            f"top-1 {results['top_1_accuracy']:.2f}%, top-5 {results['top_5_accuracy']:.2f}% "
            f"({accuracy.count} images)",
            flush=True,
        )
        logging.info("Classification results: %s", results)
        eval_common.write_results(results, None, output_dir)
        return results

    return eval_common.run_on_checkpoints(
        run_once,
        model=model,
        model_dir=model_dir,
        restore=not given_model,
        checkpoint=checkpoint,
        step=step,
        until_step=until_step,
        checkpoint_timeout=checkpoint_timeout,
    )
