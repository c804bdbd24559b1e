"""AutoAugment operations against PIL, the definitions AutoAugment was written with."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from PIL import ImageEnhance
from PIL import ImageOps

from swiderrnet_tf.data import autoaugment


def _images():
    """Small uint8 images covering noise, few levels and constant channels."""
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, size=(13, 17, 3), dtype=np.uint8)
    levels = (rng.integers(0, 5, size=(9, 11, 3)) * 50 + 20).astype(np.uint8)
    flat_channel = rng.integers(0, 256, size=(8, 6, 3), dtype=np.uint8)
    flat_channel[..., 1] = 77
    constant = np.full((5, 7, 3), 200, dtype=np.uint8)
    return [noise, levels, flat_channel, constant]


_ENHANCERS = [
    (autoaugment.brightness, ImageEnhance.Brightness),
    (autoaugment.color, ImageEnhance.Color),
    (autoaugment.contrast, ImageEnhance.Contrast),
    (autoaugment.sharpness, ImageEnhance.Sharpness),
]


@pytest.mark.parametrize("ours, theirs", _ENHANCERS, ids=lambda f: getattr(f, "__name__", ""))
@pytest.mark.parametrize("factor", [0.1, 0.352, 0.46, 1.0, 1.9])
def test_enhance_ops_match_pil(ours, theirs, factor):
    for image in _images():
        expected = np.asarray(theirs(Image.fromarray(image)).enhance(factor))
        np.testing.assert_array_equal(ours(tf.constant(image), factor).numpy(), expected)


@pytest.mark.parametrize("threshold", [0, 35, 128, 255, 256])
def test_solarize_matches_pil(threshold):
    for image in _images():
        expected = np.asarray(ImageOps.solarize(Image.fromarray(image), threshold))
        np.testing.assert_array_equal(
            autoaugment.solarize(tf.constant(image), threshold).numpy(), expected
        )


def test_equalize_matches_pil():
    rng = np.random.default_rng(3)
    skewed = (rng.beta(2, 8, size=(31, 29, 3)) * 255).astype(np.uint8)
    for image in [*_images(), skewed]:
        expected = np.asarray(ImageOps.equalize(Image.fromarray(image)))
        np.testing.assert_array_equal(autoaugment.equalize(tf.constant(image)).numpy(), expected)


def test_levels_map_to_autoaugment_arguments():
    image = np.random.default_rng(1).integers(0, 256, size=(10, 12, 3), dtype=np.uint8)
    pil = Image.fromarray(image)
    # Enhancement factor = level / 10 * 1.8 + 0.1: level 2.0 -> 0.46, 1.4 -> 0.352.
    for name, enhancer, level, factor in [
        ("Brightness", ImageEnhance.Brightness, 2.0, 0.46),
        ("Contrast", ImageEnhance.Contrast, 2.0, 0.46),
        ("Color", ImageEnhance.Color, 1.8, 0.424),
        ("Sharpness", ImageEnhance.Sharpness, 1.4, 0.352),
    ]:
        got = autoaugment.operation(name, level)(tf.constant(image)).numpy()
        np.testing.assert_array_equal(got, np.asarray(enhancer(pil).enhance(factor)), name)
    # Solarize threshold = int(level / 10 * 256): level 1.4 -> int(35.84) = 35.
    got = autoaugment.operation("Solarize", 1.4)(tf.constant(image)).numpy()
    np.testing.assert_array_equal(got, np.asarray(ImageOps.solarize(pil, 35)))
    got = autoaugment.operation("Equalize", 1.8)(tf.constant(image)).numpy()
    np.testing.assert_array_equal(got, np.asarray(ImageOps.equalize(pil)))


def test_unknown_operation_is_named():
    with pytest.raises(ValueError, match="'Rotate' is not supported"):
        autoaugment.operation("Rotate", 3.0)


def test_policy_is_table_2():
    # The paper's Table 2, row by row: op, probability, magnitude, op, probability, magnitude.
    table = [
        ("Sharpness", 0.4, 1.4, "Brightness", 0.2, 2.0),
        ("Equalize", 0.0, 1.8, "Contrast", 0.2, 2.0),
        ("Sharpness", 0.2, 1.8, "Color", 0.2, 1.8),
        ("Solarize", 0.2, 1.4, "Equalize", 0.6, 1.8),
        ("Sharpness", 0.2, 0.2, "Equalize", 0.2, 1.4),
    ]
    assert [(*a, *b) for a, b in autoaugment.PAPER_POLICY] == table


def test_sure_sub_policy_composes_its_operations_in_order():
    image = np.random.default_rng(5).integers(0, 256, size=(12, 9, 3), dtype=np.uint8)
    policy = ((("Equalize", 1.0, 0.0), ("Solarize", 1.0, 5.0)),)
    got = autoaugment.distort(tf.constant(image), tf.constant([1, 2]), policy).numpy()
    expected = ImageOps.solarize(ImageOps.equalize(Image.fromarray(image)), 128)
    np.testing.assert_array_equal(got, np.asarray(expected))


def test_distort_is_deterministic_per_seed_and_varies_across_seeds():
    image = tf.constant(np.random.default_rng(2).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    outputs = [autoaugment.distort(image, tf.constant([s, 0])).numpy() for s in range(40)]
    again = [autoaugment.distort(image, tf.constant([s, 0])).numpy() for s in range(40)]
    for a, b in zip(outputs, again, strict=True):
        np.testing.assert_array_equal(a, b)
    changed = sum(not np.array_equal(o, image.numpy()) for o in outputs)
    # Each sub-policy leaves the image alone with probability 0.48..0.8 (Table 2).
    assert 5 <= changed <= 30
