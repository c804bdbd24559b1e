"""Activation recomputation of residual blocks: settings, and nothing changes but memory.

The equivalence under MirroredStrategy is in tests/training/test_per_replica.py;
here one device, with and without XLA, in float32 and mixed_bfloat16.
"""

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from swiderrnet_tf.backbones import registry
from swiderrnet_tf.layers import conv_bn
from swiderrnet_tf.layers import residual_blocks
from swiderrnet_tf.training import gin_registry  # noqa: F401  (registers gin names)

TINY = "swidernet_0.25_0.25_0.35"


def _recomputed_stages(backbone):
    blocks = [layer for layer in backbone.layers if isinstance(layer, residual_blocks.BasicBlock)]
    blocks += [
        layer for layer in backbone.layers if isinstance(layer, residual_blocks.BottleneckBlock)
    ]
    # Block names are stage<k>_block<i>.
    return sorted({int(b.name[5]) for b in blocks if b.recompute}), len(blocks)


@pytest.mark.parametrize(
    "setting, stages",
    [("off", []), ("blocks", [1, 2, 3, 4, 5]), (8, [3, 4, 5]), (32, [5])],
)
def test_settings_select_the_stages_from_a_stride_on(setting, stages):
    # deeplab2 layout: stage k works at stride 2^k (the stem strides by 2).
    backbone = registry.create_backbone(TINY, layout="deeplab2", recompute=setting)
    assert _recomputed_stages(backbone)[0] == stages


@pytest.mark.parametrize("setting", ["all", 3, True, "8"])
def test_bad_settings_are_named(setting):
    with pytest.raises(ValueError, match=r"backbone option recompute=.*expected one of"):
        registry.create_backbone(TINY, recompute=setting)


def test_setting_reaches_the_backbone_from_gin():
    gin.parse_config(
        [
            f"build_panoptic_deeplab.backbone = '{TINY}'",
            "build_panoptic_deeplab.backbone_options = {'recompute': 16}",
            # Narrow heads: a faster build.
            "build_panoptic_deeplab.aspp_channels = 8",
            "build_panoptic_deeplab.semantic_decoder_channels = 8",
            "build_panoptic_deeplab.semantic_head_channels = 8",
            "build_panoptic_deeplab.instance_decoder_channels = 8",
        ]
    )
    try:
        model = gin.get_configurable("build_panoptic_deeplab")(num_classes=3)
    finally:
        gin.clear_config()
    assert model.backbone.recompute == 16
    assert _recomputed_stages(model.backbone)[0] == [4, 5]


@pytest.fixture
def policy(request):
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy("float32")


def _small_model(recompute):
    """Stem and a basic block (SE, projection shortcut, drop path 0.5), built at seed 3."""
    keras.utils.set_random_seed(3)
    images = keras.Input((None, None, 3))
    x = conv_bn.ConvBN(8, 3, strides=2, name="stem")(images)
    block = residual_blocks.BasicBlock(
        (16, 16), squeeze_excite=True, drop_path_keep_prob=0.5, recompute=recompute, name="block"
    )
    return keras.Model(images, block(x)), block


def _one_step(recompute, jit_compile, forwards):
    """Gradients of every trainable variable and moving statistics after one step."""
    model, block = _small_model(recompute)
    images = tf.constant(np.random.default_rng(2).uniform(0, 255, (4, 17, 17, 3)), tf.float32)
    plain = block._forward

    def counted(*args, **kwargs):
        forwards.append(1)
        return plain(*args, **kwargs)

    block._forward = counted

    @tf.function(jit_compile=jit_compile)
    def step(x):
        with tf.GradientTape() as tape:
            y = tf.cast(model(x, training=True), tf.float32)
            loss = tf.reduce_sum(tf.square(y)) * 1e-3
        return tape.gradient(loss, model.trainable_variables)

    grads = [np.asarray(tf.cast(g, tf.float32)) for g in step(images)]
    stats = [np.asarray(v) for v in model.non_trainable_variables if "moving" in v.path]
    return grads, stats


# float32 without XLA, and with several replicas: tests/training/test_per_replica.py.
@pytest.mark.parametrize(
    "policy, jit_compile",
    [
        pytest.param("float32", True, id="xla-float32"),
        pytest.param("mixed_bfloat16", False, id="function-bfloat16"),
        # XLA on CPU compiles bfloat16 convolutions slowly (about a minute here).
        pytest.param("mixed_bfloat16", True, id="xla-bfloat16", marks=pytest.mark.slow),
    ],
    indirect=["policy"],
)
def test_recomputed_blocks_give_the_gradients_and_statistics_of_plain_ones(policy, jit_compile):
    plain_calls, recomputed_calls = [], []
    plain = _one_step(False, jit_compile, plain_calls)
    recomputed = _one_step(True, jit_compile, recomputed_calls)
    # Traced once; recomputed, traced again in the backward pass.
    assert len(plain_calls) == 1 and len(recomputed_calls) == 2
    # Drop path (keep 0.5, same seed) and batch norm in training are on: a
    # mask drawn anew in the recomputation or a second moving-average update
    # moves values by percents. Otherwise the recomputation runs the same ops
    # on the same values; only XLA's fusion of another graph may reorder float
    # sums: 1e-5 of each tensor's largest magnitude in float32, and in
    # bfloat16 (8-bit mantissa) one rounding step, 2^-7.
    tolerance = 1e-5 if policy == "float32" else 2**-7
    for i, (a, b) in enumerate(zip(recomputed[0], plain[0], strict=True)):
        np.testing.assert_allclose(
            a, b, rtol=0, atol=tolerance * np.abs(b).max() + 1e-12, err_msg=i
        )
    assert len(plain[1]) == 8  # 4 batch norms
    for i, (a, b) in enumerate(zip(recomputed[1], plain[1], strict=True)):
        np.testing.assert_allclose(a, b, rtol=1e-6, err_msg=f"moving statistics {i}")
    # The step did update them (from mean 0 / variance 1).
    assert not np.allclose(plain[1][0], 0.0)
