"""The TFRecord codec reads our records and deeplab2's."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from swiderrnet_tf.data import tfrecord


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def deeplab2_example(image: bytes, height: int, width: int, label=None, label_format=None):
    """An example with the features deeplab2's data_utils.create_tfexample writes."""

    def feature(value):
        if isinstance(value, int):
            return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    features = {
        "image/encoded": feature(image),
        "image/filename": feature(b"frankfurt_000000_000294"),
        "image/format": feature(b"png"),
        "image/height": feature(height),
        "image/width": feature(width),
        "image/channels": feature(3),
    }
    if label is not None:
        features["image/segmentation/class/encoded"] = feature(label)
        features["image/segmentation/class/format"] = feature(label_format)
    example = tf.train.Example(features=tf.train.Features(feature=features))
    return example.SerializeToString()


RNG = np.random.default_rng(0)
IMAGE = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
PANOPTIC = RNG.integers(0, 255, (5, 7)) * 1000 + RNG.integers(0, 3, (5, 7))


def test_round_trip():
    serialized = tfrecord.encode_panoptic_example(png_bytes(IMAGE), "png", "a", PANOPTIC)
    decoded = tfrecord.decode_example(tf.constant(serialized))
    np.testing.assert_array_equal(decoded["image"].numpy(), IMAGE)
    np.testing.assert_array_equal(decoded["label"].numpy(), PANOPTIC)
    assert decoded["label"].dtype == tf.int32
    assert (decoded["height"].numpy(), decoded["width"].numpy()) == (5, 7)
    assert decoded["filename"].numpy() == b"a"
    assert decoded["has_label"].numpy()


def test_reads_deeplab2_panoptic_records():
    # deeplab2 writes `panoptic_label.astype(np.int32).tostring()`: native
    # (little-endian on every platform it runs on) int32.
    label = PANOPTIC.astype("<i4").tobytes()
    serialized = deeplab2_example(png_bytes(IMAGE), 5, 7, label, b"raw")
    decoded = tfrecord.decode_example(tf.constant(serialized))
    np.testing.assert_array_equal(decoded["label"].numpy(), PANOPTIC)
    np.testing.assert_array_equal(decoded["image"].numpy(), IMAGE)


def test_reads_deeplab2_semantic_png_labels():
    semantic = RNG.integers(0, 19, (5, 7), dtype=np.uint8)
    serialized = deeplab2_example(png_bytes(IMAGE), 5, 7, png_bytes(semantic), b"png")
    decoded = tfrecord.decode_example(tf.constant(serialized))
    np.testing.assert_array_equal(decoded["label"].numpy(), semantic)


def test_reads_deeplab2_records_without_labels():
    # deeplab2's test splits carry no label features.
    dataset = tf.data.Dataset.from_tensor_slices([deeplab2_example(png_bytes(IMAGE), 5, 7)])
    decoded = next(iter(dataset.map(tfrecord.decode_example)))
    assert not decoded["has_label"].numpy()
    np.testing.assert_array_equal(decoded["label"].numpy(), np.full((5, 7), -1))
    np.testing.assert_array_equal(decoded["image"].numpy(), IMAGE)


def test_encode_rejects_bad_inputs():
    with pytest.raises(ValueError, match="x.gif: image format must be 'jpeg' or 'png'"):
        tfrecord.encode_panoptic_example(b"", "gif", "x.gif", PANOPTIC)
    with pytest.raises(ValueError, match=r"must be \[height, width\]"):
        tfrecord.encode_panoptic_example(b"", "png", "x", PANOPTIC[None])
    with pytest.raises(ValueError, match="non-negative int32"):
        tfrecord.encode_panoptic_example(b"", "png", "x", -PANOPTIC - 1)
