"""Panoptic-DeepLab targets on hand-made maps, against values worked out independently."""

import dataclasses

import numpy as np
import tensorflow as tf

from swiderrnet_tf import common
from swiderrnet_tf.data import dataset_info
from swiderrnet_tf.data import synthetic
from swiderrnet_tf.data import targets

INFO = dataset_info.SYNTHETIC  # stuff 0, 1, 2; things 3, 4, 5; divisor 1000
VOID = 255 * 1000
SKY, GRASS, DISC, BOX = 0, 1, 3, 4


def _targets(panoptic, **kwargs):
    out = targets.generate_targets(tf.constant(panoptic, tf.int32), dataset_info=INFO, **kwargs)
    return {k: v.numpy() for k, v in out.items()}


def _gaussian(d2):
    return np.exp(-d2 / (2.0 * 8.0**2))


def test_lone_square_center_heatmap_and_offsets():
    panoptic = np.full((64, 80), SKY * 1000)
    panoptic[25:36, 35:46] = DISC * 1000 + 7  # 11x11: rows 25..35, cols 35..45
    out = _targets(panoptic)
    center = (30, 40)  # mean of 25..35 and of 35..45
    heatmap = out[common.CENTER_TARGET]
    assert heatmap[center] == 1.0
    assert np.unravel_index(np.argmax(heatmap), heatmap.shape) == center
    for dy, dx in [(0, 1), (3, 4), (-7, 2), (20, -15), (25, 25), (-25, 0)]:
        np.testing.assert_allclose(
            heatmap[center[0] + dy, center[1] + dx], _gaussian(dy**2 + dx**2), rtol=1e-6
        )
    # The window is 6 * 8 + 3 = 51 wide: nothing 26 pixels away in y or x.
    assert heatmap[center[0] + 26, center[1]] == 0.0
    assert heatmap[center[0], center[1] + 26] == 0.0
    assert heatmap[center[0] - 15 :, : center[1] - 25].max() == 0.0

    offsets = out[common.OFFSET_TARGET]
    ys, xs = np.nonzero(panoptic == DISC * 1000 + 7)
    np.testing.assert_array_equal(ys + offsets[ys, xs, 0], center[0])
    np.testing.assert_array_equal(xs + offsets[ys, xs, 1], center[1])
    np.testing.assert_array_equal(offsets[panoptic == SKY * 1000], 0.0)
    np.testing.assert_array_equal(out[common.OFFSET_WEIGHTS], panoptic != SKY * 1000)
    np.testing.assert_array_equal(out[common.CENTER_WEIGHTS], 1.0)
    np.testing.assert_array_equal(out[common.SEMANTIC_LABEL], panoptic // 1000)


def test_even_sized_instance_center_is_numpy_rounded_mean():
    panoptic = np.full((40, 50), GRASS * 1000)
    panoptic[10:20, 31:41] = BOX * 1000 + 1  # means 14.5 and 35.5
    panoptic[25:28, 5:7] = BOX * 1000 + 2  # means 26 and 5.5
    heatmap = _targets(panoptic)[common.CENTER_TARGET]
    for instance in (1, 2):
        ys, xs = np.nonzero(panoptic == BOX * 1000 + instance)
        center = (int(np.round(ys.mean())), int(np.round(xs.mean())))
        assert heatmap[center] == 1.0, (instance, center)
    assert np.count_nonzero(heatmap == 1.0) == 2


def test_overlapping_gaussians_take_the_maximum():
    panoptic = np.full((60, 60), SKY * 1000)
    panoptic[20:23, 20:23] = DISC * 1000 + 1  # center (21, 21)
    panoptic[30:33, 26:29] = DISC * 1000 + 2  # center (31, 27)
    heatmap = _targets(panoptic)[common.CENTER_TARGET]
    yy, xx = np.mgrid[:60, :60]
    expected = np.zeros((60, 60))
    for cy, cx in [(21, 21), (31, 27)]:
        inside = (np.abs(yy - cy) <= 25) & (np.abs(xx - cx) <= 25)
        expected = np.maximum(
            expected, np.where(inside, _gaussian((yy - cy) ** 2 + (xx - cx) ** 2), 0)
        )
    np.testing.assert_allclose(heatmap, expected, rtol=1e-6, atol=1e-7)


def test_crowd_keeps_its_class_but_gets_no_center_and_no_weights():
    panoptic = np.full((50, 50), SKY * 1000)
    panoptic[5:25, 5:25] = DISC * 1000  # crowd: thing class, instance 0
    panoptic[40:45, 40:45] = VOID
    out = _targets(panoptic)
    crowd = panoptic == DISC * 1000
    void = panoptic == VOID
    assert out[common.CENTER_TARGET].max() == 0.0
    np.testing.assert_array_equal(out[common.CROWD_MASK], crowd)
    np.testing.assert_array_equal(out[common.CENTER_WEIGHTS], ~(crowd | void))
    np.testing.assert_array_equal(out[common.OFFSET_WEIGHTS], 0.0)
    np.testing.assert_array_equal(out[common.OFFSET_TARGET], 0.0)
    assert (out[common.SEMANTIC_LABEL][crowd] == DISC).all()
    assert (out[common.SEMANTIC_LABEL][void] == 255).all()
    # Crowd is not a small instance: weight 1; void weighs 0.
    np.testing.assert_array_equal(out[common.SEMANTIC_WEIGHTS], np.where(void, 0.0, 1.0))


def test_small_instances_weigh_three():
    panoptic = np.full((128, 256), GRASS * 1000)
    panoptic[5:35, 5:35] = DISC * 1000 + 1  # 30x30 = 900 px < 4096
    panoptic[10:110, 100:200] = BOX * 1000 + 2  # 100x100 = 10000 px
    panoptic[115:125, 230:250] = VOID
    weights = _targets(panoptic)[common.SEMANTIC_WEIGHTS]
    assert (weights[5:35, 5:35] == 3.0).all()
    assert (weights[10:110, 100:200] == 1.0).all()
    assert (weights[panoptic == GRASS * 1000] == 1.0).all()
    assert (weights[panoptic == VOID] == 0.0).all()
    lower = _targets(panoptic, small_instance_area=900)[common.SEMANTIC_WEIGHTS]
    assert (lower[5:35, 5:35] == 1.0).all()  # "smaller than": 900 is not < 900


def test_stuff_with_an_instance_id_gets_no_center():
    panoptic = np.full((30, 30), SKY * 1000 + 3)
    out = _targets(panoptic)
    assert out[common.CENTER_TARGET].max() == 0.0
    assert out[common.OFFSET_WEIGHTS].max() == 0.0


def test_non_contiguous_thing_classes():
    info = dataclasses.replace(INFO, name="gappy", thing_classes=(1, 4))
    panoptic = np.full((20, 20), 0)
    panoptic[2:5, 2:5] = 1000 + 1  # thing (class 1)
    panoptic[10:13, 10:13] = 3000 + 1  # class 3 is stuff here
    out = targets.generate_targets(tf.constant(panoptic, tf.int32), dataset_info=info)
    weights = out[common.OFFSET_WEIGHTS].numpy()
    np.testing.assert_array_equal(weights, panoptic == 1001)


def _reference(panoptic, sigma=8.0, small_area=4096, small_weight=3.0):
    """Loop over segments in numpy, written from the definitions."""
    height, width = panoptic.shape
    heatmap = np.zeros((height, width))
    offsets = np.zeros((height, width, 2))
    sem_w = np.ones((height, width))
    yy, xx = np.mgrid[:height, :width]
    radius = 3 * sigma + 1
    for pid in np.unique(panoptic):
        cls, inst = divmod(int(pid), 1000)
        mask = panoptic == pid
        if cls == 255:
            sem_w[mask] = 0.0
        if cls not in INFO.thing_classes or inst == 0:
            continue
        ys, xs = np.nonzero(mask)
        cy, cx = np.round(ys.mean()), np.round(xs.mean())
        if mask.sum() < small_area:
            sem_w[mask] = small_weight
        window = (np.abs(yy - cy) <= radius) & (np.abs(xx - cx) <= radius)
        g = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
        heatmap = np.maximum(heatmap, np.where(window, g, 0.0))
        offsets[mask, 0] = cy - ys
        offsets[mask, 1] = cx - xs
    return heatmap, offsets, sem_w


def test_synthetic_scenes_match_a_loop_reference():
    for index in range(3):
        rng = np.random.default_rng([11, index])
        _, semantic, instance = synthetic.render_scene(rng, 97, 129)
        panoptic = np.where(semantic == 255, VOID, semantic * 1000 + instance)
        out = _targets(panoptic)
        heatmap, offsets, sem_w = _reference(panoptic)
        np.testing.assert_allclose(out[common.CENTER_TARGET], heatmap, rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(out[common.OFFSET_TARGET], offsets)
        np.testing.assert_array_equal(out[common.SEMANTIC_WEIGHTS], sem_w)


def test_works_inside_tf_function_with_unknown_shape():
    fn = tf.function(
        lambda p: targets.generate_targets(p, dataset_info=INFO)[common.CENTER_TARGET],
        input_signature=[tf.TensorSpec([None, None], tf.int32)],
    )
    panoptic = np.full((21, 23), SKY * 1000, np.int32)
    panoptic[3:6, 4:7] = DISC * 1000 + 1
    assert fn(tf.constant(panoptic)).numpy()[4, 5] == 1.0
