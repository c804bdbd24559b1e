"""Batch normalisation shared by every layer of the model.

deeplab2 uses synchronised batch norm with momentum 0.99 and epsilon 1e-3
(DESIGN 1.2). Keras only synchronises under the TensorFlow backend, so the flag
is dropped under other backends instead of failing: a model trained on TPU must
still load for inference under JAX.

Deviations from Keras' `BatchNormalization` (same variables, same names, same
outputs):
  1. Without synchronisation on several replicas, Keras lets every replica
     write its own batch's statistics into its own copy of the moving mean and
     variance (the variables have no aggregation), and a checkpoint keeps one
     of those copies. Here the replicas' moments are averaged before the
     update, so every copy holds the mean of what each replica would have
     written; normalisation still uses each replica's own batch.
  2. Inside `defer_moving_statistics()` the layer does not update its moving
     statistics: it hands its batch moments to the caller, who applies them
     once. Activation recomputation (`residual_blocks`) needs this, or the
     recomputed forward pass would update them a second time.
  3. In training under TensorFlow, unless the moments are synchronised over
     several replicas, the layer runs TensorFlow's fused batch norm (one op
     forward, one backward, as Keras 2 and deeplab2 did) instead of Keras 3's
     moments + normalisation ops, whose backward pass holds several extra
     feature-map-sized tensors per layer. The moving variance is still
     updated with the biased batch variance, as Keras 3 does.
"""

import contextlib
import threading

import keras
from keras import ops

BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3

# MirroredStrategy runs each replica's step in its own thread.
_DEFERRALS = threading.local()


class DeferredUpdates:
    """Batch moments collected inside `defer_moving_statistics()`, in call order."""

    def __init__(self):
        self.layers = []
        self.moments = []

    def record(self, layer, mean, variance):
        self.layers.append(layer)
        self.moments += [mean, variance]


@contextlib.contextmanager
def defer_moving_statistics():
    """Collects, instead of applying, the moving-statistics updates of training calls.

    Yields:
      A `DeferredUpdates`; pass its `layers` and (a copy of) its `moments` to
      `apply_moving_statistics` once.
    """
    stack = _DEFERRALS.__dict__.setdefault("stack", [])
    stack.append(DeferredUpdates())
    try:
        yield stack[-1]
    finally:
        stack.pop()


def apply_moving_statistics(layers, moments) -> None:
    """Applies deferred updates: `moments` holds `[mean, variance]` per layer, flattened."""
    if len(moments) != 2 * len(layers):
        raise ValueError(f"{len(layers)} layers need {2 * len(layers)} moments, got {len(moments)}")
    for i, layer in enumerate(layers):
        layer.update_moving_statistics(moments[2 * i], moments[2 * i + 1])


def _replica_mean(values):
    """Mean over the replicas of the TensorFlow replica context (identity otherwise)."""
    if keras.backend.backend() != "tensorflow":
        return values
    import tensorflow as tf  # only on this backend

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return values
    return context.all_reduce(tf.distribute.ReduceOp.MEAN, values)


@keras.saving.register_keras_serializable(package="swiderrnet_tf")
class BatchNormalization(keras.layers.BatchNormalization):
    """Keras' batch norm with replica-averaged, optionally deferred, moving statistics.

    Input and output: `[..., channels]` (axis -1). See the module docstring.
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        # As Keras: statistics in float32 at least, whatever the compute dtype.
        inputs = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        offset = ops.cast(self.beta, inputs.dtype) if self.center else None
        scale = ops.cast(self.gamma, inputs.dtype) if self.scale else None
        if self._fused(inputs):
            outputs, mean, variance = self._fused_batch_norm(inputs, scale, offset)
        else:
            mean, variance = self._moments(inputs, None)  # [channels] each
            outputs = ops.batch_normalization(
                inputs,
                mean,
                variance,
                axis=self.axis,
                offset=offset,
                scale=scale,
                epsilon=self.epsilon,
            )
        stack = getattr(_DEFERRALS, "stack", None)
        if stack:
            stack[-1].record(self, mean, variance)
        else:
            self.update_moving_statistics(mean, variance)
        return ops.cast(outputs, self.compute_dtype)

    def _fused(self, inputs) -> bool:
        if keras.backend.backend() != "tensorflow" or len(inputs.shape) != 4:
            return False
        if self.axis not in (-1, 3, [3], [-1]):
            return False
        if not self.synchronized:
            return True
        import tensorflow as tf  # only on this backend

        context = tf.distribute.get_replica_context()
        return context is None or context.num_replicas_in_sync == 1

    def _fused_batch_norm(self, inputs, scale, offset):
        """TensorFlow's fused op on `[b, h, w, c]`; returns outputs, mean, biased variance."""
        import tensorflow as tf  # only on this backend

        channels = inputs.shape[-1]
        if scale is None:
            scale = tf.ones([channels], inputs.dtype)
        if offset is None:
            offset = tf.zeros([channels], inputs.dtype)
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, scale, offset, epsilon=self.epsilon, data_format="NHWC", is_training=True
        )
        # The op returns the unbiased (Bessel-corrected) variance.
        count = tf.cast(tf.size(inputs) // channels, variance.dtype)
        variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
        return outputs, mean, variance

    def update_moving_statistics(self, mean, variance) -> None:
        """One moving-average step towards batch moments `mean`, `variance` `[channels]`."""
        if not self.synchronized:
            # Synchronised moments are already equal on every replica.
            mean, variance = _replica_mean([mean, variance])
        momentum = self.momentum
        moving_mean = ops.cast(self.moving_mean, mean.dtype)
        moving_variance = ops.cast(self.moving_variance, variance.dtype)
        self.moving_mean.assign(moving_mean * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(moving_variance * momentum + variance * (1.0 - momentum))


def batch_norm(
    name: str,
    *,
    sync: bool = False,
    momentum: float = BN_MOMENTUM,
    epsilon: float = BN_EPSILON,
    gamma_initializer: str = "ones",
    dtype=None,
) -> BatchNormalization:
    """Returns a BatchNormalization layer over the channel axis.

    Args:
      name: Layer name.
      sync: Synchronise statistics across replicas (TensorFlow backend only).
      momentum: Moving-average momentum.
      epsilon: Variance epsilon.
      gamma_initializer: `zeros` for the last BN of a residual branch.
      dtype: Dtype policy, forwarded from the owning layer.
    """
    return BatchNormalization(
        axis=-1,
        momentum=momentum,
        epsilon=epsilon,
        gamma_initializer=gamma_initializer,
        synchronized=sync and keras.backend.backend() == "tensorflow",
        name=name,
        dtype=dtype,
    )
