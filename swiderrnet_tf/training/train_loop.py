"""The optimizer and the compiled training loop.

SWideRNet (Chen, Wang, Qiao 2020, section 4) trains Panoptic-DeepLab with Adam
without weight decay and the poly schedule (`schedules`).

One call of the loop runs up to `steps_per_loop` steps inside one
`tf.function`, as deeplab2's orbit loop does on TPU: a `tf.range` loop around
`strategy.run` that fetches nothing to the host and never branches on a
value computed on the device, so on a TPU the steps are queued back to back.
Each step adds its losses to its own row of a replica-local buffer (a
`SyncOnRead` variable that sums the replicas when read). After the last step
the same function reads the buffer once and checks that every weight and
optimizer slot is finite; the host fetches those few numbers once per loop.

Each replica divides its batch-mean loss by the number of replicas: gradients
are summed across replicas by the optimizer, which gives the gradient of the
global batch mean. With `accumulation_steps = k` each replica splits its batch
into k micro-batches, runs them one after the other (only one micro-batch of
activations is alive at a time) and applies the mean of their gradients once:
the gradient of the whole batch, since every loss is a mean over images.
Batch norm, however, normalises each micro-batch with its own statistics (as
each replica of an unsynchronised run does) and updates its moving averages
k times per step.

With `jit_compile` the per-replica step (forward, backward, update) is
compiled by XLA on one CPU or GPU replica. Under TPUStrategy the replica
step is always compiled. On several CPU or GPU replicas the trainer refuses
the switch (see `Trainer`): cross-replica sums cannot be placed inside a
compiled piece there.

Deliberate deviations from deeplab2:
  1. Gradient clipping (optional) uses the global norm of the gradient of the
     global batch. deeplab2 clips each replica's share before the sum; here
     clipping costs one extra all-reduce when there are several replicas.
  2. With float16 loss scaling on several replicas, the replicas first agree
     on whether every gradient is finite, so that all of them skip (or apply)
     the same step; Keras' LossScaleOptimizer alone looks at the first
     replica's gradients.
  3. A non-finite loss does not stop the loop at once (that would need the
     host after every step); the loop runs to its end and the trainer
     discards it.
"""

import dataclasses

import gin
import keras
import numpy as np
import tensorflow as tf

from swiderrnet_tf import common


@gin.configurable(denylist=["learning_rate", "loss_scaling"])
def build_optimizer(
    learning_rate,
    *,
    loss_scaling: bool = False,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-7,
) -> keras.optimizers.Optimizer:
    """Adam without weight decay (deeplab2's settings), optionally loss-scaled.

    Args:
      learning_rate: A float or a `LearningRateSchedule`.
      loss_scaling: Wrap it in `keras.optimizers.LossScaleOptimizer` (dynamic
        loss scaling, for `mixed_float16`).
      beta_1, beta_2, epsilon: Adam's constants.

    Returns:
      The optimizer; build it inside `strategy.scope()` before the first step.
    """
    optimizer = keras.optimizers.Adam(
        learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon
    )
    if loss_scaling:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def _agree_on_finite(grads, replica_context):
    """Makes every replica's gradients non-finite if any replica's are."""
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
    # ReduceOp has no MIN: count the replicas with a non-finite gradient.
    bad = replica_context.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(finite, tf.float32))
    poison = tf.where(bad > 0.0, float("nan"), 0.0)
    return [g + tf.cast(poison, g.dtype) for g in grads]


def _clip(grads, clip_norm, scale, replicas, replica_context):
    """Clips the gradient of the global batch to `clip_norm` (unscaled)."""
    if replicas > 1:
        summed = replica_context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        clipped, _ = tf.clip_by_global_norm(summed, clip_norm * scale)
        # The optimizer sums the replicas' gradients again.
        return [g / replicas for g in clipped]
    clipped, _ = tf.clip_by_global_norm(grads, clip_norm * scale)
    return clipped


def _micro_batches(features: dict, count: int) -> dict:
    """`[b, ...]` features -> `[count, b / count, ...]` (b static, divisible)."""

    def split(value):
        batch = value.shape[0]
        return tf.reshape(value, [count, batch // count, *value.shape[1:]])

    return {key: split(value) for key, value in features.items()}


@dataclasses.dataclass
class LoopResult:
    """What one call of the loop reports to the host.

    Attributes:
      losses: `[steps, len(loss_keys)]` global-batch losses of each step run.
      finite: `[num_checked]` whether each checked variable is finite after
        the loop (see `TrainLoop.checked_variables`).
    """

    losses: np.ndarray
    finite: np.ndarray

    @property
    def first_nonfinite_step(self) -> int | None:
        """Index (0-based, within the loop) of the first step with a non-finite loss."""
        bad = np.flatnonzero(~np.isfinite(self.losses).all(axis=1))
        return int(bad[0]) if bad.size else None


class TrainLoop:
    """`loop(iterator, num_steps) -> LoopResult`: compiled steps, one host fetch.

    Args:
      strategy: The strategy whose scope holds the model and optimizer.
      model: Maps images to the task's output dict.
      optimizer: A built optimizer (see `build_optimizer`).
      loss_fn: `loss_fn(features, outputs)` -> dict holding `loss_keys`, the
        first of which is the total that is minimised.
      loss_keys: Names of the losses reported per step.
      step: int64 step counter, incremented by each step.
      steps_per_loop: Most steps of one call.
      clip_gradient_norm: Clip the global gradient norm to this value.
      accumulation_steps: Micro-batches per replica and step.
      jit_compile: Compile the replica step with XLA (ignored under
        TPUStrategy, which always compiles it).
    """

    def __init__(
        self,
        *,
        strategy: tf.distribute.Strategy,
        model: keras.Model,
        optimizer: keras.optimizers.Optimizer,
        loss_fn,
        loss_keys,
        step: tf.Variable,
        steps_per_loop: int,
        clip_gradient_norm: float | None = None,
        accumulation_steps: int = 1,
        jit_compile: bool = False,
    ):
        self.strategy = strategy
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.loss_keys = tuple(loss_keys)
        self.step = step
        self.steps_per_loop = steps_per_loop
        self.clip_gradient_norm = clip_gradient_norm
        self.accumulation_steps = accumulation_steps
        self.replicas = strategy.num_replicas_in_sync
        self.loss_scaling = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        with strategy.scope():
            self._history = tf.Variable(
                tf.zeros([steps_per_loop, len(self.loss_keys)]),
                trainable=False,
                name="loop_losses",
                synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.SUM,
            )
        self.checked_variables = [
            v for v in list(model.weights) + list(optimizer.variables) if "float" in str(v.dtype)
        ]
        on_tpu = isinstance(strategy, tf.distribute.TPUStrategy)
        replica_step = self._replica_step
        if jit_compile and not on_tpu:
            replica_step = tf.function(replica_step, jit_compile=True)
        self._replica_step_fn = replica_step
        self._loop = tf.function(self._loop_fn)

    def _gradients(self, features):
        """Per-replica gradients and `[len(loss_keys)]` losses of one micro-batch."""
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            outputs = self.model(features[common.IMAGE], training=True)
            losses = self.loss_fn(features, outputs)
            total = losses[self.loss_keys[0]]
            scaled = total / self.replicas
            if self.loss_scaling:
                scaled = self.optimizer.scale_loss(scaled)
        grads = tape.gradient(scaled, variables)
        missing = [v.path for v, g in zip(variables, grads, strict=True) if g is None]
        if missing:
            raise ValueError(f"no gradient reaches the trainable variable(s) {missing[:5]}")
        values = tf.stack([tf.cast(losses[key], tf.float32) for key in self.loss_keys])
        return grads, values / self.replicas

    def _accumulated_gradients(self, features):
        count = self.accumulation_steps
        if count == 1:
            return self._gradients(features)
        micro = _micro_batches(features, count)

        def body(index, grads, values):
            part = {key: value[index] for key, value in micro.items()}
            new_grads, new_values = self._gradients(part)
            grads = [g + tf.cast(n, g.dtype) for g, n in zip(grads, new_grads, strict=True)]
            return index + 1, grads, values + new_values

        zeros = [tf.zeros(v.shape, v.dtype) for v in self.model.trainable_variables]
        _, grads, values = tf.while_loop(
            lambda index, *_: index < count,
            body,
            (tf.constant(0), zeros, tf.zeros([len(self.loss_keys)])),
            parallel_iterations=1,
        )
        return [g / count for g in grads], values / count

    def _replica_step(self, features, index):
        grads, values = self._accumulated_gradients(features)
        context = tf.distribute.get_replica_context()
        if self.loss_scaling and self.replicas > 1:
            grads = _agree_on_finite(grads, context)
        if self.clip_gradient_norm:
            scale = tf.cast(self.optimizer.dynamic_scale, tf.float32) if self.loss_scaling else 1.0
            grads = _clip(grads, self.clip_gradient_norm, scale, self.replicas, context)
        self.optimizer.apply(grads, self.model.trainable_variables)
        # A select, not a product with a one-hot row: 0 * NaN would spread a
        # non-finite loss to every step of the loop.
        this_step = tf.equal(tf.range(self.steps_per_loop), index)[:, None]
        self._history.assign_add(tf.where(this_step, values[None, :], 0.0))

    def _loop_fn(self, iterator, num_steps):
        self._history.assign(tf.zeros(self._history.shape))
        for index in tf.range(num_steps):
            self.step.assign_add(1)
            self.strategy.run(self._replica_step_fn, args=(next(iterator), index))
        losses = self._history.read_value()[:num_steps]
        finite = tf.stack([tf.reduce_all(tf.math.is_finite(v)) for v in self.checked_variables])
        return losses, finite

    def __call__(self, iterator, num_steps: int) -> LoopResult:
        """Runs `num_steps` (at most `steps_per_loop`) steps; see `LoopResult`."""
        if not 1 <= num_steps <= self.steps_per_loop:
            raise ValueError(f"a loop runs 1 to {self.steps_per_loop} steps, asked {num_steps}")
        losses, finite = self._loop(iterator, tf.constant(num_steps, tf.int32))
        return LoopResult(losses=losses.numpy(), finite=finite.numpy())


@gin.configurable(denylist=["learning_rate", "loss_scaling"])
def build_momentum_optimizer(
    learning_rate,
    *,
    loss_scaling: bool = False,
    momentum: float = 0.9,
    nesterov: bool = True,
) -> keras.optimizers.Optimizer:
    """SGD with (Nesterov) momentum, the TPU ResNet reference's ImageNet optimizer.

    Weight decay is not the optimizer's: the classification loss adds it
    (`losses.classification_losses`), as the reference does.

    Args:
      learning_rate: A float or a `LearningRateSchedule`.
      loss_scaling: Wrap it in `keras.optimizers.LossScaleOptimizer`.
      momentum: Momentum coefficient.
      nesterov: Nesterov momentum (the reference's `use_nesterov=True`).
    """
    optimizer = keras.optimizers.SGD(
        learning_rate=learning_rate, momentum=momentum, nesterov=nesterov
    )
    if loss_scaling:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
