"""Batch norm folded into the convolutions in bfloat16 inference, as in float32."""

import keras
import ml_dtypes
import numpy as np
import pytest

from swiderrnet_tf.layers import conv_bn

RNG = np.random.default_rng(3)
BF16 = "mixed_bfloat16"


def _set_batch_norm(layer, gamma, beta, mean, variance):
    layer.set_weights([np.asarray(v, np.float32) for v in (gamma, beta, mean, variance)])


def _bf16(x):
    """Rounds to the nearest bfloat16 (ties to even), back in float64."""
    return np.asarray(x, np.float32).astype(ml_dtypes.bfloat16).astype(np.float64)


def test_folded_kernel_is_rounded_to_bfloat16_once():
    # kernel k = 1 + 3/512 rounds to 1 + 1/128 in bfloat16; the BN scale s puts
    # k * s just below the rounding boundary 1 + 1/256 while bf16(k) * s lies
    # above it. Folding with the float32 kernel gives the kernel 1.0, folding with
    # the kernel already rounded would give 1 + 1/128: 8.0 against 8.0625.
    layer = conv_bn.ConvBN(1, 1, dtype=BF16)
    x = np.full((1, 2, 2, 1), 8.0, np.float32)
    layer(x)
    k = 1 + 3 / 512
    s = (1 + 1 / 256 - 1 / 2048) / k
    layer.conv.kernel.assign(np.full((1, 1, 1, 1), k, np.float32))
    epsilon = layer.batch_norm.epsilon
    _set_batch_norm(layer.batch_norm, [s], [0.0], [0.0], [1.0 - epsilon])
    assert _bf16(k) == 1 + 1 / 128 and _bf16(_bf16(k) * s) == 1 + 1 / 128  # the trap
    out = layer(x, training=False)
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    np.testing.assert_array_equal(np.asarray(out, np.float32), 8.0)


def _reference_conv_bn(x, kernel, statistics, epsilon):
    gamma, beta, mean, variance = statistics
    out = np.einsum("bhwc,cd->bhwd", x, kernel[0, 0])
    return (out - mean) / np.sqrt(variance + epsilon) * gamma + beta


@pytest.mark.parametrize("global_context", [False, True], ids=["folded", "multiply_add"])
def test_bfloat16_inference_matches_float32_batch_norm(monkeypatch, global_context):
    x = RNG.normal(size=(2, 5, 6, 4)).astype(np.float32)
    layer = conv_bn.ConvBN(3, 1, global_context=global_context, dtype=BF16)
    layer(x)
    statistics = (
        RNG.uniform(0.5, 1.5, 3),
        RNG.normal(size=3),
        RNG.normal(size=3),
        RNG.uniform(0.5, 2.0, 3),
    )
    _set_batch_norm(layer.batch_norm, *statistics)
    kernel = np.asarray(layer.conv.kernel)
    calls = []
    original = keras.layers.BatchNormalization.call
    monkeypatch.setattr(
        keras.layers.BatchNormalization,
        "call",
        lambda self, *a, **k: calls.append(self.name) or original(self, *a, **k),
    )
    out = np.asarray(layer(x, training=False), np.float32)
    assert not calls  # batch norm never runs as a layer in inference
    # Zero-initialised global context modules add nothing; the reference is conv -> BN.
    expected = _reference_conv_bn(x, kernel, statistics, layer.batch_norm.epsilon)
    # Inputs, kernel, conv output and result each rounded to 8 significant bits.
    np.testing.assert_allclose(out, expected, rtol=2**-6, atol=2**-6 * np.abs(expected).max())


def test_bfloat16_separable_inference_folds_both_batch_norms(monkeypatch):
    x = RNG.normal(size=(1, 6, 6, 3)).astype(np.float32)
    layer = conv_bn.SeparableConvBN(4, 3, dtype=BF16)
    layer(x)
    float32_layer = conv_bn.SeparableConvBN(4, 3)
    float32_layer(x)
    weights = [RNG.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in layer.weights]
    layer.set_weights(weights)
    float32_layer.set_weights(weights)
    calls = []
    original = keras.layers.BatchNormalization.call
    monkeypatch.setattr(
        keras.layers.BatchNormalization,
        "call",
        lambda self, *a, **k: calls.append(self.name) or original(self, *a, **k),
    )
    out = np.asarray(layer(x, training=False), np.float32)
    assert not calls
    # The float32 layer's folding is checked against numpy in test_layers.py.
    expected = np.asarray(float32_layer(x, training=False))
    np.testing.assert_allclose(out, expected, rtol=2**-5, atol=2**-6 * np.abs(expected).max())


def test_training_under_bfloat16_still_uses_batch_statistics():
    x = RNG.normal(2.0, 3.0, size=(4, 5, 5, 2)).astype(np.float32)
    layer = conv_bn.ConvBN(2, 1, dtype=BF16)
    layer(x)
    out = np.asarray(layer(x, training=True), np.float32)
    # Batch statistics: each channel of the output has mean ~beta = 0 and variance ~1.
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0.0, atol=0.05)
    np.testing.assert_allclose(out.std(axis=(0, 1, 2)), 1.0, atol=0.05)
