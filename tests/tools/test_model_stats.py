"""Tests for the parameter and multiply-add counter."""

import json
import pathlib
import subprocess
import sys

import keras
import pytest

from swiderrnet_tf.tools import counting


def _toy(rate):
    images = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", dilation_rate=rate, use_bias=False)(images)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(images, keras.layers.Dense(5)(x))


def test_madds_of_plain_convolutions_by_hand():
    model = _toy(rate=1)
    # conv: 9x9 outputs * 4 filters * (3*3*3); depthwise: 9*9*4 * 3*3; dense 4*5.
    expected = 81 * 4 * 27 + 81 * 4 * 9 + 4 * 5
    assert counting.count_madds(model, 9, 9) == expected
    assert counting.count_parameters(model) == 3 * 3 * 3 * 4 + 3 * 3 * 4 + 4 * 5 + 5


def test_madds_of_atrous_convolution_by_hand():
    model = _toy(rate=2)
    # TensorFlow runs the rate-2 conv as SpaceToBatch: 9x9 'same' with an
    # effective 5x5 kernel pads to 13x13, rounded up to 14x14 (a multiple of 2),
    # split into 4 images of 7x7, each convolved 'valid' to 5x5: 4*5*5 = 100
    # positions instead of 81.
    graph = 100 * 4 * 27 + 81 * 4 * 9 + 4 * 5
    dense = 81 * 4 * 27 + 81 * 4 * 9 + 4 * 5
    assert counting.count_madds(model, 9, 9) == graph
    assert counting.count_madds(model, 9, 9, atrous_counting="dense") == dense


def test_paper_table3_madds_within_half_a_percent():
    # Table 3: WR-41 655.66 B and SWideRNet-(1, 1, 1) 680.79 B on COCO at 641x641.
    for name, paper in (("wide_resnet41", 655.66), ("swidernet_1_1_1", 680.79)):
        stats = counting.model_stats(name, num_classes=133, height=641, width=641, regime="strong")
        assert abs(stats["madds"] / 1e9 - paper) / paper < 0.005, (name, stats)


def test_json_command_line():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "swiderrnet_tf.tools.model_stats",
            "--backbone=swidernet_0.25_0.25_0.35",
            "--num_classes=19",
            "--height=65",
            "--width=97",
            "--regime=fast",
            "--override=sac=false",
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=pathlib.Path(__file__).parents[2],
        check=True,
    )
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(stats) == {"params", "madds"}
    direct = counting.model_stats(
        "swidernet_0.25_0.25_0.35",
        num_classes=19,
        height=65,
        width=97,
        regime="fast",
        backbone_overrides={"sac": False},
    )
    assert stats == direct


def test_sweep_table(tmp_path):
    rows = counting.sweep(
        pattern="swidernet_0.25_0.25_0.75",
        num_classes=19,
        height=1025,
        width=2049,
        regime=None,
        backbone_overrides={},
        backbone_only=False,
        atrous_counting="graph",
    )
    assert [(r["backbone"], r["regime"]) for r in rows] == [("swidernet_0.25_0.25_0.75", "fast")]
    assert rows[0]["paper_madds_b"] == 151.97  # Table 12
    table = counting.markdown_table(rows)
    assert "| swidernet_0.25_0.25_0.75 | fast |" in table


def test_unknown_backbone_is_reported():
    with pytest.raises(ValueError, match="unknown backbone"):
        counting.model_stats("resnet", num_classes=3, height=33, width=33, regime="fast")
