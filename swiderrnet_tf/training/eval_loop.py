"""Evaluation: model outputs -> panoptic merge -> PQ, mIoU and AP.

Used by `python -m swiderrnet_tf.train --mode=eval|train_and_eval|continuous_eval`
and by `python -m swiderrnet_tf.evaluate`. The eval split is read in `eval`
mode (no augmentation, padded to `crop_size`); each batch goes through
`predict_fn(images) -> {semantic_logits, center_heatmap, offsets}` and the
Panoptic-DeepLab merge with the dataset's thing classes, label divisor and
stuff area limit; `PanopticEvaluator` accumulates the metrics. The summary
table is printed, and the numbers are written as JSON and TensorBoard scalars
into `output_dir` (default `model_dir/eval`).

`predict_fn` comes from `panoptic_predictor.predict_fn_factory(model)`, so a
multi-scale and flipped variant can replace the single-scale default.

Batches are padded to `batch_size` and split over the local replicas (TPU
cores, GPUs). In a multi-worker run only the chief evaluates, on its own.

Deliberate deviations from the paper (section 4):
  1. Single-scale inference without flipping by default. The paper's
     multi-scale and flipped numbers: bind
     `panoptic_predictor.predict_fn_factory = @multi_scale_predict_fn` and
     `multi_scale_predict_fn.dataset_name = %DATASET_NAME` (its eval scales).
  2. Images larger than `crop_size` are resized to fit (the pipeline's eval
     mode), so they are evaluated at the reduced size; the paper's configs
     use crops that hold whole images.
"""

import os

import gin
import tensorflow as tf

from swiderrnet_tf import common
from swiderrnet_tf import fileio
from swiderrnet_tf.data import classification_info
from swiderrnet_tf.data import dataset_info as dataset_info_lib
from swiderrnet_tf.data import pipeline
from swiderrnet_tf.data import validation
from swiderrnet_tf.evaluation import evaluator as evaluator_lib
from swiderrnet_tf.evaluation import report
from swiderrnet_tf.postprocess import panoptic_merge
from swiderrnet_tf.training import classification_eval
from swiderrnet_tf.training import data_setup
from swiderrnet_tf.training import eval_common

_PREDICTION_KEYS = (common.PANOPTIC, common.SEMANTIC, common.INSTANCE_SCORES)


def single_scale_predict_fn(model):
    """`predict_fn(images)`: the model's outputs at the input scale, inference mode."""

    def predict_fn(images):
        return model(images, training=False)

    return predict_fn


@gin.configurable(denylist=["model", "info"])
def panoptic_predictor(
    model,
    info: dataset_info_lib.DatasetInfo,
    *,
    predict_fn_factory=single_scale_predict_fn,
    center_threshold: float = 0.1,
    nms_kernel: int = 7,
    keep_k_centers: int = 200,
):
    """Returns `predict(images) -> {panoptic, semantic, instance_scores}`.

    Args:
      model: The Panoptic-DeepLab model.
      info: The dataset (thing classes, label divisor, stuff area limit, void).
      predict_fn_factory: `factory(model) -> predict_fn(images) -> outputs`.
      center_threshold: Center heatmap threshold.
      nms_kernel: Center NMS window (7-13 Cityscapes, 41 COCO).
      keep_k_centers: Most centers per image.

    Returns:
      A function of `[batch, height, width, 3]` images (static shape) that
      returns `[batch, height, width]` maps.
    """
    predict_fn = predict_fn_factory(model)

    def predict(images):
        outputs = predict_fn(images)
        merged = panoptic_merge.panoptic_merge(
            outputs[common.SEMANTIC_LOGITS],
            outputs[common.CENTER_HEATMAP],
            outputs[common.OFFSETS],
            center_threshold=center_threshold,
            nms_kernel=nms_kernel,
            keep_k_centers=keep_k_centers,
            **panoptic_merge.dataset_merge_settings(info),
        )
        return {key: merged[key] for key in _PREDICTION_KEYS}

    return predict


def build_model(strategy, model_fn, info):
    """Builds the model for evaluation inside the strategy's scope."""
    if model_fn is None:
        raise ValueError(
            "evaluate.model_fn is not set (e.g. evaluate.model_fn = @build_panoptic_deeplab)"
        )
    with strategy.scope():
        return model_fn(num_classes=info.num_classes)


@gin.configurable(
    denylist=["strategy", "model_dir", "model", "checkpoint", "output_dir", "step", "until_step"]
)
def evaluate(
    *,
    strategy: tf.distribute.Strategy,
    model_dir: str,
    model=None,
    checkpoint: str | None = None,
    output_dir: str | None = None,
    step: int | None = None,
    until_step: int | None = None,
    model_fn=None,
    dataset_name: str = gin.REQUIRED,
    data_dir: str | None = None,
    prepare_data_fn=None,
    dataset_fn=None,
    split: str = "val",
    allow_incomplete_data: bool = False,
    crop_size=gin.REQUIRED,
    batch_size: int = 1,
    compute_instance_ap: bool = True,
    print_per_class: bool = False,
    checkpoint_timeout: float | None = None,
) -> dict | None:
    """Evaluates a model on a split: given, restored, or each new checkpoint.

    On a classification dataset (ImageNet pre-training) this is
    `classification_eval.evaluate_classifier`: top-1 and top-5 accuracy.

    Args:
      strategy: The strategy for the model's variables.
      model_dir: The run's folder (checkpoints; default data and output home).
      model: An already built model (train_and_eval); else `model_fn` builds
        one and `checkpoint` (default: newest in `model_dir`) fills it.
      checkpoint: See `restore_model`.
      output_dir: Where the JSON and TensorBoard scalars go (`model_dir/eval`).
      step: Step of a given model, for file names and summaries.
      until_step: Continuous evaluation: wait for each new checkpoint of
        `model_dir` and evaluate it, until one reaches this step.
      model_fn: `model_fn(num_classes=...)` -> model.
      dataset_name: A registered dataset.
      data_dir: Folder of the records; see `data_setup.resolve_data_dir`.
      prepare_data_fn: Optional `fn(data_dir)` creating the records.
      dataset_fn: The input pipeline (None: `build_dataset`, or the
        classification pipeline for a classification dataset).
      split: The split to evaluate.
      allow_incomplete_data: Evaluate the files there when the split's
        conversion manifest records more (warns); else that is an error.
      crop_size: `(height, width)` every image is padded to (larger ones are
        resized to fit).
      batch_size: Images per batch, over all local replicas (rounded up to a
        multiple of their number).
      compute_instance_ap: Also compute COCO instance AP.
      print_per_class: Also print the per-class table.
      checkpoint_timeout: Continuous evaluation gives up after waiting this
        many seconds for a new checkpoint (None: wait forever).

    Returns:
      The metrics of `PanopticEvaluator.result()` plus `step` (of the last
      checkpoint evaluated); None if continuous evaluation saw no checkpoint.

    Raises:
      validation.DataError: Naming the file when the split is incomplete,
        not of the dataset, or a record fails to read.
    """
    if dataset_name in classification_info.list_classification_datasets():
        return classification_eval.evaluate_classifier(
            strategy=strategy,
            model_dir=model_dir,
            model=model,
            checkpoint=checkpoint,
            output_dir=output_dir,
            step=step,
            until_step=until_step,
            model_fn=model_fn,
            dataset_name=dataset_name,
            data_dir=data_dir,
            prepare_data_fn=prepare_data_fn,
            dataset_fn=dataset_fn,
            split=split,
            crop_size=crop_size,
            batch_size=batch_size,
            checkpoint_timeout=checkpoint_timeout,
        )
    info = dataset_info_lib.get_dataset_info(dataset_name)
    batch_size = eval_common.replica_batch_size(strategy, batch_size)
    dataset_fn = dataset_fn or pipeline.build_dataset
    data_dir = data_setup.resolve_data_dir(
        data_dir=data_dir, prepare_data_fn=prepare_data_fn, model_dir=model_dir
    )
    validation.check_data_files(
        info,
        data_dir,
        split,
        allow_incomplete=allow_incomplete_data,
        setting="evaluate.allow_incomplete_data",
    )
    dataset = dataset_fn(
        dataset_info=info,
        file_pattern=data_setup.file_pattern(info, data_dir, split),
        mode="eval",
        crop_size=tuple(crop_size),
        batch_size=batch_size,
    )
    output_dir = output_dir or os.path.join(model_dir, "eval")
    # Before any work: an output folder that cannot be created fails at once.
    fileio.make_dirs(output_dir, "evaluation output folder")
    given_model = model is not None
    if not given_model:
        model = build_model(strategy, model_fn, info)
    predictor = eval_common.BatchPredictor(strategy, panoptic_predictor(model, info), batch_size)

    def run_once(step, where):
        evaluator = evaluator_lib.PanopticEvaluator(
            info, compute_instance_ap=compute_instance_ap and bool(info.thing_classes)
        )
        for batch in _batches(dataset, info, data_dir, split):
            features = {k: v.numpy() for k, v in batch.items()}
            evaluator.update_from_outputs(features, predictor(features[common.IMAGE]))
        results = evaluator.result()
        results["step"] = step
        print(f"\nPanoptic evaluation of {info.name} {split} at {where}:")
        print(report.format_summary(results), flush=True)
        per_class = evaluator.per_class_result()
        if print_per_class:
            print(report.format_per_class(per_class), flush=True)
        eval_common.write_results(results, per_class, output_dir)
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


def _batches(dataset, info, data_dir: str, split: str):
    """Iterates `dataset`; a read error becomes a `DataError` naming the record."""
    iterator = iter(dataset)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except validation.READ_ERRORS as e:
            located = validation.locate_read_error(info, data_dir, split, e)
            if located is None:
                raise
            raise located from e
        yield batch
