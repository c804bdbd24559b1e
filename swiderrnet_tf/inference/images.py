"""Images in and out of inference: reading files, fitting large images, mapping back.

`read_image` decodes a file into uint8 RGB (as stored: EXIF orientation is
not applied); `as_rgb_array` takes what a user may hand the `Predictor` (a
file path, a PIL image, an array); `fitting_size` and `resize_nearest` let an
image larger than a SavedModel's merge canvases be predicted at a reduced
size and its maps be mapped back to the original size.
"""

import os
import pathlib

import numpy as np
import tensorflow as tf
from PIL import Image


class ImageError(ValueError):
    """An image that cannot be read or used; the message names it."""


def read_image(path: str) -> np.ndarray:
    """`[h, w, 3]` uint8 RGB from an image file (local or gs://).

    Raises:
      ImageError: Naming the file when it cannot be read or decoded.
    """
    try:
        with tf.io.gfile.GFile(str(path), "rb") as f:
            image = Image.open(f)
            image.load()
    except (OSError, ValueError, tf.errors.OpError, Image.DecompressionBombError) as e:
        raise ImageError(f"{path}: cannot read the image: {e}") from e
    return np.asarray(image.convert("RGB"))


def as_rgb_array(image) -> np.ndarray:
    """`[h, w, 3]` uint8 RGB of a file path, a PIL image or an array.

    Args:
      image: A path (str or `os.PathLike`), a `PIL.Image.Image`, or an array
        (numpy, TensorFlow, JAX) `[h, w, 3]` of uint8, or of floats in
        [0, 255] (rounded).

    Raises:
      ImageError: On another shape or type.
    """
    if isinstance(image, str | os.PathLike):
        return read_image(image)
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3 or min(array.shape[:2]) < 1:
        raise ImageError(f"an image is [height, width, 3] RGB; got shape {array.shape}")
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind not in "fiu":
        raise ImageError(f"an image holds uint8 or float values in [0, 255]; got {array.dtype}")
    return np.clip(np.round(array), 0, 255).astype(np.uint8)


def find_images(patterns) -> list[str]:
    """Sorted files matching the glob patterns.

    Raises:
      ImageError: When nothing matches, or two files share a name stem
        (their outputs would collide).
    """
    paths = sorted({p for pattern in patterns for p in tf.io.gfile.glob(pattern)})
    if not paths:
        raise ImageError(f"no image matches {list(patterns)}")
    stems = {}
    for path in paths:
        stem = pathlib.PurePath(path).stem
        if stem in stems:
            raise ImageError(f"{stems[stem]} and {path} have the same name; outputs would clash")
        stems[stem] = path
    return paths


def fitting_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """The size an image is resized to so that both sides are at most `max_side`.

    Returns:
      `(height, width)` unchanged when it fits; else scaled by
      `max_side / max(height, width)` (rounded, at least 1 pixel).
    """
    if max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return (
        min(max_side, max(1, round(height * scale))),
        min(max_side, max(1, round(width * scale))),
    )


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """`[h, w, 3]` uint8 -> `[height, width, 3]` uint8 (PIL's bilinear filter)."""
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def resize_nearest(label: np.ndarray, height: int, width: int) -> np.ndarray:
    """`[h, w]` map -> `[height, width]`: each pixel takes the label under its centre."""
    rows = ((np.arange(height) + 0.5) * label.shape[0] / height).astype(int)
    cols = ((np.arange(width) + 0.5) * label.shape[1] / width).astype(int)
    return label[
        np.minimum(rows, label.shape[0] - 1)[:, None], np.minimum(cols, label.shape[1] - 1)
    ]
