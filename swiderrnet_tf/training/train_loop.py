"""The optimizer and the compiled training loop.

SWideRNet (Chen, Wang, Qiao 2020, section 4) trains Panoptic-DeepLab with Adam
without weight decay and the poly schedule (`schedules`). One call of the loop
runs several steps inside one `tf.function` (a `tf.range` loop around
`strategy.run`), so the host talks to the accelerators once per
`steps_per_loop` steps, as deeplab2's orbit loop does on TPU.

Each replica divides its batch-mean loss by the number of replicas: gradients
are summed across replicas by the optimizer, which gives the gradient of the
global batch mean. The learning rate follows the optimizer's iteration count;
with float16 loss scaling a step skipped for overflowing gradients does not
advance it (the trainer's step counter does advance).

Deliberate deviations from deeplab2:
  1. Gradient clipping (optional) uses the global norm of the gradient of the
     global batch. deeplab2 clips each replica's share before the sum; here
     clipping costs one extra all-reduce when there are several replicas.
  2. With float16 loss scaling on several replicas, the replicas first agree
     on whether every gradient is finite, so that all of them skip (or apply)
     the same step; Keras' LossScaleOptimizer alone looks at the first
     replica's gradients.
  3. The loop stops at the first step whose loss is not finite and reports it.
"""

import gin
import keras
import tensorflow as tf

from swiderrnet_tf import common

# Order of the loss values the loop returns.
LOSS_KEYS = (common.TOTAL_LOSS, common.SEMANTIC_LOSS, common.CENTER_LOSS, common.OFFSET_LOSS)
# Features a training step reads; the others stay on the host.
TRAIN_FEATURES = (
    common.IMAGE,
    common.SEMANTIC_LABEL,
    common.SEMANTIC_WEIGHTS,
    common.CENTER_TARGET,
    common.CENTER_WEIGHTS,
    common.OFFSET_TARGET,
    common.OFFSET_WEIGHTS,
)


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


def make_train_loop(
    *,
    strategy: tf.distribute.Strategy,
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    loss_fn,
    step: tf.Variable,
    clip_gradient_norm: float | None = None,
    nan_at_step: int | None = None,
):
    """Returns `loop(iterator, num_steps) -> (loss_sums, steps_done, last_losses)`.

    Args:
      strategy: The strategy whose scope holds the model and optimizer.
      model: Maps `[batch, h, w, 3]` images to the Panoptic-DeepLab output dict.
      optimizer: A built optimizer (see `build_optimizer`).
      loss_fn: `loss_fn(features, outputs)` -> dict with `LOSS_KEYS`.
      step: int64 step counter, incremented before each step.
      clip_gradient_norm: Clip the global gradient norm to this value.
      nan_at_step: Fault injection: the loss of this step (1-based) becomes NaN.

    Returns:
      A `tf.function`. `loss_sums` `[4]` float32 holds the sums over the steps
      run of the global-batch losses in `LOSS_KEYS` order, `steps_done` the
      number of steps run (fewer than asked when a loss is not finite) and
      `last_losses` `[4]` the losses of the last step run.
    """
    replicas = strategy.num_replicas_in_sync
    loss_scaling = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    variables = model.trainable_variables

    def replica_step(features):
        with tf.GradientTape() as tape:
            outputs = model(features[common.IMAGE], training=True)
            losses = loss_fn(features, outputs)
            total = losses[common.TOTAL_LOSS]
            if nan_at_step is not None:
                total = tf.where(tf.equal(step, nan_at_step), float("nan"), total)
            scaled = total / replicas
            if loss_scaling:
                scaled = optimizer.scale_loss(scaled)
        grads = tape.gradient(scaled, variables)
        missing = [v.path for v, g in zip(variables, grads, strict=True) if g is None]
        if missing:
            raise ValueError(f"no gradient reaches the trainable variable(s) {missing[:5]}")
        context = tf.distribute.get_replica_context()
        if loss_scaling and replicas > 1:
            grads = _agree_on_finite(grads, context)
        if clip_gradient_norm:
            scale = tf.cast(optimizer.dynamic_scale, tf.float32) if loss_scaling else 1.0
            grads = _clip(grads, clip_gradient_norm, scale, replicas, context)
        optimizer.apply(grads, variables)
        values = [total] + [losses[key] for key in LOSS_KEYS[1:]]
        return tf.stack([tf.cast(v, tf.float32) for v in values]) / replicas

    @tf.function
    def loop(iterator, num_steps):
        sums = tf.zeros([len(LOSS_KEYS)], tf.float32)
        last = tf.zeros([len(LOSS_KEYS)], tf.float32)
        done = tf.constant(0, tf.int32)
        for _ in tf.range(num_steps):
            step.assign_add(1)
            per_replica = strategy.run(replica_step, args=(next(iterator),))
            last = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
            sums += last
            done += 1
            if not tf.reduce_all(tf.math.is_finite(last)):
                break
        return sums, done, last

    return loop
