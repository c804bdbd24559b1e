"""Grouping by tiles with pruned candidate centers equals comparing every center.

The expected assignments come from a brute-force numpy search over all centers
(first center on ties), written here independently of `centers.py`.
"""

import numpy as np
import pytest
import tensorflow as tf

from swiderrnet_tf.postprocess import centers
from tests.postprocess import test_deeplab2_fixture


def brute_force_nearest(targets, points, used):
    """`[h, w]` index of the used center nearest each float32 target, first on ties.

    Args:
      targets: `[h, w, 2]` float32 target points `(y, x)`.
      points: `[k, 2]` int centers `(y, x)`.
      used: `[k]` bool.
    """
    height, width, _ = targets.shape
    nearest = np.zeros((height, width), np.int32)
    slots = np.flatnonzero(used)
    if not slots.size:
        return nearest
    for y in range(height):
        for x in range(width):
            dy = points[slots, 0].astype(np.float32) - targets[y, x, 0]
            dx = points[slots, 1].astype(np.float32) - targets[y, x, 1]
            nearest[y, x] = slots[np.argmin(dy * dy + dx * dx)]  # argmin: first on ties
    return nearest


def _grid(height, width):
    """`[h, w, 2]` float32 pixel coordinates `(y, x)`."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.stack([yy, xx], axis=-1)


def _assign(offsets, points, scores, jit=False, **kwargs):
    def run(offsets, points, scores):
        return centers.assign_to_centers(offsets, points, scores, **kwargs)

    if jit:
        run = tf.function(run, jit_compile=True)
    args = (tf.constant(offsets, tf.float32), tf.constant(points, tf.int32))
    return np.asarray(run(*args, tf.constant(scores, tf.float32)))


def test_center_exactly_at_the_bound_is_kept():
    # One tile of one row. Its targets span x in [10, 14] on row 10, so the box's
    # middle is (10, 12). Slot 1 sits there: the reference, at most 2 (squared: 4)
    # from every target. Slot 0 is exactly 2 from the box, so the bound keeps it,
    # and it wins the target (10, 10) on the tie with slot 1, being earlier. Slot 2
    # is also exactly 2 from the box but later than slot 1, so it loses its tie at
    # (10, 14). Slot 3 is 3 from the box, past the bound: pruned, never nearest.
    targets = np.array([[(10, 10), (10, 12), (10, 12), (10, 12), (10, 14)]], np.float32)
    points = np.array([[10, 8], [10, 12], [10, 16], [10, 7]])
    used = np.ones(4, bool)
    expected = [[0, 1, 1, 1, 1]]
    np.testing.assert_array_equal(brute_force_nearest(targets, points, used), expected)
    offsets = (targets - _grid(1, 5))[None]
    for jit in (False, True):
        got = _assign(offsets, points[None], used[None].astype(np.float32), jit=jit, tile=(1, 5))
        np.testing.assert_array_equal(got[0], expected)

    # The case exercises the bound: slot 3 is pruned, the tying slots are not.
    candidate, count = centers._candidates(
        tf.constant(targets[..., 0]),
        tf.constant(targets[..., 1]),
        tf.constant(points[:, 0], tf.float32),
        tf.constant(points[:, 1], tf.float32),
        tf.constant(used),
    )
    np.testing.assert_array_equal(candidate, [True, True, True, False])
    assert int(count) == 3


@pytest.mark.parametrize(
    "tile, jit",
    [((1, 1), True), ((2, 3), False), ((2, 3), True), ((5, 4), True), ((256, 256), False)],
)
def test_integer_ties_on_small_tiles_match_brute_force(tile, jit):
    # Integer targets and centers in a small square make the float32 distances
    # exact and full of ties, many of them exactly at a tile's bound; a few unused
    # slots sit among the used ones, two images share the batch.
    rng = np.random.default_rng(5)
    height, width, num_slots = 9, 11, 13
    targets = rng.integers(0, 8, (2, height, width, 2)).astype(np.float32)
    points = rng.integers(0, 8, (2, num_slots, 2))
    scores = (rng.uniform(size=(2, num_slots)) > 0.25).astype(np.float32)
    offsets = targets - _grid(height, width)
    got = _assign(offsets, points, scores, jit=jit, chunk=3, tile=tile)
    for b in range(2):
        expected = brute_force_nearest(targets[b], points[b], scores[b] > 0)
        np.testing.assert_array_equal(got[b], expected, err_msg=f"image {b}")


def test_real_offsets_on_small_tiles_match_brute_force(testdata):
    # The deeplab2 fixture's offsets and centers, cut into 9 tiles of 43 x 54.
    fixture = test_deeplab2_fixture.load_fixture(testdata)
    settings = test_deeplab2_fixture.FIXTURE_SETTINGS
    points, scores = centers.find_centers(
        tf.constant(fixture["center_heatmap"]),
        center_threshold=settings["center_threshold"],
        nms_kernel=settings["nms_kernel"],
        keep_k_centers=settings["keep_k_centers"],
    )
    points, scores = np.asarray(points), np.asarray(scores)
    offsets = fixture["offset_map"]
    assert (scores > 0).sum() >= 3
    got = _assign(offsets, points, scores, jit=True, tile=(43, 54))
    height, width = offsets.shape[1:3]
    expected = brute_force_nearest(offsets[0] + _grid(height, width), points[0], scores[0] > 0)
    np.testing.assert_array_equal(got[0], expected)
