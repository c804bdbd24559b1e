"""`train(...)`: the Panoptic-DeepLab training run, configured by gin.

The recipe of SWideRNet (Chen, Wang, Qiao 2020, section 4): Adam without
weight decay, poly learning rate (power 0.9) to 0 with an optional linear
warmup, random-scale crops (optionally AutoAugment), batch norm fine-tuned and
synchronised across replicas, drop path in the backbone, Panoptic-DeepLab's
losses. Everything that creates variables (model, optimizer, step) is built
inside `strategy.scope()`; the optimizer is built before the first compiled
step, which a custom loop under MirroredStrategy needs (keras-team/keras#19246).

A run never loses more than `checkpoint_every_n_steps` steps: it resumes from
the newest complete checkpoint of `model_dir` (model, optimizer with its step
count and moments, hence the learning rate, and the step), saves when SIGTERM
arrives, and stops at the first non-finite loss without saving, naming the
step and the last good checkpoint.

Deliberate deviations from deeplab2:
  1. The input pipeline does not resume where it stopped: a resumed run draws
     a fresh, seeded example order (seed mixed with the start step), instead
     of replaying the first examples.
  2. See `train_loop` for gradient clipping and loss scaling.
"""

import dataclasses
import os

import gin
import keras
import numpy as np
import tensorflow as tf
from absl import logging

from swiderrnet_tf import common
from swiderrnet_tf.data import dataset_info as dataset_info_lib
from swiderrnet_tf.data import pipeline
from swiderrnet_tf.data import validation
from swiderrnet_tf.losses import panoptic_losses
from swiderrnet_tf.training import checkpointing
from swiderrnet_tf.training import data_setup
from swiderrnet_tf.training import distribution
from swiderrnet_tf.training import eval_loop
from swiderrnet_tf.training import gin_config
from swiderrnet_tf.training import initialization
from swiderrnet_tf.training import progress as progress_lib
from swiderrnet_tf.training import schedules
from swiderrnet_tf.training import signals
from swiderrnet_tf.training import summaries
from swiderrnet_tf.training import train_loop
from swiderrnet_tf.training import visualization

PRECISIONS = (None, "float32", "mixed_bfloat16", "mixed_float16")


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; the run stopped without saving."""

    def __init__(self, step: int, losses: dict, last_checkpoint: str | None):
        self.step = step
        self.losses = losses
        self.last_checkpoint = last_checkpoint
        values = ", ".join(f"{k}={v:.4g}" for k, v in losses.items())
        good = last_checkpoint or "none (the run restarts from step 0)"
        super().__init__(
            f"non-finite loss at step {step} ({values}); stopped without saving. "
            f"Last good checkpoint: {good}. Running the same command again resumes from it; "
            "if it recurs, lower the learning rate or set train.clip_gradient_norm."
        )


class PreemptedError(RuntimeError):
    """SIGTERM arrived; a checkpoint was saved and the run stopped."""

    def __init__(self, step: int, checkpoint: str | None):
        self.step = step
        self.checkpoint = checkpoint
        super().__init__(f"stopped by SIGTERM at step {step}; saved {checkpoint}")


@dataclasses.dataclass
class TrainResult:
    """What a finished `train` call returns."""

    model: keras.Model
    step: int
    losses: dict
    eval_results: dict | None


def _next_stop(step: int, num_steps: int, steps_per_loop: int, intervals) -> int:
    """The step at which the next host loop ends: a loop never crosses an interval."""
    stop = min(num_steps, step + steps_per_loop)
    for every in intervals:
        if every:
            stop = min(stop, (step // every + 1) * every)
    return stop


def _check_arguments(**values) -> None:
    for name in ("batch_size", "num_steps", "steps_per_loop", "log_every_n_steps"):
        if int(values[name]) < 1:
            raise ValueError(f"train.{name} must be >= 1, got {values[name]}")
    for name in ("checkpoint_every_n_steps", "image_summary_every_n_steps", "eval_every_n_steps"):
        if int(values[name]) < 0:
            raise ValueError(f"train.{name} must be >= 0 (0 = never), got {values[name]}")
    if values["mixed_precision"] not in PRECISIONS:
        raise ValueError(
            f"train.mixed_precision must be one of {PRECISIONS}, got {values['mixed_precision']!r}"
        )
    crop = values["crop_size"]
    if len(crop) != 2 or min(crop) < 1:
        raise ValueError(f"train.crop_size must be (height, width), got {crop}")


@gin.configurable(denylist=["strategy", "model_dir", "evaluate_fn"])
def train(
    *,
    strategy: tf.distribute.Strategy,
    model_dir: str,
    evaluate_fn=None,
    model_fn=gin.REQUIRED,
    dataset_name: str = gin.REQUIRED,
    data_dir: str | None = None,
    prepare_data_fn=None,
    dataset_fn=pipeline.build_dataset,
    loss_fn=panoptic_losses.PanopticLoss,
    split: str = "train",
    allow_incomplete_data: bool = False,
    crop_size=gin.REQUIRED,
    batch_size: int = gin.REQUIRED,
    num_steps: int = gin.REQUIRED,
    learning_rate: float = gin.REQUIRED,
    warmup_steps: int = 0,
    lr_power: float = 0.9,
    end_learning_rate: float = 0.0,
    optimizer_fn=train_loop.build_optimizer,
    clip_gradient_norm: float | None = None,
    mixed_precision: str | None = None,
    sync_batch_norm: bool = True,
    init_checkpoint: str | None = None,
    init_checkpoint_strict: bool = True,
    steps_per_loop: int = 100,
    log_every_n_steps: int = 100,
    checkpoint_every_n_steps: int = 1000,
    max_checkpoints_to_keep: int = 5,
    image_summary_every_n_steps: int = 0,
    num_summary_images: int = 2,
    eval_every_n_steps: int = 0,
    seed: int | None = None,
    nan_at_step: int | None = None,
) -> TrainResult:
    """Trains until `num_steps`, resuming from `model_dir` if it holds checkpoints.

    Args:
      strategy: Where the replicas run (see `distribution.create_strategy`).
      model_dir: Checkpoints, summaries and configs (local or gs://).
      evaluate_fn: Optional `fn(model=..., step=...)` run by the chief every
        `eval_every_n_steps` and at the end (`--mode=train_and_eval`).
      model_fn: `model_fn(num_classes=..., sync_batch_norm=...)` -> Keras model
        mapping images to the Panoptic-DeepLab output dict.
      dataset_name: A registered dataset (`data.dataset_info`).
      data_dir: Folder of the TFRecords; see `data_setup.resolve_data_dir`.
      prepare_data_fn: Optional `fn(data_dir)` that creates the records.
      dataset_fn: The input pipeline (`build_dataset`); augmentation settings
        are bound on it in gin.
      loss_fn: `loss_fn(ignore_label=...)` -> `loss(features, outputs)`.
      split: The training split.
      allow_incomplete_data: Train on the files there when the split's
        conversion manifest records more (warns); else that is an error.
      crop_size: `(height, width)` of the training crops.
      batch_size: Global batch size, divided over the replicas.
      num_steps: Training steps (the poly schedule reaches 0 there).
      learning_rate: Base learning rate.
      warmup_steps: Linear warmup steps (0: none).
      lr_power: Poly power.
      end_learning_rate: Rate at `num_steps`.
      optimizer_fn: `optimizer_fn(schedule, loss_scaling=...)` -> optimizer.
      clip_gradient_norm: Clip the global gradient norm (None: no clipping).
      mixed_precision: None/`float32`, `mixed_bfloat16` (TPU) or
        `mixed_float16` (GPU, with dynamic loss scaling).
      sync_batch_norm: Synchronise batch norm over replicas when there are several.
      init_checkpoint: Backbone weights to start from (see `initialization`);
        ignored when resuming.
      init_checkpoint_strict: Fail if some backbone variable gets no value.
      steps_per_loop: Steps per compiled host loop.
      log_every_n_steps: Console line and scalar summaries interval.
      checkpoint_every_n_steps: Checkpoint interval (0: only at the end).
      max_checkpoints_to_keep: Recent checkpoints kept.
      image_summary_every_n_steps: Panoptic overlay images interval (0: never).
      num_summary_images: Images in those summaries.
      eval_every_n_steps: Evaluation interval with `evaluate_fn` (0: at the end only).
      seed: Seeds initialisation and the input pipeline (None: random).
      nan_at_step: Fault injection for tests: the loss of this step is NaN.

    Returns:
      A `TrainResult`.

    Raises:
      NonFiniteLossError: A loss became NaN or infinite.
      PreemptedError: SIGTERM arrived; a checkpoint was saved first.
      ValueError: On invalid settings, naming them; `validation.DataError`
        naming the file when the data is incomplete, not of the dataset, or
        a record fails to read (the last checkpoint is kept).
    """
    _check_arguments(**{k: v for k, v in locals().items() if k != "strategy"})
    info = dataset_info_lib.get_dataset_info(dataset_name)
    per_replica = distribution.per_replica_batch_size(batch_size, strategy)
    replicas = strategy.num_replicas_in_sync
    chief = distribution.is_chief(strategy)
    barrier = distribution.make_barrier(strategy)
    if chief:
        gin_config.write_config(model_dir, operative=False)
    logging.info(
        "Global batch %d over %d replica(s): %d per replica; %d steps",
        batch_size,
        replicas,
        per_replica,
        num_steps,
    )
    previous_policy = keras.mixed_precision.global_policy()
    stop = signals.StopRequest()
    try:
        if mixed_precision:
            keras.mixed_precision.set_global_policy(mixed_precision)
        if seed is not None:
            keras.utils.set_random_seed(seed)
        with strategy.scope():
            model = model_fn(
                num_classes=info.num_classes, sync_batch_norm=sync_batch_norm and replicas > 1
            )
            schedule = schedules.PolynomialDecayWithWarmup(
                learning_rate,
                num_steps,
                power=lr_power,
                end_learning_rate=end_learning_rate,
                warmup_steps=warmup_steps,
            )
            optimizer = optimizer_fn(schedule, loss_scaling=mixed_precision == "mixed_float16")
            optimizer.build(model.trainable_variables)
            step = tf.Variable(
                0,
                dtype=tf.int64,
                trainable=False,
                name="global_step",
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
            loss = loss_fn(ignore_label=info.ignore_label)
        logging.info("Model %s: %s parameters", model.name, f"{model.count_params():,}")
        keeper = checkpointing.TrainCheckpoints(
            model=model,
            optimizer=optimizer,
            step=step,
            model_dir=model_dir,
            max_to_keep=max_checkpoints_to_keep,
            chief=chief,
            task=distribution.task_name(strategy),
        )
        if keeper.restore_latest() is None and init_checkpoint:
            report = initialization.initialize_backbone(
                model.backbone, init_checkpoint, strict=init_checkpoint_strict
            )
            initialization.log_report(report)
        start = int(step.numpy())
        data_dir = data_setup.resolve_data_dir(
            data_dir=data_dir,
            prepare_data_fn=prepare_data_fn,
            model_dir=model_dir,
            chief=chief,
            barrier=barrier,
        )
        pattern = data_setup.file_pattern(info, data_dir, split)
        validation.check_data_files(info, data_dir, split, allow_incomplete=allow_incomplete_data)
        data_seed = None
        if seed is not None:
            data_seed = int(np.random.SeedSequence([seed, start]).generate_state(1)[0])

        def replica_dataset(context):
            dataset = dataset_fn(
                dataset_info=info,
                file_pattern=pattern,
                mode="train",
                crop_size=tuple(crop_size),
                batch_size=batch_size,
                input_context=context,
                seed=data_seed,
            )
            return dataset.map(lambda f: {k: f[k] for k in train_loop.TRAIN_FEATURES})

        iterator = iter(strategy.distribute_datasets_from_function(replica_dataset))
        loop = train_loop.make_train_loop(
            strategy=strategy,
            model=model,
            optimizer=optimizer,
            loss_fn=loss,
            step=step,
            clip_gradient_norm=clip_gradient_norm,
            nan_at_step=nan_at_step,
        )
        writer = tf.summary.create_file_writer(os.path.join(model_dir, "train")) if chief else None
        images = None
        if chief and image_summary_every_n_steps:
            images = _SummaryImages(
                strategy, model, info, dataset_fn, pattern, crop_size, num_summary_images
            )
        progress = progress_lib.Progress(num_steps, batch_size, writer)
        stop.install()
        current, values = start, {}
        intervals = (log_every_n_steps, checkpoint_every_n_steps, image_summary_every_n_steps)
        intervals += (eval_every_n_steps if evaluate_fn else 0,)
        while current < num_steps:
            target = _next_stop(current, num_steps, steps_per_loop, intervals)
            progress.start()
            try:
                sums, done, last = loop(iterator, tf.constant(target - current, tf.int32))
            except validation.READ_ERRORS as e:
                located = validation.locate_read_error(
                    info, data_dir, split, e, last_checkpoint=keeper.last_saved
                )
                if located is None:
                    raise
                raise located from e
            progress.add(sums.numpy(), int(done))
            first_loop, current = current == start, int(step.numpy())
            last = dict(zip(train_loop.LOSS_KEYS, last.numpy().tolist(), strict=True))
            if not all(np.isfinite(list(last.values()))):
                raise NonFiniteLossError(current, last, keeper.last_saved)
            if first_loop and chief:
                gin_config.write_config(model_dir, operative=True)
            if current % log_every_n_steps == 0 or current == num_steps:
                values = progress.report(current, float(optimizer.learning_rate)) or values
            if images is not None and current % image_summary_every_n_steps == 0:
                images.write(writer, current)
            at_end = current == num_steps
            if at_end or (checkpoint_every_n_steps and current % checkpoint_every_n_steps == 0):
                keeper.save()
            periodic_eval = eval_every_n_steps and current % eval_every_n_steps == 0
            if evaluate_fn and periodic_eval and chief and not at_end:
                evaluate_fn(model=model, step=current)
            if barrier(stop.requested):
                path = keeper.last_saved if keeper.last_saved_step == current else keeper.save()
                raise PreemptedError(current, path)
        eval_results = None
        if evaluate_fn and chief:
            eval_results = evaluate_fn(model=model, step=current)
        if chief:
            gin_config.write_config(model_dir, operative=True)
        return TrainResult(model=model, step=current, losses=values, eval_results=eval_results)
    finally:
        stop.uninstall()
        keras.mixed_precision.set_global_policy(previous_policy)


class _SummaryImages:
    """Fixed images of the training split, shown with ground truth and prediction."""

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
