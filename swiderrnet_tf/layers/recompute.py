"""Activation recomputation: keep a function's inputs, recompute the rest in the backward pass.

As deeplab2's `conv_use_recompute_grad`, with `keras.remat` (`tf.recompute_grad`
under TensorFlow, `jax.checkpoint` under JAX). The recomputed function must be
pure: it draws no random numbers (a caller draws seeds before and passes them
in), and its batch norms hand their batch moments out instead of updating their
moving statistics, which are then updated once, from the first pass.
"""

import keras
from keras import ops

from swiderrnet_tf.layers import normalization


def call(forward, *inputs):
    """`forward(*inputs)` (one tensor out), its activations recomputed in the backward pass.

    Args:
      forward: A pure function of tensors (see the module docstring) that
        calls its layers in training mode.
      *inputs: Its tensor arguments, the only activations kept.

    Returns:
      What `forward` returns.
    """
    batch_norms = []

    def deferred(*args):
        with normalization.defer_moving_statistics() as updates:
            y = forward(*args)
        batch_norms[:] = updates.layers
        return [y] + [ops.stop_gradient(m) for m in updates.moments]

    outputs = keras.remat(deferred)(*inputs)
    # Once, from the first pass; the recomputation's moments are discarded.
    normalization.apply_moving_statistics(batch_norms, outputs[1:])
    return outputs[0]
