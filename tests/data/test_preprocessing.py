"""Geometric preprocessing: class mapping, scales, window resampling, crop, pad, flip."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from swiderrnet_tf.data import dataset_info
from swiderrnet_tf.data import preprocessing

INFO = dataset_info.SYNTHETIC
VOID = 255 * 1000


def test_record_classes_map_to_model_classes():
    # A COCO-like layout: record class 0 is void, model class = record class - 1.
    info = dataclasses.replace(
        INFO, name="shifted", record_class_offset=1, record_ignore_label=0, label_divisor=256
    )
    record = np.array([[0, 1 * 256, 4 * 256 + 3], [6 * 256 + 1, 4 * 256, 0 * 256 + 9]])
    got = preprocessing.to_model_panoptic(tf.constant(record, tf.int32), info, tf.constant("x"))
    expected = [[255 * 256, 0, 3 * 256 + 3], [5 * 256 + 1, 3 * 256, 255 * 256]]
    np.testing.assert_array_equal(got.numpy(), expected)


def test_unknown_record_class_names_the_file_and_class():
    record = tf.constant([[1000, 7000]], tf.int32)  # class 7 of 6
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"(?s)img_0042.*largest bad class.*7"):
        preprocessing.to_model_panoptic(record, INFO, tf.constant("img_0042"))


def test_random_scale_draws_every_step_of_the_grid():
    draws = {
        round(float(preprocessing.random_scale(tf.constant([s, 9]), 0.5, 2.0, 0.1)), 4)
        for s in range(400)
    }
    assert draws == {round(0.5 + 0.1 * k, 4) for k in range(16)}


def test_scaled_size_truncates():
    size = preprocessing.scaled_size(tf.constant([1024, 2048]), tf.constant(0.7))
    assert size.numpy().tolist() == [716, 1433]  # 716.8, 1433.6


@pytest.mark.parametrize(
    "in_size, out_size, start, window",
    [
        ((21, 31), (40, 60), (3, 7), (25, 30)),  # up
        ((41, 61), (20, 30), (0, 0), (20, 30)),  # down, whole
        ((33, 17), (64, 34), (10, 2), (32, 30)),  # up, odd input
    ],
)
def test_window_equals_resize_then_slice(in_size, out_size, start, window):
    # Even output sizes keep every nearest-neighbour position off an exact .5 tie.
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(*in_size, 3), dtype=np.uint8)
    label = rng.integers(0, 300000, size=in_size, dtype=np.int32)
    got_image, got_label = preprocessing.resample_window(
        tf.constant(image),
        tf.constant(label),
        tf.constant(out_size),
        tf.constant(start),
        tf.constant(window),
    )
    rows = slice(start[0], start[0] + window[0])
    cols = slice(start[1], start[1] + window[1])
    resized = tf.compat.v1.image.resize_bilinear(image[None], out_size, align_corners=True)[0]
    np.testing.assert_allclose(got_image.numpy(), resized.numpy()[rows, cols], atol=0.05)
    nearest = tf.compat.v1.image.resize_nearest_neighbor(
        label[None, :, :, None], out_size, align_corners=True
    )[0, :, :, 0]
    np.testing.assert_array_equal(got_label.numpy(), nearest.numpy()[rows, cols])


def _coded(height, width):
    """An image whose red channel encodes the label: 5 * label mod 256, labels 0..50."""
    rng = np.random.default_rng(4)
    label = rng.integers(0, 51, size=(height, width)).astype(np.int32)
    image = np.stack([label * 5, rng.integers(0, 256, (height, width)), label], -1)
    return image.astype(np.uint8), label * 1000 + 1


def test_train_crop_keeps_image_and_labels_aligned():
    image, panoptic = _coded(30, 40)
    flipped = 0
    for s in range(12):
        out_image, out_label = preprocessing.train_preprocess(
            tf.constant(image),
            tf.constant(panoptic),
            seed=tf.constant([s, 1]),
            crop_size=(20, 50),
            void_id=VOID,
            min_scale=1.0,
            max_scale=1.0,
        )
        out_image, out_label = out_image.numpy(), out_label.numpy()
        assert out_image.shape == (20, 50, 3) and out_label.shape == (20, 50)
        valid = out_label != VOID
        # Height 30 > 20 is cropped, width 40 < 50 is padded: 20x40 valid pixels.
        assert valid.sum() == 20 * 40
        np.testing.assert_array_equal(out_image[..., 0][valid], (out_label[valid] // 1000) * 5)
        assert (out_image[~valid] == 127.5).all()
        # The valid block is a crop of the input, or its mirror image.
        cols = np.nonzero(valid.any(0))[0]
        block = out_label[:, cols[0] : cols[-1] + 1]
        matches = [
            any(np.array_equal(b, panoptic[y : y + 20]) for y in range(11))
            for b in (block, block[:, ::-1])
        ]
        assert matches[0] or matches[1]
        flipped += matches[1] and not matches[0]
    assert 1 <= flipped <= 11  # p = 0.5 over 12 draws


def test_train_preprocess_is_deterministic_per_seed():
    image, panoptic = _coded(25, 35)
    runs = [
        preprocessing.train_preprocess(
            tf.constant(image),
            tf.constant(panoptic),
            seed=tf.constant([3, 4]),
            crop_size=(33, 33),
            void_id=VOID,
        )
        for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0][0].numpy(), runs[1][0].numpy())
    np.testing.assert_array_equal(runs[0][1].numpy(), runs[1][1].numpy())


def test_eval_pads_small_images_without_touching_them():
    image, panoptic = _coded(17, 23)
    out_image, out_label, size = preprocessing.eval_preprocess(
        tf.constant(image), tf.constant(panoptic), crop_size=(20, 30), void_id=VOID
    )
    assert size.numpy().tolist() == [17, 23]
    np.testing.assert_array_equal(out_image.numpy()[:17, :23], image.astype(np.float32))
    np.testing.assert_array_equal(out_label.numpy()[:17, :23], panoptic)
    assert (out_image.numpy()[17:] == 127.5).all() and (out_image.numpy()[:, 23:] == 127.5).all()
    assert (out_label.numpy()[17:] == VOID).all() and (out_label.numpy()[:, 23:] == VOID).all()


def test_eval_shrinks_large_images_to_fit():
    image, panoptic = _coded(40, 80)
    _, out_label, size = preprocessing.eval_preprocess(
        tf.constant(image), tf.constant(panoptic), crop_size=(30, 30), void_id=VOID
    )
    # Scale min(30/40, 30/80) = 0.375: floor(40 * 0.375) = 15, floor(80 * 0.375) = 30.
    assert size.numpy().tolist() == [15, 30]
    assert (out_label.numpy()[15:] == VOID).all()
    assert (out_label.numpy()[:15] != VOID).all()


def test_label_range_guard():
    info = dataclasses.replace(INFO, name="huge", label_divisor=100000)
    with pytest.raises(ValueError, match="exceed 2\\*\\*24"):
        preprocessing.check_label_range(info)
    preprocessing.check_label_range(INFO)
