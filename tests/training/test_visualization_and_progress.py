"""Panoptic overlays, host-loop boundaries and progress formatting, on hand-made cases."""

import numpy as np

from swiderrnet_tf.data import dataset_info
from swiderrnet_tf.training import progress
from swiderrnet_tf.training import trainer
from swiderrnet_tf.training import visualization

INFO = dataset_info.SYNTHETIC  # sky (70, 130, 180), disc (220, 20, 60), divisor 1000
VOID = 255 * 1000


def test_colorize_class_colours_instance_shades_and_void():
    panoptic = np.array([[0, 3001, 3002, VOID]])
    colors, void = visualization.colorize(panoptic, INFO)
    np.testing.assert_allclose(colors[0, 0], [70, 130, 180])
    # Instance 1 is shaded 0.7, instance 2 is shaded 0.85.
    np.testing.assert_allclose(colors[0, 1], [154, 14, 42], atol=1e-4)
    np.testing.assert_allclose(colors[0, 2], [187, 17, 51], atol=1e-4)
    np.testing.assert_allclose(colors[0, 3], [0, 0, 0])
    assert void.tolist() == [[False, False, False, True]]


def test_boundaries_mark_pixels_whose_right_or_lower_neighbour_differs():
    panoptic = np.array([[1, 1, 2], [1, 1, 2], [3, 3, 3]])
    expected = [[False, True, False], [True, True, True], [False, False, False]]
    assert visualization.boundaries(panoptic).tolist() == expected


def test_overlay_blends_colours_keeps_void_and_draws_boundaries_white():
    image = np.full((3, 2, 3), 100.0)
    panoptic = np.array([[0, 0], [0, 0], [VOID, VOID]])
    out = visualization.overlay(image, panoptic, INFO)
    assert out.dtype == np.uint8
    assert out[0, 0].tolist() == [85, 115, 140]  # 0.5 * 100 + 0.5 * sky
    assert out[1, 0].tolist() == [255, 255, 255]  # its lower neighbour is void
    assert out[2, 0].tolist() == [100, 100, 100]  # void keeps the image
    panels = visualization.comparison_panels(image[None], panoptic[None], panoptic[None], INFO)
    assert panels.shape == (1, 3, 6, 3)
    assert panels[0, 0, :2].tolist() == [[100, 100, 100]] * 2  # the plain image first
    assert panels[0, 0, 2].tolist() == [85, 115, 140]


def test_host_loops_end_at_every_interval_and_at_the_last_step():
    assert trainer._next_stop(0, 100, 30, (25, 40, 0)) == 25
    assert trainer._next_stop(25, 100, 30, (25, 40, 0)) == 40
    assert trainer._next_stop(40, 100, 30, (25, 40, 0)) == 50
    assert trainer._next_stop(90, 100, 30, (25, 40, 0)) == 100
    assert trainer._next_stop(95, 97, 30, (0, 0)) == 97


def test_durations_read_like_a_clock():
    assert progress.format_duration(3725) == "1h02m"
    assert progress.format_duration(185) == "3m05s"
    assert progress.format_duration(42.4) == "42s"
