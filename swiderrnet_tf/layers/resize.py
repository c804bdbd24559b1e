"""Bilinear resizing with `align_corners=True`, in keras.ops.

deeplab2 resizes decoder features and outputs with corner-aligned bilinear
interpolation; with feature sizes of the form `(n - 1) / stride + 1` this maps
feature pixel `i` exactly onto input pixel `i * stride`. `keras.ops.image.resize`
has no corner-aligned mode, so it is written here as two 1-D interpolations
(height, then width) with gathers, which also keeps it out of the multiply-add
count of the model statistics.
"""

from keras import ops


def _resize_axis(x, out_size, axis: int):
    """Corner-aligned linear interpolation of `x` along `axis` to `out_size`."""
    in_size = ops.shape(x)[axis]
    in_size_f = ops.cast(in_size, "float32")
    out_size_f = ops.cast(out_size, "float32")
    # scale = (in - 1) / (out - 1), with a single output pixel sampling the first input.
    scale = (in_size_f - 1.0) / ops.maximum(out_size_f - 1.0, 1.0)
    position = ops.arange(out_size, dtype="float32") * scale  # [out]
    low = ops.cast(ops.floor(position), "int32")
    high = ops.minimum(low + 1, ops.cast(in_size, "int32") - 1)
    fraction = position - ops.cast(low, "float32")
    shape = [1] * len(x.shape)
    shape[axis] = -1
    fraction = ops.cast(ops.reshape(fraction, shape), x.dtype)
    below = ops.take(x, low, axis=axis)
    above = ops.take(x, high, axis=axis)
    return below + (above - below) * fraction


def resize_align_corners(x, size):
    """Resizes `[batch, height, width, channels]` to `size` = (height, width).

    Args:
      x: A 4-D tensor.
      size: Target (height, width); ints or scalar tensors.

    Returns:
      `[batch, size[0], size[1], channels]`, same dtype as `x`.
    """
    x = _resize_axis(x, size[0], axis=1)
    return _resize_axis(x, size[1], axis=2)
