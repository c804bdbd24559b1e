"""Parameter counts pinned to the paper's tables and to deeplab2's models.

Models are built inside a `StatelessScope` that never allocates weight values,
so even the 750 M-parameter models count in a second; the count comes from the
same code that builds the trainable model.
"""

import keras
import numpy as np
import pytest

from swiderrnet_tf.backbones import registry
from swiderrnet_tf.meta_arch import panoptic_deeplab


def _trainable(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def _backbone_params(name, **options):
    with keras.StatelessScope(initialize_variables=False):
        return _trainable(registry.create_backbone(name, **options))


def _coco_params(name, regime="strong", **options):
    with keras.StatelessScope(initialize_variables=False):
        return _trainable(
            panoptic_deeplab.build_panoptic_deeplab(name, 133, regime, backbone_options=options)
        )


@pytest.mark.parametrize(
    "name, options, expected",
    [  # DESIGN 1.4, deeplab2 layout, backbone only.
        ("wide_resnet41", {}, 109_014_080),
        ("swidernet_0.25_0.35_0.75", {}, 10_524_480),
        ("swidernet_0.25_0.35_0.75", {"squeeze_excite": False}, 9_088_664),
        ("swidernet_0.25_0.35_0.75", {"squeeze_excite": False, "sac": False}, 8_766_820),
    ],
)
def test_deeplab2_backbone_counts_exact(name, options, expected):
    assert _backbone_params(name, layout="deeplab2", **options) == expected


@pytest.mark.parametrize(
    "options, expected_millions",
    [({"squeeze_excite": False}, 112.952), ({}, 130.513)],  # DESIGN 1.4, 3 decimals
)
def test_deeplab2_backbone_counts_rounded(options, expected_millions):
    count = _backbone_params("swidernet_1_1_1", layout="deeplab2", **options)
    assert round(count / 1e6, 3) == expected_millions


@pytest.mark.parametrize(
    "name, regime, options, paper_millions",
    [  # Paper Tables 3 and 4: COCO, 133 classes, paper layout.
        ("wide_resnet41", "strong", {}, 147.32),
        ("swidernet_1_1_1", "strong", {"squeeze_excite": False}, 151.26),
        ("swidernet_1_1_1", "strong", {}, 168.77),
        ("swidernet_1_1_1", "fast", {}, 136.92),
        ("swidernet_1_1_2", "strong", {}, 302.33),
        ("swidernet_1_1_3", "strong", {}, 435.90),
        ("swidernet_1_1_4", "strong", {}, 569.46),
        ("swidernet_1_1_5.5", "strong", {}, 752.53),
        ("swidernet_1_1.5_1", "strong", {}, 345.75),
        ("swidernet_1_2_1", "strong", {}, 587.35),
    ],
)
def test_coco_counts_match_paper(name, regime, options, paper_millions):
    count = _coco_params(name, regime, **options)
    assert abs(count / 1e6 - paper_millions) / paper_millions < 0.0005
