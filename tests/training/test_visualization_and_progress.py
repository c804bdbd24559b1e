"""Panoptic overlays, host-loop boundaries and progress formatting, on hand-made cases."""

import io

import numpy as np

from swiderrnet_tf import progress
from swiderrnet_tf.data import dataset_info
from swiderrnet_tf.inference import visualization
from swiderrnet_tf.training import trainer

INFO = dataset_info.SYNTHETIC  # sky (70, 130, 180), disc (220, 20, 60), divisor 1000
VOID = 255 * 1000


def test_class_colours_instance_shifts_and_void():
    panoptic = np.array([[0, 3001, 3002, VOID]])
    colors = visualization.segment_colors(panoptic, INFO)
    np.testing.assert_array_equal(colors[0, 0], [70, 130, 180])
    # Instance n shifts disc (220, 20, 60) by (n * (37, 91, 53)) % 96 - 48:
    # n = 1: (-11, 43, 5); n = 2: (26, 38, -38).
    np.testing.assert_array_equal(colors[0, 1], [209, 63, 65])
    np.testing.assert_array_equal(colors[0, 2], [246, 58, 22])
    np.testing.assert_array_equal(colors[0, 3], [0, 0, 0])


def test_boundaries_mark_pixels_whose_right_or_lower_neighbour_differs():
    panoptic = np.array([[1, 1, 2], [1, 1, 2], [3, 3, 3]])
    expected = [[False, True, False], [True, True, True], [False, False, False]]
    assert visualization.segment_borders(panoptic).tolist() == expected


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


def test_progress_bar_shows_rate_elapsed_and_eta():
    now = [0.0]
    stream = io.StringIO()
    bar = progress.ProgressBar(40, "val", stream=stream, clock=lambda: now[0])
    now[0] = 10.0
    bar.update(10)  # a quarter in 10 s: 1 img/s, 30 left
    now[0] = 40.0
    bar.update(30)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "val [#######.......................] 10/40 1.0 img/s, elapsed 10s, ETA 30s"
    assert lines[1] == "val [##############################] 40/40 1.0 img/s, elapsed 40s"
