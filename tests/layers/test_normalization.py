"""The model's batch norm (fused in training) against numpy and Keras' own layer."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from swiderrnet_tf.layers import normalization

RNG = np.random.default_rng(4)
SHAPE = (3, 6, 5, 4)  # [batch, height, width, channels]


def _inputs():
    # Channel means far from 0 and unequal scales: a wrong mean, a Bessel
    # factor (count 90 -> 1.1%) or a swapped momentum shows at once.
    x = RNG.normal(size=SHAPE) * np.array([0.5, 1.0, 2.0, 4.0]) + np.array([3.0, -1.0, 0.0, 10.0])
    return x.astype(np.float32)


def _pair(dtype=None):
    """Ours and Keras', same settings and the same non-trivial gamma and beta."""
    ours = normalization.batch_norm("bn", dtype=dtype)
    theirs = keras.layers.BatchNormalization(
        axis=-1, momentum=0.99, epsilon=1e-3, name="bn", dtype=dtype
    )
    for layer in (ours, theirs):
        layer.build(SHAPE)
        layer.gamma.assign([0.5, 1.0, 1.5, 2.0])
        layer.beta.assign([0.1, -0.2, 0.3, 0.0])
        layer.moving_mean.assign([1.0, 0.0, -1.0, 2.0])
        layer.moving_variance.assign([1.0, 2.0, 0.5, 4.0])
    return ours, theirs


def _train_call(layer, x, mode):
    """Outputs and gradients (input, gamma, beta) of a weighted sum of one training call."""
    weights = tf.constant(RNG.normal(size=SHAPE).astype(np.float32))

    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * weights)
        return [y] + tape.gradient(loss, [x, layer.gamma.value, layer.beta.value])

    if mode != "eager":
        step = tf.function(step, jit_compile=mode == "xla")
    return [np.asarray(tf.cast(v, tf.float32)) for v in step(tf.constant(x))]


@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
def test_training_call_matches_numpy_and_keras_batch_norm(mode):
    x = _inputs()
    ours, theirs = _pair()
    state = RNG.bit_generator.state
    got = _train_call(ours, x, mode)
    RNG.bit_generator.state = state  # the same loss weights for both
    want = _train_call(theirs, x, mode)
    # By hand: normalised with the batch moments (biased variance), moving
    # averages one step of momentum 0.99 towards them.
    mean = x.astype(np.float64).mean(axis=(0, 1, 2))
    var = x.astype(np.float64).var(axis=(0, 1, 2))
    gamma, beta = np.array([0.5, 1.0, 1.5, 2.0]), np.array([0.1, -0.2, 0.3, 0.0])
    outputs = (x - mean) / np.sqrt(var + 1e-3) * gamma + beta
    # float32 moments of 90 values per channel: ~1e-6 relative.
    np.testing.assert_allclose(got[0], outputs, rtol=0, atol=2e-5)
    moving_mean = 0.99 * np.array([1.0, 0.0, -1.0, 2.0]) + 0.01 * mean
    moving_var = 0.99 * np.array([1.0, 2.0, 0.5, 4.0]) + 0.01 * var
    np.testing.assert_allclose(np.asarray(ours.moving_mean), moving_mean, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ours.moving_variance), moving_var, rtol=1e-6)
    # Keras' layer as the reference for the gradients; the fused op's
    # analytic backward pass and autodiff through Keras' moments differ by
    # float32 rounding: 1e-5 of each tensor's largest magnitude.
    for name, a, b in zip(("outputs", "d_input", "d_gamma", "d_beta"), got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(b).max(), err_msg=name)
    np.testing.assert_allclose(np.asarray(theirs.moving_mean), moving_mean, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(theirs.moving_variance), moving_var, rtol=1e-6)


def test_training_graph_uses_the_fused_op():
    layer, _ = _pair()
    graph = (
        tf.function(lambda x: layer(x, training=True))
        .get_concrete_function(tf.TensorSpec(SHAPE, tf.float32))
        .graph
    )
    types = {op.type for op in graph.get_operations()}
    assert any(t.startswith("FusedBatchNorm") for t in types), sorted(types)


def test_mixed_bfloat16_matches_keras_batch_norm():
    x = _inputs()
    ours, theirs = _pair(dtype="mixed_bfloat16")
    state = RNG.bit_generator.state
    got = _train_call(ours, tf.cast(x, tf.bfloat16), "function")
    RNG.bit_generator.state = state
    want = _train_call(theirs, tf.cast(x, tf.bfloat16), "function")
    # Both compute in float32 and round the outputs to bfloat16 (8 bits of
    # mantissa: 2^-8 relative, one rounding step apart at most).
    for name, a, b in zip(("outputs", "d_input", "d_gamma", "d_beta"), got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=2**-7 * np.abs(b).max(), err_msg=name)
    assert ours.moving_mean.dtype == "float32"
    np.testing.assert_allclose(
        np.asarray(ours.moving_mean), np.asarray(theirs.moving_mean), rtol=1e-5
    )
    np.testing.assert_allclose(
        np.asarray(ours.moving_variance), np.asarray(theirs.moving_variance), rtol=1e-5
    )


def test_inference_and_frozen_calls_use_the_moving_statistics():
    x = _inputs()
    ours, _ = _pair()
    mean, var = np.array([1.0, 0.0, -1.0, 2.0]), np.array([1.0, 2.0, 0.5, 4.0])
    gamma, beta = np.array([0.5, 1.0, 1.5, 2.0]), np.array([0.1, -0.2, 0.3, 0.0])
    want = (x - mean) / np.sqrt(var + 1e-3) * gamma + beta
    np.testing.assert_allclose(np.asarray(ours(x, training=False)), want, atol=1e-5)
    ours.trainable = False  # as Keras: a frozen layer runs in inference mode
    np.testing.assert_allclose(np.asarray(ours(x, training=True)), want, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(ours.moving_mean), mean.astype(np.float32))


def test_deferred_updates_are_applied_once_by_the_caller():
    x = _inputs()
    ours, _ = _pair()
    with normalization.defer_moving_statistics() as deferred:
        ours(x, training=True)
    np.testing.assert_array_equal(np.asarray(ours.moving_mean), [1.0, 0.0, -1.0, 2.0])
    assert deferred.layers == [ours]
    normalization.apply_moving_statistics(deferred.layers, deferred.moments)
    mean = x.astype(np.float64).mean(axis=(0, 1, 2))
    np.testing.assert_allclose(
        np.asarray(ours.moving_mean), 0.99 * np.array([1.0, 0.0, -1.0, 2.0]) + 0.01 * mean, 1e-6
    )
    with pytest.raises(ValueError, match="1 layers need 2 moments, got 1"):
        normalization.apply_moving_statistics([ours], deferred.moments[:1])
