"""AutoAugment with the policy of the SWideRNet paper's Table 2, in plain TF ops.

The paper (Chen, Wang, Qiao, "Scaling Wide Residual Networks for Panoptic
Segmentation", 2020, section 4.1 and Table 2) trains its strongest models with
five AutoAugment sub-policies of two photometric operations each; one
sub-policy is drawn uniformly per image and each of its operations fires with
its own probability. Magnitudes are on AutoAugment's 0-10 scale and map to
arguments as in AutoAugment (Cubuk et al., CVPR 2019; tensorflow/tpu and
deeplab2 `autoaugment_utils.py`): enhancement factor `level / 10 * 1.8 + 0.1`
for Sharpness, Brightness, Contrast and Color; Solarize threshold
`int(level / 10 * 256)`; Equalize has no argument. Table 2 is deeplab2's
`simple_classification_policy` with `magnitude_scale=0.2`.

Every operation is the PIL operation AutoAugment was defined with
(`PIL.ImageEnhance`, `PIL.ImageOps`) written in TF ops on `uint8` images:
PIL's integer grayscale `(19595 R + 38470 G + 7471 B + 32768) >> 16`, its
float32 blend truncated to `uint8`, its rounded 3x3 SMOOTH filter that leaves
the border untouched, and its Equalize look-up table. Labels never pass
through this module.

Deviations from deeplab2:
  1. Contrast blends towards the mean grayscale value, as PIL does; deeplab2
     (like tensorflow/tpu) blends towards `num_pixels / 256`, a known bug.
  2. Grayscale uses PIL's integer formula instead of `tf.image.rgb_to_grayscale`,
     so Color and Contrast match PIL bit for bit.
  3. Randomness is stateless (explicit seeds), so a seeded pipeline repeats.
"""

import tensorflow as tf

_MAX_LEVEL = 10.0

# Table 2: ((operation, probability, magnitude), (operation, probability, magnitude)).
PAPER_POLICY = (
    (("Sharpness", 0.4, 1.4), ("Brightness", 0.2, 2.0)),
    (("Equalize", 0.0, 1.8), ("Contrast", 0.2, 2.0)),
    (("Sharpness", 0.2, 1.8), ("Color", 0.2, 1.8)),
    (("Solarize", 0.2, 1.4), ("Equalize", 0.6, 1.8)),
    (("Sharpness", 0.2, 0.2), ("Equalize", 0.2, 1.4)),
)


def _grayscale(image: tf.Tensor) -> tf.Tensor:
    """PIL's `convert("L")`: `[h, w, 3]` uint8 -> `[h, w]` int32 in 0..255."""
    rgb = tf.cast(image, tf.int32)
    weighted = rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471
    return tf.bitwise.right_shift(weighted + 32768, 16)


def blend(degenerate: tf.Tensor, image: tf.Tensor, factor: float) -> tf.Tensor:
    """PIL's `Image.blend(degenerate, image, factor)`.

    Args:
      degenerate: `[h, w, 3]` (or broadcastable) uint8 or int32 image.
      image: `[h, w, 3]` uint8 image.
      factor: 0 gives `degenerate`, 1 gives `image`, above 1 extrapolates.

    Returns:
      `[h, w, 3]` uint8, clipped to 0..255 and truncated like PIL.
    """
    degenerate = tf.cast(degenerate, tf.float32)
    mixed = degenerate + tf.constant(factor, tf.float32) * (tf.cast(image, tf.float32) - degenerate)
    return tf.cast(tf.clip_by_value(mixed, 0.0, 255.0), tf.uint8)


def brightness(image: tf.Tensor, factor: float) -> tf.Tensor:
    """`PIL.ImageEnhance.Brightness(image).enhance(factor)` on `[h, w, 3]` uint8."""
    return blend(tf.zeros_like(image), image, factor)


def color(image: tf.Tensor, factor: float) -> tf.Tensor:
    """`PIL.ImageEnhance.Color(image).enhance(factor)` on `[h, w, 3]` uint8."""
    return blend(_grayscale(image)[..., tf.newaxis], image, factor)


def contrast(image: tf.Tensor, factor: float) -> tf.Tensor:
    """`PIL.ImageEnhance.Contrast(image).enhance(factor)` on `[h, w, 3]` uint8."""
    gray = tf.cast(_grayscale(image), tf.float64)
    mean = tf.floor(tf.reduce_mean(gray) + 0.5)
    return blend(tf.fill([1, 1, 1], mean), image, factor)


def sharpness(image: tf.Tensor, factor: float) -> tf.Tensor:
    """`PIL.ImageEnhance.Sharpness(image).enhance(factor)` on `[h, w, 3]` uint8.

    The degenerate image is PIL's SMOOTH filter (3x3 kernel of ones with 5 in
    the middle, divided by 13, rounded); PIL leaves the outermost rows and
    columns unfiltered.
    """
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    kernel = tf.tile(kernel[:, :, tf.newaxis, tf.newaxis], [1, 1, 3, 1])  # [3, 3, 3, 1]
    smooth = tf.nn.depthwise_conv2d(
        tf.cast(image, tf.float32)[tf.newaxis], kernel, [1, 1, 1, 1], padding="SAME"
    )[0]
    smooth = tf.floor(tf.clip_by_value(smooth, 0.0, 255.0) + 0.5)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    rows = tf.range(height)[:, tf.newaxis]
    cols = tf.range(width)[tf.newaxis, :]
    interior = (rows > 0) & (rows < height - 1) & (cols > 0) & (cols < width - 1)
    degenerate = tf.where(interior[..., tf.newaxis], smooth, tf.cast(image, tf.float32))
    return blend(degenerate, image, factor)


def solarize(image: tf.Tensor, threshold: int) -> tf.Tensor:
    """`PIL.ImageOps.solarize(image, threshold)`: inverts values >= threshold."""
    if threshold > 255:  # level 10: nothing reaches the threshold
        return image
    if threshold <= 0:
        return 255 - image
    return tf.where(image < tf.constant(threshold, tf.uint8), image, 255 - image)


def equalize(image: tf.Tensor) -> tf.Tensor:
    """`PIL.ImageOps.equalize(image)` on `[h, w, 3]` uint8, all channels at once."""
    values = tf.cast(image, tf.int32)  # [h, w, 3]
    channel_offset = tf.range(3) * 256
    histogram = tf.reshape(
        tf.math.bincount(tf.reshape(values + channel_offset, [-1]), minlength=768, maxlength=768),
        [3, 256],
    )
    # PIL: step = (count - count of the highest occupied value) // 255.
    highest = 255 - tf.argmax(tf.reverse(tf.cast(histogram > 0, tf.int32), [1]), axis=1)
    top_count = tf.gather(histogram, highest, batch_dims=1)  # [3]
    step = (tf.reduce_sum(histogram, axis=1) - top_count) // 255  # [3]
    safe_step = tf.maximum(step, 1)[:, tf.newaxis]
    below = tf.cumsum(histogram, axis=1, exclusive=True)
    lut = tf.clip_by_value((safe_step // 2 + below) // safe_step, 0, 255)
    # A channel with a single value has step 0 and stays as it is.
    lut = tf.where(step[:, tf.newaxis] > 0, lut, tf.range(256)[tf.newaxis, :])
    equalized = tf.gather(tf.reshape(lut, [-1]), values + channel_offset)
    return tf.cast(equalized, tf.uint8)


def _enhance_factor(level: float) -> float:
    return level / _MAX_LEVEL * 1.8 + 0.1


def operation(name: str, level: float):
    """Returns `fn(image) -> image` for an AutoAugment operation at a 0-10 level.

    Raises:
      ValueError: If `name` is not one of the photometric operations above.
    """
    enhancers = {
        "Sharpness": sharpness,
        "Brightness": brightness,
        "Contrast": contrast,
        "Color": color,
    }
    if name in enhancers:
        factor = _enhance_factor(level)
        return lambda image: enhancers[name](image, factor)
    if name == "Solarize":
        threshold = int(level / _MAX_LEVEL * 256)
        return lambda image: solarize(image, threshold)
    if name == "Equalize":
        return equalize
    raise ValueError(
        f"AutoAugment operation {name!r} is not supported; expected one of "
        f"{sorted([*enhancers, 'Solarize', 'Equalize'])}"
    )


def distort(image: tf.Tensor, seed: tf.Tensor, policy=PAPER_POLICY) -> tf.Tensor:
    """Applies one uniformly drawn sub-policy of `policy` to an image.

    Args:
      image: `[h, w, 3]` uint8 image (any size).
      seed: `[2]` int32/int64 seed of the stateless random ops.
      policy: Sub-policies, each a sequence of `(operation, probability, level)`.

    Returns:
      The distorted `[h, w, 3]` uint8 image.
    """
    if image.dtype != tf.uint8:
        raise ValueError(f"AutoAugment expects a uint8 image, got {image.dtype}")
    num_operations = sum(len(sub_policy) for sub_policy in policy)
    seeds = tf.random.experimental.stateless_split(seed, num=1 + num_operations)
    choice = tf.random.stateless_uniform([], seeds[0], maxval=len(policy), dtype=tf.int32)
    branches = []
    first_seed = 1
    for sub_policy in policy:

        def apply(sub_policy=sub_policy, first_seed=first_seed):
            distorted = image
            for step, (name, probability, level) in enumerate(sub_policy):
                fn = operation(name, level)
                draw = tf.random.stateless_uniform([], seeds[first_seed + step])
                distorted = tf.cond(
                    draw < probability, lambda fn=fn, x=distorted: fn(x), lambda x=distorted: x
                )
            return distorted

        branches.append(apply)
        first_seed += len(sub_policy)
    return tf.switch_case(choice, branches)
