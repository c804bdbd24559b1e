"""ImageNet preprocessing: Inception-style random-resized crops and the 87.5% center crop.

Follows the TensorFlow TPU ResNet reference (tensorflow/tpu
`models/official/resnet/resnet_preprocessing.py`), the recipe behind the
published TPU ResNet results:

Training: a box is drawn with `tf.image.sample_distorted_bounding_box`
(covering 8% to 100% of the image, aspect ratio width / height in 3/4..4/3,
at least 10% of the whole image, 10 attempts); only that window of the JPEG is
decoded (`tf.image.decode_and_crop_jpeg`, which skips the rest of the image's
blocks); it is resized to `image_size` x `image_size` and flipped left-right
with probability 1/2. When all attempts fail the sampler returns the whole
image, and the evaluation crop is used instead, as in the reference.

Evaluation: the central square of side `int(0.875 * min(h, w))` (at 224 this is
the reference's `int(224 / (224 + 32) * min(h, w))`), at offsets
`((h - side + 1) // 2, (w - side + 1) // 2)`, resized to `image_size` x
`image_size`.

Resizing is bicubic by default, as in the reference (it sharpens a little and
is what its accuracy was measured with); `bilinear` is cheaper on a CPU host
(see `scripts/benchmark_input.py` for both). Every image is decoded to three
channels, so grayscale (and CMYK) JPEGs come out RGB; images that are not
JPEG (PNG, GIF, BMP) are decoded whole and then cropped.

Deviations from the TPU reference:
  1. Randomness is stateless (a `[2]` seed per example), so a seeded pipeline
     repeats whatever its parallelism.
  2. The fallback to the evaluation crop is taken when the sampled box has
     the image's height and width; the reference compares (height, width,
     channels) with the JPEG header's channel count and so never falls back
     for grayscale JPEGs.
  3. `tf.image.resize` (half-pixel centres, Keys cubic with a = -0.5) instead
     of TF1's `resize_bicubic` (corner-aligned sampling grid, a = -0.75);
     values are clipped to 0..255 and no mean/std normalisation is applied
     (the model normalises `x / 127.5 - 1` itself).
  4. The evaluation crop keeps the fraction 0.875 at every `image_size`; the
     reference keeps a padding of 32 pixels, so the two differ away from 224.
"""

import tensorflow as tf

EVAL_CROP_FRACTION = 0.875
AREA_RANGE = (0.08, 1.0)
ASPECT_RATIO_RANGE = (3.0 / 4.0, 4.0 / 3.0)
MAX_ATTEMPTS = 10
MIN_OBJECT_COVERED = 0.1
RESIZE_METHODS = ("bicubic", "bilinear")


def image_shape(image_bytes: tf.Tensor) -> tf.Tensor:
    """`[2]` int32 (height, width) of an encoded image; JPEGs are not decoded for it."""
    return tf.cond(
        tf.io.is_jpeg(image_bytes),
        lambda: tf.io.extract_jpeg_shape(image_bytes)[:2],
        lambda: tf.shape(_decode_whole(image_bytes))[:2],
    )


def _decode_whole(image_bytes: tf.Tensor) -> tf.Tensor:
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    return tf.ensure_shape(image, [None, None, 3])


def decode_crop(image_bytes: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
    """Decodes the window `[y, x, height, width]` of an encoded image.

    Args:
      image_bytes: Scalar string, a JPEG, PNG, GIF or BMP image.
      window: `[4]` int32 (offset y, offset x, height, width), inside the image.

    Returns:
      `[height, width, 3]` uint8 RGB.
    """
    return tf.cond(
        tf.io.is_jpeg(image_bytes),
        lambda: tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3),
        lambda: tf.image.crop_to_bounding_box(
            _decode_whole(image_bytes), window[0], window[1], window[2], window[3]
        ),
    )


def center_crop_window(shape: tf.Tensor, crop_fraction: float = EVAL_CROP_FRACTION) -> tf.Tensor:
    """The evaluation window: the central square of side `int(crop_fraction * min(h, w))`.

    Args:
      shape: `[2]` int32 (height, width).
      crop_fraction: Side of the square over the shorter image side.

    Returns:
      `[4]` int32 (offset y, offset x, side, side), offsets rounded up as the
      TPU reference does: `(h - side + 1) // 2`.
    """
    height, width = shape[0], shape[1]
    shorter = tf.cast(tf.minimum(height, width), tf.float32)
    side = tf.maximum(tf.cast(crop_fraction * shorter, tf.int32), 1)
    return tf.stack([(height - side + 1) // 2, (width - side + 1) // 2, side, side])


def random_crop_window(
    shape: tf.Tensor,
    seed: tf.Tensor,
    *,
    area_range: tuple[float, float] = AREA_RANGE,
    aspect_ratio_range: tuple[float, float] = ASPECT_RATIO_RANGE,
    max_attempts: int = MAX_ATTEMPTS,
    min_object_covered: float = MIN_OBJECT_COVERED,
    crop_fraction: float = EVAL_CROP_FRACTION,
) -> tf.Tensor:
    """An Inception-style random window, or the evaluation window when sampling fails.

    Args:
      shape: `[2]` int32 (height, width) of the image.
      seed: `[2]` int seed of the stateless sampler.
      area_range: Allowed fraction of the image area.
      aspect_ratio_range: Allowed width / height.
      max_attempts: Boxes tried before giving up.
      min_object_covered: Fraction of the whole image the box must cover.
      crop_fraction: Of the evaluation window used when sampling fails.

    Returns:
      `[4]` int32 (offset y, offset x, height, width).
    """
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.concat([shape, [3]], axis=0),
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
        seed=seed,
        min_object_covered=min_object_covered,
        aspect_ratio_range=aspect_ratio_range,
        area_range=area_range,
        max_attempts=max_attempts,
        use_image_if_no_bounding_boxes=True,
    )
    sampled = tf.stack([begin[0], begin[1], size[0], size[1]])
    # After max_attempts failures the sampler returns the whole image.
    failed = tf.reduce_all(tf.equal(size[:2], shape))
    return tf.where(failed, center_crop_window(shape, crop_fraction), sampled)


def resize(image: tf.Tensor, image_size: int, method: str = "bicubic") -> tf.Tensor:
    """`[h, w, 3]` image -> `[image_size, image_size, 3]` float32 clipped to 0..255."""
    if method not in RESIZE_METHODS:
        raise ValueError(f"resize_method must be one of {RESIZE_METHODS}, got {method!r}")
    resized = tf.image.resize(image, [image_size, image_size], method=method)
    # Bicubic overshoots at edges; the model expects 0..255.
    return tf.clip_by_value(resized, 0.0, 255.0)


def train_preprocess(
    image_bytes: tf.Tensor,
    seed: tf.Tensor,
    *,
    image_size: int,
    area_range: tuple[float, float] = AREA_RANGE,
    aspect_ratio_range: tuple[float, float] = ASPECT_RATIO_RANGE,
    resize_method: str = "bicubic",
    crop_fraction: float = EVAL_CROP_FRACTION,
    augment_fn=None,
) -> tf.Tensor:
    """Random-resized crop, resize and flip of one encoded image (see the module docstring).

    Args:
      image_bytes: Scalar string, the encoded image.
      seed: `[2]` int seed; the same seed gives the same output.
      image_size: Side of the output.
      area_range: Allowed fraction of the image area of the crop.
      aspect_ratio_range: Allowed width / height of the crop.
      resize_method: `bicubic` or `bilinear`.
      crop_fraction: Of the evaluation window used when sampling fails.
      augment_fn: Optional `fn(uint8 image [s, s, 3], seed [2]) -> uint8 image`
        applied after the flip (e.g. `autoaugment.distort`).

    Returns:
      `[image_size, image_size, 3]` float32 in 0..255.
    """
    crop_seed, flip_seed, augment_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, num=3)
    )
    window = random_crop_window(
        image_shape(image_bytes),
        crop_seed,
        area_range=area_range,
        aspect_ratio_range=aspect_ratio_range,
        crop_fraction=crop_fraction,
    )
    image = resize(decode_crop(image_bytes, window), image_size, resize_method)
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    if augment_fn is not None:
        image = augment_fn(tf.cast(tf.round(image), tf.uint8), augment_seed)
        image = tf.cast(image, tf.float32)
    return tf.ensure_shape(image, [image_size, image_size, 3])


def eval_preprocess(
    image_bytes: tf.Tensor,
    *,
    image_size: int,
    crop_fraction: float = EVAL_CROP_FRACTION,
    resize_method: str = "bicubic",
) -> tf.Tensor:
    """Center crop of `int(crop_fraction * min(h, w))` pixels, resized to `image_size`.

    Args:
      image_bytes: Scalar string, the encoded image.
      image_size: Side of the output.
      crop_fraction: Side of the crop over the shorter image side.
      resize_method: `bicubic` or `bilinear`.

    Returns:
      `[image_size, image_size, 3]` float32 in 0..255.
    """
    window = center_crop_window(image_shape(image_bytes), crop_fraction)
    image = resize(decode_crop(image_bytes, window), image_size, resize_method)
    return tf.ensure_shape(image, [image_size, image_size, 3])
