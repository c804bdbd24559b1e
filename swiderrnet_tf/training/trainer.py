"""The `Trainer` and `train(...)`, the gin-configured training run.

The recipe of SWideRNet (Chen, Wang, Qiao 2020, section 4): Adam without
weight decay, poly learning rate (power 0.9) to 0 with an optional linear
warmup, random-scale crops (optionally AutoAugment), batch norm fine-tuned and
synchronised across replicas, drop path in the backbone, Panoptic-DeepLab's
losses.

Like deeplab2's Trainer under an orbit Controller, a `Trainer` builds the
model, optimizer and step inside `strategy.scope()` (the optimizer before the
first compiled step, which a custom loop under MirroredStrategy needs,
keras-team/keras#19246), restores, then runs compiled loops of
`steps_per_loop` steps (`train_loop.TrainLoop`) with small hooks between them
(`hooks`: the non-finite check, progress, image summaries, checkpoints,
evaluation).

A run never loses more than `checkpoint_every_n_steps` steps: it resumes from
the newest complete checkpoint of `model_dir` (model, optimizer with its step
count and moments, hence the learning rate, and the step), saves when SIGTERM
arrives, and discards a loop that produced a non-finite loss, weight or
optimizer slot, stopping without saving and naming the step and the last good
checkpoint; so no checkpoint ever holds a non-finite value. Nothing in
`model_dir` changes before the restore succeeded.

Deliberate deviations from deeplab2:
  1. The input pipeline does not resume where it stopped: a resumed run draws
     a fresh, seeded example order (seed mixed with the start step), instead
     of replaying the first examples.
  2. See `train_loop` for gradient clipping, loss scaling and accumulation.
"""

import dataclasses
import os

import gin
import keras
import numpy as np
import tensorflow as tf
from absl import logging

from swiderrnet_tf.data import validation
from swiderrnet_tf.training import checkpointing
from swiderrnet_tf.training import data_setup
from swiderrnet_tf.training import distribution
from swiderrnet_tf.training import errors
from swiderrnet_tf.training import gin_config
from swiderrnet_tf.training import hooks as hooks_lib
from swiderrnet_tf.training import initialization
from swiderrnet_tf.training import progress as progress_lib
from swiderrnet_tf.training import schedules
from swiderrnet_tf.training import signals
from swiderrnet_tf.training import tasks
from swiderrnet_tf.training import train_loop

PRECISIONS = (None, "float32", "mixed_bfloat16", "mixed_float16")
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclasses.dataclass
class TrainResult:
    """What a finished `train` call returns."""

    model: keras.Model
    step: int
    losses: dict
    eval_results: dict | None


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The settings of a run: the arguments of `train` (see there), checked."""

    model_fn: object
    dataset_name: str
    data_dir: str | None
    prepare_data_fn: object
    dataset_fn: object
    loss_fn: object
    split: str
    allow_incomplete_data: bool
    crop_size: tuple
    batch_size: int
    num_steps: int
    learning_rate: float
    warmup_steps: int
    lr_schedule: str
    lr_power: float
    end_learning_rate: float
    lr_step_boundaries: tuple
    lr_step_factors: tuple
    optimizer_fn: object
    clip_gradient_norm: float | None
    mixed_precision: str | None
    sync_batch_norm: bool
    jit_compile: bool | None
    accumulation_steps: int
    init_checkpoint: str | None
    init_scope: str
    init_checkpoint_strict: bool
    steps_per_loop: int
    log_every_n_steps: int
    checkpoint_every_n_steps: int
    max_checkpoints_to_keep: int
    image_summary_every_n_steps: int
    num_summary_images: int
    eval_every_n_steps: int
    seed: int | None

    def __post_init__(self):
        positive = ("batch_size", "num_steps", "steps_per_loop", "log_every_n_steps")
        for name in (*positive, "accumulation_steps", "max_checkpoints_to_keep"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in (
            "checkpoint_every_n_steps",
            "image_summary_every_n_steps",
            "eval_every_n_steps",
            "warmup_steps",
        ):
            if int(getattr(self, name)) < 0:
                raise ValueError(
                    f"train.{name} must be >= 0 (0 = never), got {getattr(self, name)}"
                )
        if self.mixed_precision not in PRECISIONS:
            raise ValueError(
                f"train.mixed_precision must be one of {PRECISIONS}, got {self.mixed_precision!r}"
            )
        crop = tuple(self.crop_size)
        if len(crop) != 2 or min(crop) < 1:
            raise ValueError(f"train.crop_size must be (height, width), got {crop}")
        for name in ("learning_rate", "end_learning_rate", "lr_power", "clip_gradient_norm"):
            value = getattr(self, name)
            if value is None and name == "clip_gradient_norm":
                continue
            lowest = 0.0 if name == "end_learning_rate" else np.nextafter(0.0, 1.0)
            if not lowest <= float(value) <= _FLOAT32_MAX:
                raise ValueError(
                    f"train.{name} must be a {'non-negative' if lowest == 0 else 'positive'} "
                    f"float32 number (at most {_FLOAT32_MAX:.4g}), got {value}"
                )
        if self.init_scope not in initialization.SCOPES:
            raise ValueError(
                f"train.init_scope must be one of {initialization.SCOPES}, got {self.init_scope!r}"
            )
        if self.lr_schedule not in schedules.SCHEDULES:
            raise ValueError(
                f"train.lr_schedule must be one of {schedules.SCHEDULES}, got {self.lr_schedule!r}"
            )
        if self.end_learning_rate > self.learning_rate:
            raise ValueError(
                f"train.end_learning_rate {self.end_learning_rate} is above "
                f"train.learning_rate {self.learning_rate}"
            )


def _next_stop(step: int, num_steps: int, steps_per_loop: int, intervals) -> int:
    """The step at which the next loop ends: a loop never crosses an interval."""
    stop = min(num_steps, step + steps_per_loop)
    for every in intervals:
        if every:
            stop = min(stop, (step // every + 1) * every)
    return stop


def resolve_jit_compile(jit_compile: bool | None, strategy: tf.distribute.Strategy) -> bool:
    """`train.jit_compile`: always on under TPUStrategy, off by default elsewhere.

    Raises:
      ValueError: On with several CPU or GPU replicas. TF 2.21 cannot compile
        the cross-replica sums there (gradients, synchronised batch norm, the
        replicas' batch-norm statistics): under MirroredStrategy they are
        `merge_call`s, which fail inside a compiled function, and XLA has no
        collectives for CPU devices.
    """
    if isinstance(strategy, tf.distribute.TPUStrategy):
        if jit_compile is False:
            logging.warning("train.jit_compile = False is ignored: TPU steps are always compiled")
        return True
    replicas = strategy.num_replicas_in_sync
    if jit_compile and replicas > 1:
        raise ValueError(
            f"train.jit_compile = True needs a TPU or a single CPU/GPU replica, but this "
            f"{type(strategy).__name__} has {replicas} replicas: TensorFlow cannot compile the "
            "cross-replica sums of a step with XLA on CPU or GPU replicas (merge_call inside a "
            "compiled function; no XLA collectives on CPU). Set train.jit_compile = False, or "
            "run one replica per process"
        )
    return bool(jit_compile)


class Trainer:
    """Builds, restores and trains a task's model (see the module docstring).

    Args:
      strategy: Where the replicas run (see `distribution.create_strategy`).
      model_dir: Checkpoints, summaries and configs (local or gs://).
      config: The run's `TrainConfig`.
      task: A `tasks.PanopticTask` (or another task with its interface).
      evaluate_fn: Optional `fn(model=..., step=...)` run by the chief every
        `eval_every_n_steps` and at the end.
    """

    def __init__(self, *, strategy, model_dir: str, config: TrainConfig, task, evaluate_fn=None):
        self.strategy = strategy
        self.model_dir = model_dir
        self.config = config
        self.task = task
        self.evaluate_fn = evaluate_fn
        self.chief = distribution.is_chief(strategy)
        self.replicas = strategy.num_replicas_in_sync
        per_replica = distribution.per_replica_batch_size(config.batch_size, strategy)
        if per_replica % config.accumulation_steps:
            raise ValueError(
                f"train.accumulation_steps {config.accumulation_steps} does not divide the "
                f"{per_replica} images each of the {self.replicas} replica(s) gets per step "
                f"(train.batch_size {config.batch_size})"
            )
        self.jit_compile = resolve_jit_compile(config.jit_compile, strategy)
        logging.info(
            "Global batch %d over %d replica(s): %d per replica%s; %d steps; XLA %s",
            config.batch_size,
            self.replicas,
            per_replica,
            f" in {config.accumulation_steps} micro-batches" * (config.accumulation_steps > 1),
            config.num_steps,
            "on" if self.jit_compile else "off",
        )

    def build(self) -> None:
        """Builds model, optimizer, step and loss inside the strategy's scope."""
        config = self.config
        if config.seed is not None:
            keras.utils.set_random_seed(config.seed)
        with self.strategy.scope():
            self.model = self.task.build_model(
                config.model_fn, sync_batch_norm=config.sync_batch_norm and self.replicas > 1
            )
            schedule = schedules.build_schedule(
                config.lr_schedule,
                learning_rate=config.learning_rate,
                num_steps=config.num_steps,
                warmup_steps=config.warmup_steps,
                power=config.lr_power,
                end_learning_rate=config.end_learning_rate,
                step_boundaries=config.lr_step_boundaries,
                step_factors=config.lr_step_factors,
            )
            self.optimizer = config.optimizer_fn(
                schedule, loss_scaling=config.mixed_precision == "mixed_float16"
            )
            self.optimizer.build(self.model.trainable_variables)
            self.step = tf.Variable(
                0,
                dtype=tf.int64,
                trainable=False,
                name="global_step",
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
            self.loss = self.task.build_loss(config.loss_fn, self.model)
        logging.info("Model %s: %s parameters", self.model.name, f"{self.model.count_params():,}")
        self.task.check_crop_size(config.crop_size, self.model)
        self.checkpoints = checkpointing.TrainCheckpoints(
            model=self.model,
            optimizer=self.optimizer,
            step=self.step,
            model_dir=self.model_dir,
            max_to_keep=config.max_checkpoints_to_keep,
            chief=self.chief,
            task=distribution.task_name(self.strategy),
        )

    def restore(self) -> str | None:
        """Resumes from `model_dir`, or initialises from `init_checkpoint`; then owns the folder.

        Returns:
          The checkpoint resumed from, or None.
        """
        restored = self.checkpoints.restore_latest()
        if restored is None and self.config.init_checkpoint:
            report = initialization.initialize_model(
                self.model,
                self.config.init_checkpoint,
                scope=self.config.init_scope,
                strict=self.config.init_checkpoint_strict,
            )
            initialization.log_report(report)
        if self.chief:
            gin_config.write_config(self.model_dir, operative=False)
        self.checkpoints.prepare_folder()
        return restored

    def _iterator(self, start: int):
        config = self.config
        data_dir = data_setup.resolve_data_dir(
            data_dir=config.data_dir,
            prepare_data_fn=config.prepare_data_fn,
            model_dir=self.model_dir,
            chief=self.chief,
            barrier=self.barrier,
        )
        self.data_dir = data_dir
        self.file_pattern = self.task.file_pattern(data_dir, config.split)
        self.task.check_data(data_dir, config.split, allow_incomplete=config.allow_incomplete_data)
        data_seed = None
        if config.seed is not None:
            data_seed = int(np.random.SeedSequence([config.seed, start]).generate_state(1)[0])

        def replica_dataset(context):
            return self.task.dataset(
                config.dataset_fn,
                file_pattern=self.file_pattern,
                crop_size=config.crop_size,
                batch_size=config.batch_size,
                input_context=context,
                seed=data_seed,
            )

        return iter(self.strategy.distribute_datasets_from_function(replica_dataset))

    def _hooks(self, loop: train_loop.TrainLoop, writer) -> list:
        config = self.config
        progress = progress_lib.Progress(
            config.num_steps, config.batch_size, self.task.loss_keys, writer
        )
        self.progress_hook = hooks_lib.ProgressHook(
            progress, config.log_every_n_steps, lambda: float(self.optimizer.learning_rate)
        )
        hooks = [
            hooks_lib.NonFiniteCheck(
                self.task.loss_keys,
                [v.path for v in loop.checked_variables],
                lambda: self.checkpoints.last_saved,
            ),
            self.progress_hook,
        ]
        images = None
        if self.chief and config.image_summary_every_n_steps:
            images = self.task.summary_images(
                self.strategy,
                self.model,
                config.dataset_fn,
                file_pattern=self.file_pattern,
                crop_size=config.crop_size,
                count=config.num_summary_images,
            )
        if images is not None:
            hooks.append(
                hooks_lib.ImageSummaryHook(images, writer, config.image_summary_every_n_steps)
            )
        hooks.append(hooks_lib.CheckpointHook(self.checkpoints, config.checkpoint_every_n_steps))
        if self.evaluate_fn and self.chief:
            hooks.append(
                hooks_lib.EvaluationHook(self.evaluate_fn, self.model, config.eval_every_n_steps)
            )
        return hooks

    def run(self) -> TrainResult:
        """Builds, restores, trains until `num_steps`, evaluates; see `train`."""
        config = self.config
        previous_policy = keras.mixed_precision.global_policy()
        stop = signals.StopRequest()
        try:
            if config.mixed_precision:
                keras.mixed_precision.set_global_policy(config.mixed_precision)
            self.barrier = distribution.make_barrier(self.strategy)
            self.build()
            self.restore()
            start = int(self.step.numpy())
            iterator = self._iterator(start)
            loop = train_loop.TrainLoop(
                strategy=self.strategy,
                model=self.model,
                optimizer=self.optimizer,
                loss_fn=self.loss,
                loss_keys=self.task.loss_keys,
                step=self.step,
                steps_per_loop=config.steps_per_loop,
                clip_gradient_norm=config.clip_gradient_norm,
                accumulation_steps=config.accumulation_steps,
                jit_compile=self.jit_compile,
            )
            writer = None
            if self.chief:
                writer = tf.summary.create_file_writer(os.path.join(self.model_dir, "train"))
            hooks = self._hooks(loop, writer)
            stop.install()
            current = start
            while current < config.num_steps:
                target = _next_stop(
                    current, config.num_steps, config.steps_per_loop, [h.every for h in hooks]
                )
                for hook in hooks:
                    hook.before_loop(current)
                try:
                    result = loop(iterator, target - current)
                except validation.READ_ERRORS as e:
                    located = self.task.locate_read_error(
                        self.data_dir, config.split, e, self.checkpoints.last_saved
                    )
                    if located is None:
                        raise
                    raise located from e
                first_loop, current = current == start, int(self.step.numpy())
                at_end = current == config.num_steps
                for hook in hooks:
                    hook.after_loop(current, result, at_end)
                if first_loop and self.chief:
                    gin_config.write_config(self.model_dir, operative=True)
                if self.barrier(stop.requested):
                    saved = self.checkpoints.last_saved_step == current
                    path = self.checkpoints.last_saved if saved else self.checkpoints.save()
                    raise errors.PreemptedError(current, path)
            eval_results = None
            if self.evaluate_fn and self.chief:
                eval_results = self.evaluate_fn(model=self.model, step=current)
            if self.chief:
                gin_config.write_config(self.model_dir, operative=True)
            return TrainResult(
                model=self.model,
                step=current,
                losses=self.progress_hook.values,
                eval_results=eval_results,
            )
        finally:
            stop.uninstall()
            keras.mixed_precision.set_global_policy(previous_policy)


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
    dataset_fn=None,
    loss_fn=None,
    split: str = "train",
    allow_incomplete_data: bool = False,
    crop_size=gin.REQUIRED,
    batch_size: int = gin.REQUIRED,
    num_steps: int = gin.REQUIRED,
    learning_rate: float = gin.REQUIRED,
    warmup_steps: int = 0,
    lr_schedule: str = "poly",
    lr_power: float = 0.9,
    end_learning_rate: float = 0.0,
    lr_step_boundaries=(),
    lr_step_factors=(),
    optimizer_fn=train_loop.build_optimizer,
    clip_gradient_norm: float | None = None,
    mixed_precision: str | None = None,
    sync_batch_norm: bool = True,
    jit_compile: bool | None = None,
    accumulation_steps: int = 1,
    init_checkpoint: str | None = None,
    init_scope: str = "backbone",
    init_checkpoint_strict: bool = True,
    steps_per_loop: int = 100,
    log_every_n_steps: int = 100,
    checkpoint_every_n_steps: int = 1000,
    max_checkpoints_to_keep: int = 5,
    image_summary_every_n_steps: int = 0,
    num_summary_images: int = 2,
    eval_every_n_steps: int = 0,
    seed: int | None = None,
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
      dataset_fn: The input pipeline (None: the task's, e.g. `build_dataset`
        for panoptic datasets); augmentation settings are bound on it in gin.
      loss_fn: Loss factory (None: the task's, e.g. `PanopticLoss`, called
        with `ignore_label=...`).
      split: The training split.
      allow_incomplete_data: Train on the files there when the split's
        conversion manifest records more (warns); else that is an error.
      crop_size: `(height, width)` of the training crops; each side at least
        the output stride + 1 (the paper's recipes use `k * 16 + 1`).
      batch_size: Global batch size, divided over the replicas.
      num_steps: Training steps (the poly schedule reaches 0 there).
      learning_rate: Base learning rate.
      warmup_steps: Linear warmup steps (0: none).
      lr_schedule: `poly` (the paper's), `step` or `cosine` (see `schedules`).
      lr_power: Poly power.
      end_learning_rate: Rate at `num_steps` (poly and cosine).
      lr_step_boundaries: Steps at which the `step` schedule changes the rate.
      lr_step_factors: The rate's multiplier from each boundary on.
      optimizer_fn: `optimizer_fn(schedule, loss_scaling=...)` -> optimizer.
      clip_gradient_norm: Clip the global gradient norm (None: no clipping).
      mixed_precision: None/`float32`, `mixed_bfloat16` (TPU) or
        `mixed_float16` (GPU, with dynamic loss scaling).
      sync_batch_norm: Synchronise batch norm over replicas when there are several.
      jit_compile: Compile each step with XLA: always on under TPUStrategy;
        None (default) means off on CPUs and GPUs, where True needs a single
        replica (see `resolve_jit_compile`).
      accumulation_steps: Split each replica's batch into this many
        micro-batches and apply their mean gradient once (fewer devices than
        a recipe assumes; batch norm then sees micro-batches).
      init_checkpoint: Weights to start from: an ImageNet or panoptic run,
        or an imported deeplab2 model (see `initialization`); ignored when
        resuming.
      init_scope: What `init_checkpoint` fills: `backbone`, `all_but_heads`
        or `all` (see `initialization`).
      init_checkpoint_strict: Fail if some variable in `init_scope` gets no value.
      steps_per_loop: Steps per compiled loop (one host round trip each).
      log_every_n_steps: Console line and scalar summaries interval.
      checkpoint_every_n_steps: Checkpoint interval (0: only at the end).
      max_checkpoints_to_keep: Recent checkpoints kept.
      image_summary_every_n_steps: Panoptic overlay images interval (0: never).
      num_summary_images: Images in those summaries.
      eval_every_n_steps: Evaluation interval with `evaluate_fn` (0: at the end only).
      seed: Seeds initialisation, drop path and the input pipeline (None: random).

    Returns:
      A `TrainResult`.

    Raises:
      NonFiniteError: A loss, weight or optimizer slot became NaN or infinite.
      PreemptedError: SIGTERM arrived; a checkpoint was saved first.
      ValueError: On invalid settings, naming them; `validation.DataError`
        naming the file when the data is incomplete, not of the dataset, or
        a record fails to read (the last checkpoint is kept).
    """
    arguments = {k: v for k, v in locals().items() if k not in ("strategy", "model_dir")}
    evaluate_fn = arguments.pop("evaluate_fn")
    config = TrainConfig(**arguments)
    trainer = Trainer(
        strategy=strategy,
        model_dir=model_dir,
        config=config,
        task=tasks.for_dataset(dataset_name),
        evaluate_fn=evaluate_fn,
    )
    return trainer.run()
