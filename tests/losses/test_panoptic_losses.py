"""Tests for the Panoptic-DeepLab losses, against hand-worked values.

The semantic examples use 4-class logits `log([1/2, 1/4, 1/8, 1/8])`, so the
cross-entropy of a pixel is `ln 2` for label 0, `2 ln 2` for label 1 and
`3 ln 2` for label 2: every expected value below is a multiple of `ln 2`.
"""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from swiderrnet_tf import common
from swiderrnet_tf.losses import panoptic_losses

LN2 = float(np.log(2.0))
VOID = 255
ROOT = pathlib.Path(__file__).resolve().parents[2]


def _logits(batch, width):
    """`[batch, 1, width, 4]` logits with softmax (1/2, 1/4, 1/8, 1/8) everywhere."""
    row = np.log(np.array([0.5, 0.25, 0.125, 0.125], np.float32))
    return np.broadcast_to(row, (batch, 1, width, 4)).copy()


def _semantic_example():
    # Image 0: CE = [1, 2, 3, 1, 3] ln2, weights [1, 1, 1, 3, 0]
    #          -> weighted [1, 2, 3, 3, 0] ln2.
    # Image 1: labels [0, void, 1, void, 2] -> weighted [1, 0, 2, 0, 3] ln2.
    labels = np.array([[[0, 1, 2, 0, 2]], [[0, VOID, 1, VOID, 2]]], np.int32)
    weights = np.array([[[1, 1, 1, 3, 0]], [[1, 1, 1, 1, 1]]], np.float32)
    return labels, _logits(2, 5), weights


def _center_example():
    # Image 0: squared errors [0.25, 0, 0.25, 0.0625, 0.64], weights [1, 1, 1, 0, 0]
    #          -> weighted [0.25, 0, 0.25, 0, 0]: sum 0.5 over 2 non-zero = 0.25.
    #          (Pixel 1 has weight 1 but zero error: deeplab2 does not count it.)
    # Image 1: all weights 0 -> 0.
    heatmap = np.array([[[0.5, 1.0, 0.0, 0.25, 0.9]], [[0.3, 0.2, 0.1, 0.0, 0.7]]], np.float32)
    target = np.array([[[1.0, 1.0, 0.5, 0.0, 0.1]], [[0.0, 0.0, 0.0, 1.0, 0.0]]], np.float32)
    weights = np.array([[[1, 1, 1, 0, 0]], [[0, 0, 0, 0, 0]]], np.float32)
    return target, heatmap[..., None], weights


def _offset_example():
    # Image 0: |error| = [(1, 2), (0, 4), (2, 2), (0, 0), (5, 5)], channel means
    #          [1.5, 2, 2, 0, 5], weights [1, 3, 0, 1, 0] -> [1.5, 6, 0, 0, 0]:
    #          7.5 over 2 non-zero = 3.75.
    # Image 1: only pixel 0 is wrong, by (2, 0): mean 1, weight 1 -> 1 / 1 = 1.
    offsets = np.zeros((2, 1, 5, 2), np.float32)
    offsets[0, 0, :3] = [[1, 2], [0, 0], [3, -1]]
    target = np.zeros((2, 1, 5, 2), np.float32)
    target[0, 0, 1:5] = [[0, 4], [1, 1], [0, 0], [5, 5]]
    target[1, 0, 0] = [2, 0]
    weights = np.array([[[1, 3, 0, 1, 0]], [[1, 1, 1, 1, 1]]], np.float32)
    return target, offsets, weights


def _np(x):
    return keras.ops.convert_to_numpy(x)


def test_cross_entropy_over_all_pixels():
    labels, logits, weights = _semantic_example()
    loss = panoptic_losses.softmax_cross_entropy(labels, logits, weights, top_k_percent=1.0)
    # Image 0: (1 + 2 + 3 + 3) / 4 non-zero; image 1: (1 + 2 + 3) / 3.
    np.testing.assert_allclose(_np(loss), [9 / 4 * LN2, 6 / 3 * LN2], rtol=1e-5)


def test_top_k_keeps_the_hardest_weighted_pixels():
    labels, logits, weights = _semantic_example()
    loss = panoptic_losses.softmax_cross_entropy(labels, logits, weights, top_k_percent=0.4)
    # round(0.4 * 5) = 2 pixels per image. Image 0 keeps pixel 2 (3 ln2) and
    # pixel 3 (1 ln2 x weight 3); pixel 4 (3 ln2, weight 0) is out. Image 1
    # keeps 3 ln2 and 2 ln2. The count is over the kept pixels (2), not the
    # 4 non-zero weights of image 0.
    np.testing.assert_allclose(_np(loss), [6 / 2 * LN2, 5 / 2 * LN2], rtol=1e-5)


def test_top_k_count_skips_kept_zeros_and_guards_empty_images():
    labels = np.zeros((2, 1, 5), np.int32)
    weights = np.array([[[0, 0, 1, 0, 0]], [[0, 0, 0, 0, 0]]], np.float32)
    logits = tf.constant(_logits(2, 5))
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss = panoptic_losses.softmax_cross_entropy(labels, logits, weights, top_k_percent=0.4)
    # Image 0 keeps [ln2, 0]: ln2 / 1 non-zero (not / 2). Image 1 keeps zeros: 0.
    np.testing.assert_allclose(_np(loss), [LN2, 0.0], rtol=1e-5, atol=0)
    gradient = _np(tape.gradient(loss, logits))
    assert np.all(np.isfinite(gradient))
    assert np.all(gradient[1] == 0)


def test_top_k_rounds_half_to_even():
    # CE [3, 3, 2, 1, 1] ln2. round(0.5 * 5) = round(2.5) = 2 (tf.math.round), so
    # the loss is (3 + 3) / 2; rounding half up would keep 3 and give 8 / 3.
    labels = np.array([[[2, 2, 1, 0, 0]]], np.int32)
    weights = np.ones((1, 1, 5), np.float32)
    loss = panoptic_losses.softmax_cross_entropy(labels, _logits(1, 5), weights, top_k_percent=0.5)
    np.testing.assert_allclose(_np(loss), [3 * LN2], rtol=1e-5)


def test_void_and_out_of_range_labels_are_weightless():
    # Labels void (255) and 7 (>= 4 classes) with weight 3: both ignored, and the
    # gather for them does not fail. Remaining CE [1, 2] ln2.
    labels = np.array([[[0, VOID, 1, 7]]], np.int32)
    weights = np.array([[[1, 3, 1, 3]]], np.float32)
    logits = tf.constant(_logits(1, 4))
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss = panoptic_losses.softmax_cross_entropy(labels, logits, weights)
    np.testing.assert_allclose(_np(loss), [3 / 2 * LN2], rtol=1e-5)
    gradient = _np(tape.gradient(loss, logits))
    assert np.all(gradient[0, 0, [1, 3]] == 0)
    assert np.all(np.abs(gradient[0, 0, [0, 2]]).sum(-1) > 0)


def test_center_mse():
    target, heatmap, weights = _center_example()
    loss = panoptic_losses.center_mse(target, heatmap, weights)
    np.testing.assert_allclose(_np(loss), [0.25, 0.0], rtol=1e-6)


def test_offset_l1_averages_the_two_channels():
    target, offsets, weights = _offset_example()
    loss = panoptic_losses.offset_l1(target, offsets, weights)
    np.testing.assert_allclose(_np(loss), [3.75, 1.0], rtol=1e-6)


def _targets_and_outputs(dtype="float32"):
    labels, logits, semantic_weights = _semantic_example()
    center_target, heatmap, center_weights = _center_example()
    offset_target, offsets, offset_weights = _offset_example()
    targets = {
        common.SEMANTIC_LABEL: labels,
        common.SEMANTIC_WEIGHTS: semantic_weights,
        common.CENTER_TARGET: center_target,
        common.CENTER_WEIGHTS: center_weights,
        common.OFFSET_TARGET: offset_target,
        common.OFFSET_WEIGHTS: offset_weights,
    }
    outputs = {
        common.SEMANTIC_LOGITS: keras.ops.cast(logits, dtype),
        common.CENTER_HEATMAP: keras.ops.cast(heatmap, dtype),
        common.OFFSETS: keras.ops.cast(offsets, dtype),
    }
    return targets, outputs


def test_panoptic_loss_weights_and_batch_mean():
    losses = panoptic_losses.PanopticLoss()(*_targets_and_outputs())
    # top_k 0.2 keeps round(1.0) = 1 pixel: 3 ln2 in both images.
    semantic = 1.0 * (3 * LN2 + 3 * LN2) / 2
    center = 200.0 * (0.25 + 0.0) / 2  # = 25
    offset = 0.01 * (3.75 + 1.0) / 2  # = 0.02375
    expected = {
        common.SEMANTIC_LOSS: semantic,
        common.CENTER_LOSS: center,
        common.OFFSET_LOSS: offset,
        common.TOTAL_LOSS: semantic + center + offset,
    }
    assert set(losses) == set(expected)
    for key, value in expected.items():
        assert losses[key].dtype == "float32", key
        assert tuple(losses[key].shape) == (), key
        np.testing.assert_allclose(_np(losses[key]), value, rtol=1e-5, err_msg=key)


def test_panoptic_loss_custom_weights():
    loss_fn = panoptic_losses.PanopticLoss(
        semantic_weight=2.0, center_weight=0.0, offset_weight=1.0, top_k_percent=1.0
    )
    losses = loss_fn(*_targets_and_outputs())
    semantic = 2.0 * (9 / 4 + 6 / 3) / 2 * LN2
    np.testing.assert_allclose(_np(losses[common.SEMANTIC_LOSS]), semantic, rtol=1e-5)
    np.testing.assert_allclose(_np(losses[common.CENTER_LOSS]), 0.0)
    np.testing.assert_allclose(_np(losses[common.TOTAL_LOSS]), semantic + 2.375, rtol=1e-5)
    assert panoptic_losses.PanopticLoss(**loss_fn.get_config()).get_config() == (
        loss_fn.get_config()
    )


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_predictions_are_computed_in_float32(dtype):
    # Integer logits and quarter-step predictions are exact in bfloat16 and
    # float16, so the float32 reference below applies unchanged.
    labels = np.array([[[0, 2, 1, VOID]]], np.int32)
    logits = np.array([[[[2, 0, -1], [0, 1, 3], [1, 1, -2], [5, 0, 0]]]], np.float32)
    weights = np.array([[[1, 3, 1, 1]]], np.float32)
    per_pixel = [
        np.log(np.exp(row).sum()) - row[label]
        for row, label in zip(logits[0, 0], labels[0, 0], strict=True)
        if label != VOID
    ]
    expected = (per_pixel[0] * 1 + per_pixel[1] * 3 + per_pixel[2] * 1) / 3
    loss = panoptic_losses.softmax_cross_entropy(
        labels, keras.ops.cast(logits, dtype), weights, top_k_percent=1.0
    )
    assert loss.dtype == "float32"
    np.testing.assert_allclose(_np(loss), [expected], rtol=1e-6)

    _, outputs = _targets_and_outputs(dtype)
    targets, _ = _targets_and_outputs()
    losses = panoptic_losses.PanopticLoss()(targets, outputs)
    assert all(value.dtype == "float32" for value in losses.values())
    np.testing.assert_allclose(_np(losses[common.CENTER_LOSS]), 25.0, rtol=1e-6)
    np.testing.assert_allclose(_np(losses[common.OFFSET_LOSS]), 0.02375, rtol=1e-6)


def test_dynamic_shapes_under_tf_function():
    labels, logits, weights = _semantic_example()
    spec = [
        tf.TensorSpec([None, None, None], tf.int32),
        tf.TensorSpec([None, None, None, 4], tf.float32),
        tf.TensorSpec([None, None, None], tf.float32),
    ]

    @tf.function(input_signature=spec)
    def loss_fn(labels, logits, weights):
        return panoptic_losses.softmax_cross_entropy(labels, logits, weights, top_k_percent=0.4)

    np.testing.assert_allclose(
        _np(loss_fn(labels, logits, weights)), [6 / 2 * LN2, 5 / 2 * LN2], rtol=1e-5
    )


def test_bad_inputs_are_named():
    targets, outputs = _targets_and_outputs()
    del targets[common.CENTER_WEIGHTS]
    with pytest.raises(KeyError, match="targets lacks \\['center_weights'\\]"):
        panoptic_losses.PanopticLoss()(targets, outputs)
    targets, outputs = _targets_and_outputs()
    outputs[common.OFFSETS] = np.zeros((2, 2, 10, 2), np.float32)
    with pytest.raises(ValueError, match="offset_target has shape .* input resolution"):
        panoptic_losses.PanopticLoss()(targets, outputs)
    targets[common.OFFSET_WEIGHTS] = np.zeros((2, 1, 5, 1), np.float32)
    with pytest.raises(ValueError, match=r"offset_weights has shape \(2, 1, 5, 1\)"):
        panoptic_losses.offset_l1(
            targets[common.OFFSET_TARGET],
            targets[common.OFFSET_TARGET],
            targets[common.OFFSET_WEIGHTS],
        )
    outputs[common.CENTER_HEATMAP] = np.zeros((2, 1, 5, 3), np.float32)
    with pytest.raises(ValueError, match="center_heatmap has shape \\(2, 1, 5, 3\\)"):
        panoptic_losses.PanopticLoss()(targets, outputs)
    with pytest.raises(ValueError, match="top_k_percent must lie in \\(0, 1\\], got 0"):
        panoptic_losses.PanopticLoss(top_k_percent=0)
    with pytest.raises(ValueError, match="center_weight must be >= 0"):
        panoptic_losses.PanopticLoss(center_weight=-1)


_JAX_SCRIPT = """
import json, sys
import keras
import numpy as np
from swiderrnet_tf.losses import panoptic_losses
arrays = dict(np.load(sys.argv[1]))
outputs = {k: arrays.pop(k) for k in sys.argv[2].split(",")}
losses = panoptic_losses.PanopticLoss()(arrays, outputs)
result = {k: float(np.asarray(v)) for k, v in losses.items()}
print(json.dumps({"backend": keras.config.backend(), "losses": result}))
"""


_OUTPUT_KEYS = (common.SEMANTIC_LOGITS, common.CENTER_HEATMAP, common.OFFSETS)


def _random_example():
    """Targets and outputs with 42 pixels per image, void labels and 0/1/3 weights."""
    rng = np.random.default_rng(0)
    shape = (2, 6, 7)
    labels = rng.integers(0, 5, shape).astype(np.int32)
    labels[rng.random(shape) < 0.2] = VOID
    arrays = {
        common.SEMANTIC_LABEL: labels,
        common.SEMANTIC_WEIGHTS: rng.choice([0.0, 1.0, 3.0], shape).astype(np.float32),
        common.CENTER_TARGET: rng.random(shape, np.float32),
        common.CENTER_WEIGHTS: rng.choice([0.0, 1.0], shape).astype(np.float32),
        common.OFFSET_TARGET: rng.normal(size=shape + (2,)).astype(np.float32),
        common.OFFSET_WEIGHTS: rng.choice([0.0, 1.0], shape).astype(np.float32),
        common.SEMANTIC_LOGITS: rng.normal(size=shape + (5,)).astype(np.float32),
        common.CENTER_HEATMAP: rng.random(shape + (1,), np.float32),
        common.OFFSETS: rng.normal(size=shape + (2,)).astype(np.float32),
    }
    targets = {key: value for key, value in arrays.items() if key not in _OUTPUT_KEYS}
    outputs = {key: arrays[key] for key in _OUTPUT_KEYS}
    return targets, outputs


def _reference_average(weighted, top_k_percent):
    """deeplab2's reduction, one image at a time: sort, keep, sum / non-zero count."""
    results = []
    for image in weighted.reshape(len(weighted), -1).astype(np.float64):
        kept = round(top_k_percent * image.size)  # Python rounds half to even
        values = np.sort(image)[::-1][:kept]
        count = np.count_nonzero(values)
        results.append(values.sum() / count if count else 0.0)
    return np.mean(results)


def test_random_inputs_match_a_loop_reference():
    targets, outputs = _random_example()
    labels = targets[common.SEMANTIC_LABEL]
    logits = outputs[common.SEMANTIC_LOGITS].astype(np.float64)
    cross_entropy = np.zeros(labels.shape)
    for index in np.ndindex(labels.shape):
        if labels[index] != VOID:
            row = logits[index]
            cross_entropy[index] = np.log(np.exp(row).sum()) - row[labels[index]]
    semantic = _reference_average(cross_entropy * targets[common.SEMANTIC_WEIGHTS], 0.2)
    center_error = (targets[common.CENTER_TARGET] - outputs[common.CENTER_HEATMAP][..., 0]) ** 2
    center = _reference_average(center_error * targets[common.CENTER_WEIGHTS], 1.0)
    offset_error = np.abs(targets[common.OFFSET_TARGET] - outputs[common.OFFSETS]).mean(-1)
    offset = _reference_average(offset_error * targets[common.OFFSET_WEIGHTS], 1.0)

    losses = panoptic_losses.PanopticLoss()(targets, outputs)
    np.testing.assert_allclose(_np(losses[common.SEMANTIC_LOSS]), semantic, rtol=1e-5)
    np.testing.assert_allclose(_np(losses[common.CENTER_LOSS]), 200 * center, rtol=1e-5)
    np.testing.assert_allclose(_np(losses[common.OFFSET_LOSS]), 0.01 * offset, rtol=1e-5)


def test_jax_backend_matches_tensorflow(tmp_path):
    targets, outputs = _random_example()
    path = tmp_path / "inputs.npz"
    np.savez(path, **targets, **outputs)
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-c", _JAX_SCRIPT, str(path), ",".join(_OUTPUT_KEYS)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jax_result = json.loads(result.stdout.strip().splitlines()[-1])
    assert jax_result["backend"] == "jax"
    jax_losses = jax_result["losses"]

    tf_losses = panoptic_losses.PanopticLoss()(targets, outputs)
    assert set(jax_losses) == set(tf_losses)
    for key, value in tf_losses.items():
        np.testing.assert_allclose(jax_losses[key], _np(value), rtol=1e-5, err_msg=key)
