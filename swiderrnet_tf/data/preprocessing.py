"""Geometric preprocessing of one image and its panoptic label.

Training follows the SWideRNet paper (section 4 and its Panoptic-DeepLab
recipe) as deeplab2's `input_preprocessing.py` implements it: a random scale
from `{min_scale, min_scale + step, ..., max_scale}` (size `floor(size *
scale)`, bilinear image and nearest-neighbour label resizing with
`align_corners=True`), padding with 127.5 (image) and void (label) up to the
crop size at a random offset, a random crop, and a left-right flip with
probability 0.5. Evaluation resizes an image only when it is larger than the
crop and pads it at the bottom and right.

Instead of resizing the whole image and cropping afterwards, only the pixels
inside the crop window are sampled (`tf.image.crop_and_resize` at the
`align_corners` positions), so the cost stays that of the crop (a 1024x2048
image at scale 2 would otherwise be resized to 2048x4096 first).

Deviations from deeplab2:
  1. AutoAugment runs on the cropped window (before padding) instead of on the
     whole scaled image, so Equalize and Contrast see the crop's statistics.
  2. When the scaled image is smaller than the crop, the padding offset is
     drawn from `0..crop - size` inclusive (deeplab2 stops one short).
  3. All randomness is stateless, driven by a per-example seed.
  4. Sample positions are computed in crop_and_resize's float arithmetic: the
     image can differ from resize-then-crop by a few hundredths of a level and
     a label pixel can take its other neighbour at an exact rounding tie.
"""

import tensorflow as tf

from swiderrnet_tf.data import dataset_info as dataset_info_lib

PAD_VALUE = 127.5


def to_model_panoptic(
    record_panoptic: tf.Tensor, info: dataset_info_lib.DatasetInfo, filename: tf.Tensor
) -> tf.Tensor:
    """Maps a record-space panoptic map to model classes.

    Args:
      record_panoptic: `[h, w]` int32, `record class * divisor + instance`.
      info: The dataset's facts (class offset, record void class, divisor).
      filename: Scalar string naming the example, for the error message.

    Returns:
      `[h, w]` int32, `model class * divisor + instance`; void pixels are
      `ignore_label * divisor`.

    Raises:
      tf.errors.InvalidArgumentError: (when run) if a pixel's class is neither
        the record void class nor a model class after the offset.
    """
    divisor = info.label_divisor
    record_class = record_panoptic // divisor
    instance = record_panoptic % divisor
    model_class = record_class - info.record_class_offset
    is_void = tf.equal(record_class, info.record_ignore_label)
    known = is_void | ((model_class >= 0) & (model_class < info.num_classes))
    check = tf.debugging.Assert(
        tf.reduce_all(known),
        [
            f"dataset {info.name!r}: label of",
            filename,
            "has a record class outside the void class "
            f"{info.record_ignore_label} and {info.record_class_offset}.."
            f"{info.record_class_offset + info.num_classes - 1}; largest bad class:",
            # A reduction, not a mask: the message's data is computed on every call.
            tf.reduce_max(tf.where(known, -1, record_class)),
        ],
    )
    with tf.control_dependencies([check]):
        return tf.where(is_void, info.void_panoptic_id, model_class * divisor + instance)


def random_scale(seed: tf.Tensor, min_scale: float, max_scale: float, step: float) -> tf.Tensor:
    """Draws one scale from `{min_scale, min_scale + step, ..., max_scale}`.

    Args:
      seed: `[2]` seed of the stateless draw.
      min_scale, max_scale: Inclusive bounds.
      step: Spacing of the candidates; 0 draws uniformly from `[min, max)`.

    Returns:
      A float32 scalar.
    """
    if not 0 < min_scale <= max_scale:
        raise ValueError(
            f"scales must satisfy 0 < min_scale <= max_scale, got {min_scale}, {max_scale}"
        )
    if min_scale == max_scale:
        return tf.constant(min_scale, tf.float32)
    if step == 0:
        return tf.random.stateless_uniform([], seed, minval=min_scale, maxval=max_scale)
    count = int(round((max_scale - min_scale) / step)) + 1
    index = tf.random.stateless_uniform([], seed, maxval=count, dtype=tf.int32)
    return tf.constant(min_scale, tf.float32) + tf.cast(index, tf.float32) * tf.constant(
        step, tf.float32
    )


def scaled_size(size: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
    """`max(floor(size * scale), 1)` in float32 arithmetic, as deeplab2."""
    scaled = tf.cast(tf.cast(size, tf.float32) * scale, tf.int32)
    return tf.maximum(scaled, 1)


# crop_and_resize carries labels as float32: ids must stay exact integers.
_MAX_EXACT_ID = 2**24


def check_label_range(info: dataset_info_lib.DatasetInfo) -> None:
    """Raises ValueError if the dataset's panoptic ids could exceed float32's exact range."""
    largest = (max(info.num_classes - 1, info.ignore_label) + 1) * info.label_divisor
    if largest > _MAX_EXACT_ID:
        raise ValueError(
            f"dataset {info.name!r}: panoptic ids up to {largest - 1} (label_divisor "
            f"{info.label_divisor}) exceed 2**24, which resampling keeps exact"
        )


def resample_window(image, label, out_size, window_start, window_size):
    """Resizes image and label to `out_size` and returns one window of the result.

    Samples the window of `tf.compat.v1.image.resize_bilinear(image, out_size,
    align_corners=True)` (nearest neighbour for the label) directly with
    `tf.image.crop_and_resize`, whose box maps output pixel `j` to input
    coordinate `(start + j) * (in - 1) / (out - 1)`. Image and label are
    sampled at the same positions; results differ from resize-then-slice only
    by float rounding of those positions.

    Args:
      image: `[h, w, 3]` uint8 or float32.
      label: `[h, w]` int32 with values below 2**24.
      out_size: `[2]` int32, the size of the (virtual) resized image.
      window_start: `[2]` int32, top-left corner of the window in it.
      window_size: `[2]` int32, size of the window (inside `out_size`).

    Returns:
      `(image, label)`: `[wh, ww, 3]` float32 and `[wh, ww]` int32.
    """
    denominator = tf.cast(tf.maximum(out_size - 1, 1), tf.float32)
    first = tf.cast(window_start, tf.float32) / denominator
    last = tf.cast(window_start + window_size - 1, tf.float32) / denominator
    boxes = tf.stack([first[0], first[1], last[0], last[1]])[tf.newaxis]  # [1, 4]
    box_indices = tf.zeros([1], tf.int32)
    out_image = tf.image.crop_and_resize(
        image[tf.newaxis], boxes, box_indices, window_size, method="bilinear"
    )[0]
    out_label = tf.image.crop_and_resize(
        label[tf.newaxis, :, :, tf.newaxis], boxes, box_indices, window_size, method="nearest"
    )[0, :, :, 0]
    return out_image, tf.cast(out_label, tf.int32)


def _crop_and_pad_offsets(size, crop, seed):
    """Per axis: where the crop starts in the image and where the image lands in the crop."""
    draw = tf.random.stateless_uniform([], seed, maxval=2**30, dtype=tf.int32)
    crop_start = tf.where(size > crop, draw % (tf.maximum(size - crop, 0) + 1), 0)
    pad_start = tf.where(size < crop, draw % (tf.maximum(crop - size, 0) + 1), 0)
    return crop_start, pad_start


def _pad(image, label, pad_start, crop_size, void_id):
    """Pads to the static `crop_size` (python ints), the content at `pad_start`."""
    valid = tf.shape(label)
    paddings = tf.stack([pad_start, tf.constant(crop_size) - valid - pad_start], axis=1)  # [2, 2]
    image = tf.pad(image, tf.concat([paddings, [[0, 0]]], 0), constant_values=PAD_VALUE)
    label = tf.pad(label, paddings, constant_values=void_id)
    image.set_shape([crop_size[0], crop_size[1], 3])
    label.set_shape([crop_size[0], crop_size[1]])
    return image, label


def train_preprocess(
    image: tf.Tensor,
    panoptic: tf.Tensor,
    *,
    seed: tf.Tensor,
    crop_size: tuple[int, int],
    void_id: int,
    min_scale: float = 0.5,
    max_scale: float = 2.0,
    scale_step: float = 0.1,
    augment_fn=None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Random scale, crop (with padding) and left-right flip.

    Args:
      image: `[h, w, 3]` uint8.
      panoptic: `[h, w]` int32 model-space panoptic map.
      seed: `[2]` int seed; the same seed gives the same result.
      crop_size: `(crop_h, crop_w)` of the output.
      void_id: Panoptic id of padded label pixels.
      min_scale, max_scale, scale_step: The random-scale candidates.
      augment_fn: Optional `fn(uint8 image [ch, cw, 3], seed) -> uint8 image`
        applied to the cropped window before padding (AutoAugment).

    Returns:
      `(image, panoptic)`: `[crop_h, crop_w, 3]` float32 in [0, 255] and
      `[crop_h, crop_w]` int32.
    """
    seeds = tf.random.experimental.stateless_split(seed, num=5)
    crop = tf.constant(crop_size, tf.int32)
    scale = random_scale(seeds[0], min_scale, max_scale, scale_step)
    out_size = scaled_size(tf.shape(panoptic), scale)  # [2]
    crop_y, pad_y = _crop_and_pad_offsets(out_size[0], crop[0], seeds[1])
    crop_x, pad_x = _crop_and_pad_offsets(out_size[1], crop[1], seeds[2])
    window = tf.minimum(out_size, crop)
    image, panoptic = resample_window(image, panoptic, out_size, tf.stack([crop_y, crop_x]), window)
    if augment_fn is not None:
        # deeplab2 truncates the float image to uint8 for AutoAugment.
        image = tf.cast(augment_fn(tf.cast(image, tf.uint8), seeds[3]), tf.float32)
    image, panoptic = _pad(image, panoptic, tf.stack([pad_y, pad_x]), crop_size, void_id)
    flip = tf.random.stateless_uniform([], seeds[4]) < 0.5
    image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
    panoptic = tf.cond(flip, lambda: tf.reverse(panoptic, [1]), lambda: panoptic)
    return image, panoptic


def eval_preprocess(
    image: tf.Tensor, panoptic: tf.Tensor, *, crop_size: tuple[int, int], void_id: int
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Resizes (only if larger than the crop) and pads at the bottom and right.

    Args:
      image: `[h, w, 3]` uint8.
      panoptic: `[h, w]` int32 model-space panoptic map.
      crop_size: `(crop_h, crop_w)` of the output.
      void_id: Panoptic id of padded label pixels.

    Returns:
      `(image, panoptic, size)`: `[crop_h, crop_w, 3]` float32,
      `[crop_h, crop_w]` int32 and `[2]` int32, the (resized) size before
      padding.
    """
    crop = tf.constant(crop_size, tf.int32)
    size = tf.shape(panoptic)
    ratio = tf.reduce_min(tf.cast(crop, tf.float32) / tf.cast(size, tf.float32))
    out_size = tf.where(tf.reduce_any(size > crop), scaled_size(size, tf.minimum(ratio, 1.0)), size)
    image, panoptic = tf.cond(
        tf.reduce_all(tf.equal(out_size, size)),
        lambda: (tf.cast(image, tf.float32), panoptic),
        lambda: resample_window(image, panoptic, out_size, tf.zeros([2], tf.int32), out_size),
    )
    image, panoptic = _pad(image, panoptic, tf.zeros([2], tf.int32), crop_size, void_id)
    return image, panoptic, out_size
