"""Tests for Panoptic-DeepLab: shapes at odd sizes, regimes, options, saving."""

import keras
import numpy as np
import pytest

from swiderrnet_tf import common
from swiderrnet_tf.meta_arch import panoptic_deeplab

# Narrow heads keep the forward passes fast; the structure is the full one.
NARROW = dict(
    aspp_channels=16,
    semantic_decoder_channels=16,
    semantic_low_level_channels=(8, 4),
    semantic_head_channels=16,
    instance_decoder_channels=8,
    instance_low_level_channels=(4, 2),
    center_head_channels=8,
    offset_head_channels=8,
)
TINY = "swidernet_0.25_0.25_0.35"


def _images(batch, height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (batch, height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("regime", ["fast", "strong"])
@pytest.mark.parametrize("output_stride", [16, 32])
@pytest.mark.parametrize("size", [(65, 97), (129, 161)])
def test_outputs_at_input_resolution(regime, output_stride, size):
    model = panoptic_deeplab.build_panoptic_deeplab(
        TINY, 7, regime, output_stride=output_stride, **NARROW
    )
    outputs = model(_images(2, *size), training=False)
    assert outputs[common.SEMANTIC_LOGITS].shape == (2, *size, 7)
    assert outputs[common.CENTER_HEATMAP].shape == (2, *size, 1)
    assert outputs[common.OFFSETS].shape == (2, *size, 2)
    for value in outputs.values():
        assert np.all(np.isfinite(np.asarray(value)))


def test_regimes_set_conv_types():
    fast = panoptic_deeplab.resolve_head_config("fast", 16, {})
    strong = panoptic_deeplab.resolve_head_config("strong", 16, {})
    conv_keys = [k for k in fast if k.endswith("_conv_type")]
    assert len(conv_keys) == 7
    assert {fast[k] for k in conv_keys} == {"separable"}
    assert {strong[k] for k in conv_keys} == {"standard"}
    assert fast["semantic_atrous_rates"] == (6, 12, 18)
    assert panoptic_deeplab.resolve_head_config("fast", 32, {})["instance_atrous_rates"] == (
        3,
        6,
        9,
    )
    # Specific options win over shorthands, which win over the regime.
    mixed = panoptic_deeplab.resolve_head_config(
        "fast", 16, {"head_conv_type": "standard", "center_head_conv_type": "separable"}
    )
    assert mixed["semantic_head_conv_type"] == "standard"
    assert mixed["center_head_conv_type"] == "separable"
    assert mixed["semantic_aspp_conv_type"] == "separable"


def test_unknown_options_are_named():
    with pytest.raises(
        ValueError, match=r"unknown Panoptic-DeepLab option\(s\) \['decoder_width'\]"
    ):
        panoptic_deeplab.resolve_head_config("fast", 16, {"decoder_width": 3})
    with pytest.raises(ValueError, match="unknown regime 'medium'"):
        panoptic_deeplab.resolve_head_config("medium", 16, {})
    with pytest.raises(ValueError, match="center_head_conv_type must be one of"):
        panoptic_deeplab.resolve_head_config("fast", 16, {"center_head_conv_type": "deformable"})


def test_uint8_and_float_inputs_agree():
    model = panoptic_deeplab.build_panoptic_deeplab(TINY, 3, "fast", **NARROW)
    images = _images(1, 33, 41)
    a = model(images, training=False)
    b = model(images.astype(np.float32), training=False)
    for key in a:
        np.testing.assert_allclose(np.asarray(a[key]), np.asarray(b[key]), rtol=1e-6)


def test_keras_save_and_load_round_trip(tmp_path):
    model = panoptic_deeplab.build_panoptic_deeplab(
        TINY, 4, "strong", backbone_options={"layout": "deeplab2"}, **NARROW
    )
    images = _images(2, 65, 97)
    expected = model(images, training=False)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.backbone.layout == "deeplab2"
    assert loaded.head_config == model.head_config
    actual = loaded(images, training=False)
    for key in expected:
        np.testing.assert_allclose(np.asarray(actual[key]), np.asarray(expected[key]), atol=1e-5)


def test_mixed_bfloat16_outputs_are_float32():
    images = _images(1, 65, 97)
    reference = panoptic_deeplab.build_panoptic_deeplab(TINY, 3, "fast", **NARROW)
    expected = reference(images, training=False)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = panoptic_deeplab.build_panoptic_deeplab(TINY, 3, "fast", **NARROW)
        model.set_weights(reference.get_weights())
        outputs = model(images, training=False)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.backbone.get_layer("stem").compute_dtype == "bfloat16"
    for key, value in outputs.items():
        assert keras.backend.standardize_dtype(value.dtype) == "float32"
        want = np.asarray(expected[key])
        got = np.asarray(value)
        # bfloat16 keeps 8 bits of mantissa: agree to a few percent of the range.
        assert np.abs(got - want).max() <= 0.05 * np.abs(want).max() + 1e-3


def test_backbone_with_classification_head():
    from swiderrnet_tf.backbones import registry

    backbone = registry.create_backbone(TINY, classification_classes=10, output_stride=32)
    outputs = backbone(_images(2, 64, 64), training=False)
    assert outputs[common.CLASSIFICATION_LOGITS].shape == (2, 10)
    # w2 = 0.25: stage 5 ends with 4 * 128 channels (DESIGN 1.1). With l = 0.35
    # stage 2 has a single (strided) block, so res2 is the stride-4 max-pool
    # output, with stage 1's 4 * 8 channels (w1 = 0.25).
    assert outputs[common.RES5].shape == (2, 2, 2, 512)
    assert outputs[common.RES2].shape == (2, 16, 16, 32)


def test_backbone_output_stride_must_agree():
    from swiderrnet_tf.backbones import registry

    backbone = registry.create_backbone(TINY, output_stride=32)
    with pytest.raises(ValueError, match="output stride 32"):
        panoptic_deeplab.build_panoptic_deeplab(backbone, 3, output_stride=16)


def _randomise(model, seed):
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        if "seed_generator" not in weight.path:
            weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype(weight.dtype))


@pytest.mark.parametrize("regime", ["fast", "strong"])
def test_training_checkpoints_hold_every_weight(regime, tmp_path):
    # Training checkpoints are tf.train.Checkpoint object graphs, which reach
    # layers through attributes; a weight outside the graph would silently
    # restart from its initial value on resume.
    import tensorflow as tf

    def build():
        # The backbone has SE and SAC (on by default), the decoders both branches.
        return panoptic_deeplab.build_panoptic_deeplab(TINY, 3, regime, **NARROW)

    saved, restored = build(), build()
    _randomise(saved, seed=1)
    prefix = tf.train.Checkpoint(model=saved).write(str(tmp_path / "ckpt"))
    status = tf.train.Checkpoint(model=restored).read(prefix)
    status.assert_existing_objects_matched()
    for a, b in zip(saved.weights, restored.weights, strict=True):
        if "seed_generator" not in a.path:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
