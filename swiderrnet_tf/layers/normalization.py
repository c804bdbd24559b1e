"""Batch normalisation settings shared by every layer of the model.

deeplab2 uses synchronised batch norm with momentum 0.99 and epsilon 1e-3
(DESIGN 1.2). Keras only synchronises under the TensorFlow backend, so the flag
is dropped under other backends instead of failing: a model trained on TPU must
still load for inference under JAX.
"""

import keras

BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3


def batch_norm(
    name: str,
    *,
    sync: bool = False,
    momentum: float = BN_MOMENTUM,
    epsilon: float = BN_EPSILON,
    gamma_initializer: str = "ones",
    dtype=None,
) -> keras.layers.BatchNormalization:
    """Returns a BatchNormalization layer over the channel axis.

    Args:
      name: Layer name.
      sync: Synchronise statistics across replicas (TensorFlow backend only).
      momentum: Moving-average momentum.
      epsilon: Variance epsilon.
      gamma_initializer: `zeros` for the last BN of a residual branch.
      dtype: Dtype policy, forwarded from the owning layer.
    """
    return keras.layers.BatchNormalization(
        axis=-1,
        momentum=momentum,
        epsilon=epsilon,
        gamma_initializer=gamma_initializer,
        synchronized=sync and keras.backend.backend() == "tensorflow",
        name=name,
        dtype=dtype,
    )
