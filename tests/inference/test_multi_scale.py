"""Multi-scale and flipped inference against hand-made models with known outputs."""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

from swiderrnet_tf import common
from swiderrnet_tf.inference import multi_scale
from tests.inference import helpers

ROOT = pathlib.Path(__file__).parents[2]


def _numpy(outputs):
    return {k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()}


def _log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def marker_model(images):
    """A flip- and scale-equivariant stand-in for a network.

    Finds the brightest pixel of channel 0 (the marker) in each image and
    returns offsets pointing at it, a heatmap of 1 at the marker and 0
    elsewhere, and logits that are the image's channels / 50 (pointwise).
    """
    x = keras.ops.convert_to_numpy(images).astype(np.float32)
    batch, height, width, _ = x.shape
    flat = x[..., 0].reshape(batch, -1).argmax(axis=1)
    cy, cx = np.divmod(flat, width)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    offsets = np.stack(
        [cy[:, None, None] - yy[None], cx[:, None, None] - xx[None]], axis=-1
    ).astype(np.float32)
    heatmap = np.zeros((batch, height, width, 1), np.float32)
    heatmap[np.arange(batch), cy, cx, 0] = 1.0
    return {
        common.SEMANTIC_LOGITS: x / 50.0,
        common.CENTER_HEATMAP: heatmap,
        common.OFFSETS: offsets,
    }


def _marker_images(height=9, width=9, markers=((2, 6), (4, 0))):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 100, (len(markers), height, width, 3)).astype(np.uint8)
    for b, (y, x) in enumerate(markers):
        images[b, y, x, 0] = 255
    return images, markers


def test_single_scale_without_flip_is_the_model():
    model = helpers.tiny_model()
    images = helpers.random_images((2, 29, 41))
    expected = _numpy(model(images, training=False))
    for predict_fn in (
        multi_scale.multi_scale_predict_fn(model, scales=(1.0,), flip=False),
        lambda x: multi_scale.multi_scale_outputs(lambda y: model(y, training=False), x),
    ):
        got = _numpy(predict_fn(images))
        assert sorted(got) == sorted(expected)
        for key, value in expected.items():
            np.testing.assert_array_equal(got[key], value, err_msg=key)


def test_flip_restores_positions_and_negates_dx():
    images, markers = _marker_images()
    got = _numpy(multi_scale.multi_scale_outputs(marker_model, images, scales=(1.0,), flip=True))
    yy, xx = np.mgrid[0:9, 0:9]
    for b, (cy, cx) in enumerate(markers):
        # Both passes see the marker where it is; a missing dx negation would
        # average dx to 0, a missing flip back would mirror the maps.
        np.testing.assert_allclose(got[common.OFFSETS][b, ..., 0], cy - yy, atol=1e-5)
        np.testing.assert_allclose(got[common.OFFSETS][b, ..., 1], cx - xx, atol=1e-5)
        expected_heatmap = np.zeros((9, 9))
        expected_heatmap[cy, cx] = 1.0
        np.testing.assert_allclose(got[common.CENTER_HEATMAP][b, ..., 0], expected_heatmap)
    # Pointwise logits: the flipped pass brings back the same probabilities.
    expected_logits = _log_softmax(images.astype(np.float64) / 50.0)
    np.testing.assert_allclose(got[common.SEMANTIC_LOGITS], expected_logits, atol=1e-5)


def test_scales_bring_offsets_back_to_input_pixels():
    # 9 pixels scale to 5 (0.5) and 17 (2.0) with corner alignment; even marker
    # coordinates land on grid points, and linear offsets interpolate exactly.
    images, markers = _marker_images()
    got = _numpy(
        multi_scale.multi_scale_outputs(marker_model, images, scales=(0.5, 1.0, 2.0), flip=True)
    )
    yy, xx = np.mgrid[0:9, 0:9]
    for b, (cy, cx) in enumerate(markers):
        np.testing.assert_allclose(got[common.OFFSETS][b, ..., 0], cy - yy, atol=1e-4)
        np.testing.assert_allclose(got[common.OFFSETS][b, ..., 1], cx - xx, atol=1e-4)


def test_averages_softmax_and_heatmaps_over_scales():
    # Outputs constant over the image but depending on the input height, so
    # each scale's contribution is known: logits one-hot at class (height % 3)
    # times 4, heatmap height / 100.
    def size_model(images):
        batch, height, width, _ = keras.ops.shape(images)
        logits = np.zeros((batch, height, width, 3), np.float32)
        logits[..., height % 3] = 4.0
        return {
            common.SEMANTIC_LOGITS: logits,
            common.CENTER_HEATMAP: np.full((batch, height, width, 1), height / 100, np.float32),
            common.OFFSETS: np.zeros((batch, height, width, 2), np.float32),
        }

    images = np.zeros((1, 21, 13, 3), np.uint8)
    scales = (0.5, 1.0, 1.5)
    got = _numpy(multi_scale.multi_scale_outputs(size_model, images, scales=scales, flip=False))
    heights = [int((21 - 1) * s + 1) for s in scales]  # 11, 21, 31
    probabilities = []
    for height in heights:
        logits = np.zeros(3)
        logits[height % 3] = 4.0
        probabilities.append(np.exp(logits) / np.exp(logits).sum())
    expected = np.log(np.mean(probabilities, axis=0))
    np.testing.assert_allclose(got[common.SEMANTIC_LOGITS][0, 5, 7], expected, rtol=1e-5)
    np.testing.assert_allclose(got[common.CENTER_HEATMAP], np.mean(heights) / 100, rtol=1e-6)
    assert got[common.SEMANTIC_LOGITS].shape == (1, 21, 13, 3)


def test_dataset_scales_and_bad_scales():
    assert multi_scale.resolve_scales(dataset_name="cityscapes") == (
        0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0,
    )  # fmt: skip
    assert multi_scale.resolve_scales(scales=[1, 2]) == (1.0, 2.0)
    with pytest.raises(ValueError, match="either scales"):
        multi_scale.resolve_scales()
    with pytest.raises(ValueError, match="positive"):
        multi_scale.multi_scale_outputs(marker_model, np.zeros((1, 4, 4, 3)), scales=(0.0,))


def test_runs_under_jax_like_tensorflow(tmp_path):
    pytest.importorskip("jax")
    model = helpers.tiny_model()
    images = helpers.random_images((1, 25, 31))
    model.save_weights(tmp_path / "model.weights.h5")
    (tmp_path / "config.json").write_text(json.dumps(keras.saving.serialize_keras_object(model)))
    np.save(tmp_path / "images.npy", images)
    expected = _numpy(
        multi_scale.multi_scale_predict_fn(model, scales=(0.75, 1.25), flip=True)(images)
    )
    # Built without running initializers (each a JAX compilation), run under jit.
    script = """
import json, pathlib, sys
import jax, keras, numpy as np
import swiderrnet_tf.meta_arch
from swiderrnet_tf.inference import multi_scale
d = pathlib.Path(sys.argv[1])
with keras.StatelessScope(initialize_variables=False):
    model = keras.saving.deserialize_keras_object(json.loads((d / "config.json").read_text()))
model.load_weights(d / "model.weights.h5")
fn = multi_scale.multi_scale_predict_fn(model, scales=(0.75, 1.25), flip=True)
weights = model.weights

@jax.jit
def run(values, images):
    with keras.StatelessScope(state_mapping=list(zip(weights, values)), initialize_variables=False):
        return fn(images)

out = run([w.value for w in weights], np.load(d / "images.npy"))
np.savez(d / "jax.npz", **{k: np.asarray(v) for k, v in out.items()})
"""
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], env=env, check=True, capture_output=True
    )
    got = np.load(tmp_path / "jax.npz")
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-4, atol=1e-4, err_msg=key)
