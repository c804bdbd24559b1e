"""The TFRecord schema shared with deeplab2, and its encoder and decoder.

Features (deeplab2 `data/data_utils.py` names, so deeplab2 records read here and
ours read in deeplab2):
  image/encoded                     JPEG or PNG bytes
  image/filename                    file name (bytes)
  image/format                      `jpeg` or `png`
  image/height, image/width         int64
  image/channels                    int64, 3
  image/segmentation/class/encoded  label bytes (see below)
  image/segmentation/class/format   `raw` for panoptic labels: little-endian int32
                                    `class * label_divisor + instance` per pixel,
                                    height * width * 4 bytes; `png` for
                                    semantic-only labels (8-bit PNG of classes).

Classes in the records are record classes (see `dataset_info`); a crowd region
is a thing class with instance id 0.
"""

import numpy as np
import tensorflow as tf

IMAGE_ENCODED = "image/encoded"
IMAGE_FILENAME = "image/filename"
IMAGE_FORMAT = "image/format"
IMAGE_HEIGHT = "image/height"
IMAGE_WIDTH = "image/width"
IMAGE_CHANNELS = "image/channels"
LABEL_ENCODED = "image/segmentation/class/encoded"
LABEL_FORMAT = "image/segmentation/class/format"

LABEL_FORMAT_RAW = "raw"
LABEL_FORMAT_PNG = "png"

_FEATURES = {
    IMAGE_ENCODED: tf.io.FixedLenFeature([], tf.string),
    IMAGE_FILENAME: tf.io.FixedLenFeature([], tf.string, default_value=""),
    IMAGE_FORMAT: tf.io.FixedLenFeature([], tf.string, default_value="jpeg"),
    IMAGE_HEIGHT: tf.io.FixedLenFeature([], tf.int64),
    IMAGE_WIDTH: tf.io.FixedLenFeature([], tf.int64),
    IMAGE_CHANNELS: tf.io.FixedLenFeature([], tf.int64, default_value=3),
    LABEL_ENCODED: tf.io.FixedLenFeature([], tf.string, default_value=""),
    LABEL_FORMAT: tf.io.FixedLenFeature([], tf.string, default_value=LABEL_FORMAT_RAW),
}


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int64(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def encode_panoptic_example(
    image_bytes: bytes,
    image_format: str,
    filename: str,
    panoptic: np.ndarray,
) -> bytes:
    """Serialises one image and its panoptic label as a `tf.train.Example`.

    Args:
      image_bytes: The encoded image (JPEG or PNG), RGB.
      image_format: `jpeg` or `png`.
      filename: Name stored in `image/filename`.
      panoptic: `[height, width]` integer map of `record class * label_divisor +
        instance id`.

    Returns:
      The serialised example.
    """
    if image_format not in ("jpeg", "png"):
        raise ValueError(f"{filename}: image format must be 'jpeg' or 'png', got {image_format!r}")
    panoptic = np.asarray(panoptic)
    if panoptic.ndim != 2:
        raise ValueError(
            f"{filename}: panoptic label must be [height, width], got {panoptic.shape}"
        )
    if panoptic.min(initial=0) < 0 or panoptic.max(initial=0) > np.iinfo(np.int32).max:
        raise ValueError(f"{filename}: panoptic ids must fit in a non-negative int32")
    height, width = panoptic.shape
    feature = {
        IMAGE_ENCODED: _bytes(image_bytes),
        IMAGE_FILENAME: _bytes(filename.encode("utf-8")),
        IMAGE_FORMAT: _bytes(image_format.encode("utf-8")),
        IMAGE_HEIGHT: _int64(height),
        IMAGE_WIDTH: _int64(width),
        IMAGE_CHANNELS: _int64(3),
        LABEL_ENCODED: _bytes(panoptic.astype("<i4").tobytes()),
        LABEL_FORMAT: _bytes(LABEL_FORMAT_RAW.encode("utf-8")),
    }
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    # Map order would otherwise vary between processes: records must be byte-stable.
    return example.SerializeToString(deterministic=True)


def decode_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parses one serialised example (graph-compatible, for `tf.data`).

    Args:
      serialized: A scalar string tensor.

    Returns:
      A dict with `image` `[height, width, 3]` uint8, `label` `[height, width]`
      int32 (record classes: panoptic ids for `raw` labels, classes for `png`
      labels; -1 everywhere when the example has no label), `has_label`
      (bool scalar), `label_format` (`raw` or `png`), `height`, `width` (int32
      scalars) and `filename` (string).
    """
    parsed = tf.io.parse_single_example(serialized, _FEATURES)
    height = tf.cast(parsed[IMAGE_HEIGHT], tf.int32)
    width = tf.cast(parsed[IMAGE_WIDTH], tf.int32)
    image = tf.io.decode_image(parsed[IMAGE_ENCODED], channels=3, expand_animations=False)
    image = tf.ensure_shape(image, [None, None, 3])
    label_bytes = parsed[LABEL_ENCODED]
    has_label = tf.strings.length(label_bytes) > 0

    def decode_label():
        return tf.cond(
            tf.equal(parsed[LABEL_FORMAT], LABEL_FORMAT_PNG),
            lambda: tf.cast(tf.io.decode_png(label_bytes, channels=1)[:, :, 0], tf.int32),
            lambda: tf.reshape(
                tf.io.decode_raw(label_bytes, tf.int32, little_endian=True), [height, width]
            ),
        )

    # deeplab2 writes test splits without labels; -1 is no record class.
    label = tf.cond(has_label, decode_label, lambda: tf.fill([height, width], -1))
    return {
        "image": image,
        "label": label,
        "has_label": has_label,
        "label_format": parsed[LABEL_FORMAT],
        "height": height,
        "width": width,
        "filename": parsed[IMAGE_FILENAME],
    }
