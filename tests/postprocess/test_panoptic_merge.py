"""Tests of the Panoptic-DeepLab merge against hand-worked maps and a numpy reference."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from swiderrnet_tf import common
from swiderrnet_tf.postprocess import centers
from swiderrnet_tf.postprocess import panoptic_merge
from tests.postprocess import numpy_reference

_VOID = 255


def _merge(logits, heatmap, offsets, jit=False, **settings):
    """Runs the merge (eagerly or under tf.function + XLA), returns numpy arrays."""

    def run(logits, heatmap, offsets):
        return panoptic_merge.panoptic_merge(logits, heatmap, offsets, **settings)

    if jit:
        run = tf.function(run, jit_compile=True)
    outputs = run(*(tf.constant(x, tf.float32) for x in (logits, heatmap, offsets)))
    return {k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()}


def _one_hot_logits(semantic, num_classes, margin=5.0):
    return (margin * np.eye(num_classes, dtype=np.float32)[np.asarray(semantic)])[None]


def _offsets_to(targets):
    """`[1, h, w, 2]` offsets sending pixel (y, x) to `targets[y][x]` = (ty, tx)."""
    targets = np.asarray(targets, np.float32)
    height, width = targets.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.stack([targets[..., 0] - yy, targets[..., 1] - xx], axis=-1)[None]


def _heatmap(height, width, peaks):
    heatmap = np.zeros((1, height, width, 1), np.float32)
    for (y, x), score in peaks.items():
        heatmap[0, y, x, 0] = score
    return heatmap


def test_touching_instances_offset_to_other_center_and_small_stuff():
    # Row 1 is one thing class split between centers (1, 1) and (1, 4); pixel
    # (1, 2) lies next to the first center but its offset points at the second;
    # pixel (1, 3) points half-way between them: the first center wins the tie.
    semantic = [[2, 2, 2, 2, 2, 2], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 2]]
    a, b, middle = (1, 1), (1, 4), (1, 2.5)
    far = (40, -40)  # stuff pixels' offsets must not matter
    targets = [[far] * 6, [a, a, b, middle, b, b], [far] * 6]
    # (1, 2) = 0.5 is suppressed by (1, 1); 0.1 is not above the threshold.
    heatmap = _heatmap(3, 6, {a: 0.9, b: 0.8, (1, 2): 0.5, (0, 5): 0.1})
    out = _merge(
        _one_hot_logits(semantic, 3),
        heatmap,
        _offsets_to(targets),
        thing_classes=[1],
        label_divisor=1000,
        stuff_area_limit=6,  # class 0 has 5 pixels -> void; class 2 has 7 -> kept
        nms_kernel=3,
        keep_k_centers=4,
    )
    void = _VOID * 1000
    np.testing.assert_array_equal(
        out[common.PANOPTIC][0],
        [[2000] * 6, [1001, 1001, 1002, 1001, 1002, 1002], [void] * 5 + [2000]],
    )
    np.testing.assert_array_equal(out[common.INSTANCE][0], [[0] * 6, [1, 1, 2, 1, 2, 2], [0] * 6])
    np.testing.assert_array_equal(out[common.SEMANTIC][0], semantic)
    np.testing.assert_array_equal(
        out[common.CENTER_POINTS][0], [[1, 1], [1, 4], [-1, -1], [-1, -1]]
    )
    np.testing.assert_allclose(out[common.CENTER_SCORES][0], [0.9, 0.8, 0.0, 0.0])
    p = math.exp(5) / (math.exp(5) + 2)  # softmax of a one-hot logit of 5 over 3 classes
    np.testing.assert_allclose(
        out[common.INSTANCE_SCORES][0],
        [[0] * 6, [0.9 * p, 0.9 * p, 0.8 * p, 0.9 * p, 0.8 * p, 0.8 * p], [0] * 6],
        rtol=1e-6,
    )


def test_majority_vote_with_tie_takes_smallest_class():
    semantic = [[1, 2, 2, 1, 2, 0], [1, 1, 2, 2, 2, 0]]
    a, b = (0, 1), (0, 4)
    targets = [[a, a, a, b, b, a], [a, a, a, b, b, a]]
    out = _merge(
        _one_hot_logits(semantic, 3),
        _heatmap(2, 6, {a: 0.9, b: 0.8}),
        _offsets_to(targets),
        thing_classes=[1, 2],
        label_divisor=1000,
        stuff_area_limit=0,
        nms_kernel=3,
        keep_k_centers=4,
    )
    # Instance a: classes 1,2,2,1,1,2 -> tie 3:3 -> class 1. Instance b: 1,2,2,2 -> 2.
    np.testing.assert_array_equal(
        out[common.PANOPTIC][0],
        [[1001, 1001, 1001, 2001, 2001, 0], [1001, 1001, 1001, 2001, 2001, 0]],
    )
    # The semantic map itself keeps the per-pixel argmax.
    np.testing.assert_array_equal(out[common.SEMANTIC][0], semantic)
    # Pixel (0, 1) has class 2 but sits in a class-1 instance: its probability of
    # class 1 is the small one, exp(0) / (exp(5) + 2).
    big, small = math.exp(5) / (math.exp(5) + 2), 1 / (math.exp(5) + 2)
    mean_a = (3 * big + 3 * small) / 6
    mean_b = (3 * big + 1 * small) / 4
    np.testing.assert_allclose(
        out[common.INSTANCE_SCORES][0][:, :5],
        [[0.9 * mean_a] * 3 + [0.8 * mean_b] * 2] * 2,
        rtol=1e-6,
    )


def test_instances_numbered_by_first_pixel_and_image_without_centers():
    # Center a (0, 3) comes first in row-major order, but the first pixel of the
    # scan, (0, 0), belongs to b: b is instance 1 of its class, a instance 2.
    semantic = [[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0]]
    a, b = (0, 3), (1, 0)
    targets = [[b, b, a, a], [b, b, a, a], [a, a, a, a]]
    logits = np.concatenate([_one_hot_logits(semantic, 2)] * 2)
    offsets = np.concatenate([_offsets_to(targets)] * 2)
    # The second image has no center: every value is at the threshold.
    heatmap = np.concatenate([_heatmap(3, 4, {a: 0.5, b: 0.7}), np.full((1, 3, 4, 1), 0.1)])
    out = _merge(
        logits,
        heatmap.astype(np.float32),
        offsets,
        thing_classes=[1],
        label_divisor=1000,
        stuff_area_limit=4,  # class 0 has exactly 4 pixels: kept
        nms_kernel=3,
        keep_k_centers=3,
    )
    void = _VOID * 1000
    np.testing.assert_array_equal(
        out[common.PANOPTIC],
        [
            [[1001, 1001, 1002, 1002], [1001, 1001, 1002, 1002], [0, 0, 0, 0]],
            [[void] * 4, [void] * 4, [0, 0, 0, 0]],
        ],
    )
    np.testing.assert_array_equal(
        out[common.INSTANCE],
        [[[2, 2, 1, 1], [2, 2, 1, 1], [0] * 4], np.zeros((3, 4))],
    )
    np.testing.assert_array_equal(out[common.CENTER_POINTS][1], -np.ones((3, 2)))
    np.testing.assert_array_equal(out[common.CENTER_SCORES][1], [0, 0, 0])
    np.testing.assert_array_equal(out[common.INSTANCE_SCORES][1], np.zeros((3, 4)))


# Peaks of the threshold / NMS / top-k cases, worked out on a 5 x 7 map.
_PEAKS = {
    (0, 0): 0.5,  # corner: the zero padding does not suppress it
    (0, 5): 0.2,  # suppressed by its neighbour (0, 6)
    (0, 6): 0.25,
    (2, 2): 0.6,  # a plateau: both equal maxima are kept
    (2, 3): 0.6,
    (4, 0): 0.3,  # two pixels apart from (4, 2): outside a 3x3 window
    (4, 2): 0.4,
    (4, 5): 0.05,  # below the threshold
    (4, 6): 0.1,  # at the threshold: not a center
}


@pytest.mark.parametrize(
    "nms_kernel, keep_k, expected",
    [
        (3, 8, [(0, 0), (0, 6), (2, 2), (2, 3), (4, 0), (4, 2)]),
        (3, 4, [(0, 0), (2, 2), (2, 3), (4, 2)]),  # the four highest, row-major
        (3, 1, [(2, 2)]),  # a tie at the cut: the earlier pixel
        # 5x5 windows: (0, 0), (4, 0) and (4, 2) lie within two pixels of (2, 2).
        (5, 8, [(0, 6), (2, 2), (2, 3)]),
    ],
)
def test_threshold_nms_and_top_k(nms_kernel, keep_k, expected):
    heatmap = _heatmap(5, 7, _PEAKS)[..., 0]
    points, scores = centers.find_centers(
        tf.constant(heatmap), center_threshold=0.1, nms_kernel=nms_kernel, keep_k_centers=keep_k
    )
    points, scores = np.asarray(points)[0], np.asarray(scores)[0]
    n = len(expected)
    np.testing.assert_array_equal(points[:n], expected)
    np.testing.assert_allclose(scores[:n], [_PEAKS[p] for p in expected])
    np.testing.assert_array_equal(points[n:], -1)
    np.testing.assert_array_equal(scores[n:], 0)


@pytest.mark.parametrize("kernel", [1, 3, 5, 41])
def test_window_max_matches_brute_force(kernel):
    x = np.random.default_rng(kernel).uniform(0, 1, (2, 9, 13)).astype(np.float32)
    r = kernel // 2
    expected = np.zeros_like(x)
    for b in range(2):
        for y in range(9):
            for col in range(13):
                window = x[b, max(0, y - r) : y + r + 1, max(0, col - r) : col + r + 1]
                expected[b, y, col] = window.max()
    np.testing.assert_array_equal(np.asarray(centers.window_max(tf.constant(x), kernel)), expected)


def random_outputs(seed, batch, height=11, width=14, num_classes=5):
    """Random logits, a peaky heatmap and offsets, float32."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (batch, height, width, num_classes)).astype(np.float32)
    heatmap = (rng.uniform(0, 1, (batch, height, width, 1)) ** 4).astype(np.float32)
    offsets = rng.normal(0, 4, (batch, height, width, 2)).astype(np.float32)
    return logits, heatmap, offsets


RANDOM_SETTINGS = dict(
    thing_classes=[1, 3, 4],
    label_divisor=256,
    stuff_area_limit=25,
    center_threshold=0.1,
    nms_kernel=3,
    void_label=_VOID,
)


def assert_matches_reference(out, logits, heatmap, offsets, keep_k, settings=RANDOM_SETTINGS):
    ref = numpy_reference.merge_batch(
        logits,
        heatmap[..., 0],
        offsets,
        thing_classes=settings["thing_classes"],
        label_divisor=settings["label_divisor"],
        stuff_area_limit=settings["stuff_area_limit"],
        threshold=settings["center_threshold"],
        nms_kernel=settings["nms_kernel"],
        keep_k=keep_k,
        void_label=settings["void_label"],
    )
    for key in ("semantic", "instance", "panoptic"):
        np.testing.assert_array_equal(out[key], ref[key], err_msg=key)
    np.testing.assert_allclose(out[common.INSTANCE_SCORES], ref["instance_scores"], rtol=1e-5)
    for b, image_centers in enumerate(ref["centers"]):
        n = len(image_centers)
        np.testing.assert_array_equal(
            out[common.CENTER_POINTS][b, :n], [p for p, _ in image_centers]
        )
        np.testing.assert_allclose(out[common.CENTER_SCORES][b, :n], [s for _, s in image_centers])
        np.testing.assert_array_equal(out[common.CENTER_SCORES][b, n:], 0)


@pytest.mark.parametrize("batch, keep_k", [(1, 200), (2, 6), (3, 12)])
def test_random_maps_match_reference(batch, keep_k):
    logits, heatmap, offsets = random_outputs(batch, batch)
    out = _merge(logits, heatmap, offsets, keep_k_centers=keep_k, **RANDOM_SETTINGS)
    assert_matches_reference(out, logits, heatmap, offsets, keep_k)
    # The cases exercise what they claim: several instances, and top-k truncation
    # where k is small.
    assert out[common.INSTANCE].max() >= 3
    found = max(len(numpy_reference.find_centers(h[..., 0], 0.1, 3, keep_k=10**9)) for h in heatmap)
    assert (found > keep_k) == (keep_k < 200)


def test_many_classes_match_reference():
    # Past 64 classes the class probability is a reduction, not class slices.
    logits, heatmap, offsets = random_outputs(4, 2, num_classes=70)
    logits[..., 69] += 2.0  # so that thing class 69 shows up
    settings = dict(RANDOM_SETTINGS, thing_classes=[1, 3, 4, 69])
    out = _merge(logits, heatmap, offsets, keep_k_centers=20, **settings)
    assert_matches_reference(out, logits, heatmap, offsets, 20, settings)
    assert 69 in out[common.PANOPTIC] // 256


def test_xla_equals_eager_with_all_slots_used():
    logits, heatmap, offsets = random_outputs(7, 2, height=13, width=10)
    settings = dict(RANDOM_SETTINGS, keep_k_centers=10)
    eager = _merge(logits, heatmap, offsets, **settings)
    compiled = _merge(logits, heatmap, offsets, jit=True, **settings)
    assert (eager[common.CENTER_SCORES] > 0).all()
    for key, value in eager.items():
        if value.dtype.kind == "f":
            np.testing.assert_allclose(compiled[key], value, rtol=1e-6, err_msg=key)
        else:
            np.testing.assert_array_equal(compiled[key], value, err_msg=key)
    assert_matches_reference(compiled, logits, heatmap, offsets, keep_k=10)


def test_semantic_probabilities_on_request():
    logits, heatmap, offsets = random_outputs(3, 1, height=4, width=5)
    out = _merge(
        logits,
        heatmap,
        offsets,
        keep_k_centers=5,
        return_semantic_probabilities=True,
        **RANDOM_SETTINGS,
    )
    e = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(
        out[common.SEMANTIC_PROBABILITIES], e / e.sum(-1, keepdims=True), rtol=1e-5
    )
    assert common.SEMANTIC_PROBABILITIES not in _merge(
        logits, heatmap, offsets, keep_k_centers=5, **RANDOM_SETTINGS
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(nms_kernel=4), "nms_kernel must be an odd"),
        (dict(keep_k_centers=0), "keep_k_centers must be >= 1"),
        (dict(label_divisor=100), r"label_divisor \(100\) must exceed keep_k_centers"),
        (dict(thing_classes=[1, 7]), r"thing_classes \[7\] are outside the model classes 0..4"),
        (dict(void_label=3), "void_label 3 collides with a model class"),
    ],
)
def test_bad_settings_are_named(change, message):
    logits, heatmap, offsets = random_outputs(0, 1, height=4, width=5)
    settings = {**RANDOM_SETTINGS, "keep_k_centers": 200, **change}
    with pytest.raises(ValueError, match=message):
        _merge(logits, heatmap, offsets, **settings)


def test_mismatched_shapes_are_named():
    logits, heatmap, offsets = random_outputs(0, 1, height=4, width=5)
    with pytest.raises(ValueError, match=r"offsets has shape .*expected \[batch, 4, 5, 2\]"):
        _merge(logits, heatmap, offsets[:, :3], keep_k_centers=5, **RANDOM_SETTINGS)
    with pytest.raises(ValueError, match=r"center_heatmap has shape .*expected \[batch, 4, 5, 1\]"):
        _merge(logits, offsets, offsets, keep_k_centers=5, **RANDOM_SETTINGS)


def test_unknown_batch_size_in_a_graph():
    logits, heatmap, offsets = random_outputs(2, 2, height=6, width=5)
    specs = [tf.TensorSpec([None, *x.shape[1:]], tf.float32) for x in (logits, heatmap, offsets)]
    for jit in (False, True):
        run = tf.function(
            lambda *outputs: panoptic_merge.panoptic_merge(
                *outputs, keep_k_centers=5, **RANDOM_SETTINGS
            ),
            input_signature=specs,
            jit_compile=jit,
        )
        out = {k: v.numpy() for k, v in run(logits, heatmap, offsets).items()}
        assert_matches_reference(out, logits, heatmap, offsets, keep_k=5)
