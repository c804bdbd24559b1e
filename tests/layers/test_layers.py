"""Tests for the Keras layers: definitions against numpy, config round trips."""

import keras
import numpy as np
import pytest

from swiderrnet_tf.layers import aspp
from swiderrnet_tf.layers import conv_bn
from swiderrnet_tf.layers import drop_path
from swiderrnet_tf.layers import residual_blocks
from swiderrnet_tf.layers import resize
from swiderrnet_tf.layers import squeeze_excite
from swiderrnet_tf.layers import switchable_atrous_conv
from swiderrnet_tf.meta_arch import decoder

RNG = np.random.default_rng(0)


def _conv_same(x, kernel, rate):
    """Plain numpy 'same' dilated convolution, NHWC x HWIO, zero padding."""
    k = kernel.shape[0]
    pad = (k - 1) * rate // 2
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out = np.zeros(x.shape[:3] + (kernel.shape[-1],), np.float64)
    for i in range(k):
        for j in range(k):
            window = padded[:, i * rate : i * rate + x.shape[1], j * rate : j * rate + x.shape[2]]
            out += window @ kernel[i, j]
    return out


def _avg_pool_same_excluding_padding(x, size):
    pad = size // 2
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    ones = np.pad(np.ones_like(x[..., :1]), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    total = np.zeros_like(x, dtype=np.float64)
    count = np.zeros_like(x[..., :1], dtype=np.float64)
    for i in range(size):
        for j in range(size):
            total += padded[:, i : i + x.shape[1], j : j + x.shape[2]]
            count += ones[:, i : i + x.shape[1], j : j + x.shape[2]]
    return total / count


def test_hard_sigmoid_is_relu6_over_6():
    x = np.array([-4.0, -3.0, 0.0, 1.0, 3.0, 5.0], np.float32)
    expected = np.array([0.0, 0.0, 0.5, 4.0 / 6.0, 1.0, 1.0])  # relu6(x + 3) / 6 by hand
    np.testing.assert_allclose(keras.ops.convert_to_numpy(squeeze_excite.hard_sigmoid(x)), expected)


def test_squeeze_excite_matches_definition():
    x = RNG.normal(size=(2, 5, 6, 4)).astype(np.float32)
    layer = squeeze_excite.SqueezeExcite()
    layer(x)
    kernel = RNG.normal(size=(1, 1, 4, 4)).astype(np.float32)
    bias = RNG.normal(size=(4,)).astype(np.float32)
    layer.conv.set_weights([kernel, bias])
    z = x.mean(axis=(1, 2)) @ kernel[0, 0] + bias  # [2, 4]
    gate = np.clip(z + 3.0, 0.0, 6.0) / 6.0
    expected = x * gate[:, None, None, :]
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rate", [1, 2])
def test_switchable_atrous_conv_matches_definition(rate):
    x = RNG.normal(size=(2, 9, 11, 3)).astype(np.float32)
    layer = switchable_atrous_conv.SwitchableAtrousConv2D(4, 3, atrous_rate=rate)
    layer(x)
    kernel = RNG.normal(size=(3, 3, 3, 4)).astype(np.float32)
    switch_kernel = RNG.normal(size=(1, 1, 3, 1)).astype(np.float32)
    switch_bias = np.array([0.3], np.float32)
    layer.kernel.assign(kernel)
    layer.switch.set_weights([switch_kernel, switch_bias])
    switch = _avg_pool_same_excluding_padding(x, 5) @ switch_kernel[0, 0] + switch_bias
    expected = switch * _conv_same(x, kernel, 3 * rate) + (1 - switch) * _conv_same(x, kernel, rate)
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-4, atol=1e-4)


def test_switch_and_global_context_start_at_zero():
    # Zero-initialised switch and context: SAC + context equals a plain conv at rate r.
    x = RNG.normal(size=(1, 7, 7, 3)).astype(np.float32)
    layer = conv_bn.ConvBN(4, 3, switchable_atrous=True, global_context=True, use_bn=False)
    y = np.asarray(layer(x))
    expected = _conv_same(x, np.asarray(layer.conv.kernel), 1)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_global_context_adds_projected_mean():
    x = RNG.normal(size=(2, 4, 5, 3)).astype(np.float32)
    layer = switchable_atrous_conv.GlobalContext()
    layer(x)
    kernel = RNG.normal(size=(1, 1, 3, 3)).astype(np.float32)
    bias = RNG.normal(size=(3,)).astype(np.float32)
    layer.conv.set_weights([kernel, bias])
    expected = x + (x.mean(axis=(1, 2)) @ kernel[0, 0] + bias)[:, None, None, :]
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5, atol=1e-5)


def test_drop_path_keeps_or_drops_whole_samples():
    x = np.ones((64, 3, 3, 2), np.float32)
    layer = drop_path.DropPath(0.75, seed=1)
    y = np.asarray(layer(x, training=True))
    per_sample = y.reshape(64, -1)
    # Each sample is all 0 or all 1 / 0.75.
    kept = np.isclose(per_sample, 1 / 0.75, rtol=1e-6)
    dropped = per_sample == 0
    assert np.all(kept | dropped)
    assert np.all(per_sample.min(axis=1) == per_sample.max(axis=1))
    assert 0 < (per_sample[:, 0] == 0).sum() < 64
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)


def test_drop_path_schedules():
    # Linear (deeplab2): 1 - (1 - p) * stage / 4; constant (paper): p.
    assert drop_path.keep_prob_for_stage(0.8, "linear", 2) == pytest.approx(0.9)
    assert drop_path.keep_prob_for_stage(0.8, "linear", 4) == pytest.approx(0.8)
    assert drop_path.keep_prob_for_stage(0.8, "constant", 1) == 0.8
    with pytest.raises(ValueError, match="unknown drop path schedule 'cosine'"):
        drop_path.keep_prob_for_stage(0.8, "cosine", 1)


def test_resize_align_corners_matches_reference():
    x = RNG.normal(size=(2, 5, 7, 3)).astype(np.float32)
    out = np.asarray(resize.resize_align_corners(x, (9, 13)))
    # Corner-aligned bilinear: output row i samples input row i * (5 - 1) / (9 - 1).
    rows = np.arange(9) * 4 / 8
    cols = np.arange(13) * 6 / 12
    expected = np.zeros((2, 9, 13, 3))
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            r0, c0 = int(np.floor(r)), int(np.floor(c))
            r1, c1 = min(r0 + 1, 4), min(c0 + 1, 6)
            fr, fc = r - r0, c - c0
            expected[:, i, j] = (
                x[:, r0, c0] * (1 - fr) * (1 - fc)
                + x[:, r0, c1] * (1 - fr) * fc
                + x[:, r1, c0] * fr * (1 - fc)
                + x[:, r1, c1] * fr * fc
            )
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(resize.resize_align_corners(x, (5, 7))), x)


@pytest.mark.parametrize("size", [65, 64])
def test_strided_conv_is_aligned_on_even_and_odd_sizes(size):
    # A delta kernel at the centre: output pixel i must equal input pixel 2 * i.
    x = RNG.normal(size=(1, size, size, 1)).astype(np.float32)
    layer = conv_bn.ConvBN(1, 3, strides=2, use_bn=False)
    layer(x)
    kernel = np.zeros((3, 3, 1, 1), np.float32)
    kernel[1, 1] = 1.0
    layer.conv.kernel.assign(kernel)
    y = np.asarray(layer(x))
    assert y.shape[1] == (size - 1) // 2 + 1
    np.testing.assert_allclose(y, x[:, ::2, ::2])


def test_residual_block_starts_as_identity_plus_relu():
    # The last BN's gamma starts at 0, so a block without projection returns relu(x).
    x = RNG.normal(size=(2, 6, 6, 8)).astype(np.float32)
    block = residual_blocks.BasicBlock((8, 8), squeeze_excite=True)
    np.testing.assert_allclose(np.asarray(block(x, training=False)), np.maximum(x, 0), atol=1e-6)
    strided = residual_blocks.BasicBlock((8, 8), strides=2, stride_in_second_conv=True)
    np.testing.assert_allclose(
        np.asarray(strided(x, training=False)), np.maximum(x, 0)[:, ::2, ::2], atol=1e-6
    )


def test_block_projection_only_when_channels_change():
    x = np.zeros((1, 8, 8, 4), np.float32)
    same = residual_blocks.BottleneckBlock((2, 4, 4))
    same(x)
    changed = residual_blocks.BottleneckBlock((2, 4, 8), strides=2)
    assert changed(x).shape == (1, 4, 4, 8)
    assert same.shortcut is None and changed.shortcut is not None


LAYERS = [
    lambda: squeeze_excite.SqueezeExcite(gate_scale=0.16667),
    lambda: switchable_atrous_conv.GlobalContext(),
    lambda: switchable_atrous_conv.SwitchableAtrousConv2D(6, atrous_rate=2),
    lambda: drop_path.DropPath(0.8, seed=3),
    lambda: conv_bn.ConvBN(6, 3, strides=2, atrous_rate=1, activation="relu"),
    lambda: conv_bn.ConvBN(6, 3, switchable_atrous=True, global_context=True),
    lambda: conv_bn.SeparableConvBN(6, 5, atrous_rate=2),
    lambda: residual_blocks.BasicBlock(
        (6, 6), strides=2, squeeze_excite=True, second_atrous_rate=2
    ),
    lambda: residual_blocks.BottleneckBlock((3, 6, 12), switchable_atrous=True, atrous_rate=2),
    lambda: aspp.ASPP(8, (1, 2, 3), conv_type="separable"),
    lambda: decoder.PredictionHead(8, 3, conv_type="separable"),
]


@pytest.mark.parametrize("make", LAYERS)
def test_config_round_trip(make):
    layer = make()
    x = RNG.normal(size=(2, 9, 9, 5)).astype(np.float32)
    y = layer(x)
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.asarray(clone(x)), np.asarray(y), rtol=1e-5, atol=1e-5)


def test_decoder_branch_config_round_trip():
    features = [
        RNG.normal(size=(1, 3, 4, 6)).astype(np.float32),
        RNG.normal(size=(1, 5, 7, 4)).astype(np.float32),
        RNG.normal(size=(1, 9, 13, 4)).astype(np.float32),
    ]
    layer = decoder.DecoderBranch(8, (1, 2, 3), 6, (4, 2), decoder_conv_type="separable")
    y = layer(features)
    assert y.shape == (1, 9, 13, 6)
    clone = decoder.DecoderBranch.from_config(layer.get_config())
    clone(features)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.asarray(clone(features)), np.asarray(y), rtol=1e-5, atol=1e-5)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown conv type 'dilated'"):
        conv_bn.conv_bn_act("dilated", 4, 3, name="x")
    with pytest.raises(ValueError, match="ASPP needs 3 atrous rates"):
        aspp.ASPP(8, (1, 2))
    with pytest.raises(ValueError, match="keep_prob must be in"):
        drop_path.DropPath(0.0)


def _randomize_batch_norm(layer, channels):
    gamma = RNG.uniform(0.5, 1.5, channels).astype(np.float32)
    beta = RNG.normal(size=channels).astype(np.float32)
    mean = RNG.normal(size=channels).astype(np.float32)
    variance = RNG.uniform(0.5, 2.0, channels).astype(np.float32)
    layer.set_weights([gamma, beta, mean, variance])
    return gamma, beta, mean, variance


def _batch_norm(x, gamma, beta, mean, variance, epsilon=1e-3):
    return (x - mean) / np.sqrt(variance + epsilon) * gamma + beta


def test_inference_folds_batch_norm_into_the_convolution():
    x = RNG.normal(size=(2, 9, 9, 3)).astype(np.float32)
    layer = conv_bn.ConvBN(4, 3, activation="relu")
    layer(x)
    statistics = _randomize_batch_norm(layer.batch_norm, 4)
    expected = np.maximum(
        _batch_norm(_conv_same(x, np.asarray(layer.conv.kernel), 1), *statistics), 0
    )
    np.testing.assert_allclose(np.asarray(layer(x, training=False)), expected, rtol=1e-4, atol=1e-4)


def test_separable_inference_folds_batch_norm():
    x = RNG.normal(size=(1, 8, 8, 3)).astype(np.float32)
    layer = conv_bn.SeparableConvBN(5, 3)
    layer(x)
    depthwise_statistics = _randomize_batch_norm(layer.depthwise_batch_norm, 3)
    pointwise_statistics = _randomize_batch_norm(layer.pointwise.batch_norm, 5)
    kernel = np.asarray(layer.depthwise_conv.kernel)  # [3, 3, 3, 1]
    depthwise = np.concatenate(
        [_conv_same(x[..., c : c + 1], kernel[:, :, c : c + 1, :], 1) for c in range(3)], axis=-1
    )
    hidden = np.maximum(_batch_norm(depthwise, *depthwise_statistics), 0)
    pointwise = hidden @ np.asarray(layer.pointwise.conv.kernel)[0, 0]
    expected = np.maximum(_batch_norm(pointwise, *pointwise_statistics), 0)
    np.testing.assert_allclose(np.asarray(layer(x, training=False)), expected, rtol=1e-4, atol=1e-4)
