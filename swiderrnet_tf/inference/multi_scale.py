"""Multi-scale and left-right flipped inference of Panoptic-DeepLab.

The paper evaluates with the inputs rescaled by {0.5, ..., 1.5} (COCO, ADE20K)
or {0.5, ..., 2.0} (Cityscapes, Mapillary Vistas) and left-right flipped
(SWideRNet, Chen et al. 2020, Sec. 4; Panoptic-DeepLab, Cheng et al. 2020,
Sec. 4.1). As deeplab2 (`model/deeplab.py`, evaluation mode) does, each pass
resizes the images (corner-aligned bilinear, size `int((n - 1) * scale + 1)`),
runs the network, brings its outputs back to the input size and averages them:

  * semantic: the softmax of each pass, then the mean over passes;
  * center heatmap: the mean;
  * offsets: each pass's offsets multiplied by the corner-aligned resize ratio
    `(n - 1) / (n_scaled - 1)` (about `1 / scale`) so that they are in input
    pixels, the `dx` of flipped passes negated, then the mean.

The returned `semantic_logits` are `log(mean probability)` (floored at 1e-30, so
that no logit is -inf). The merge reads the class as the argmax of the logits
and scores instances with their softmax; `log` keeps the argmax of the mean
probabilities, and `softmax(log p) = p / sum(p) = p`, so the merge sees exactly
the averaged probabilities. A single pass at scale 1 without flip returns the
network's outputs unchanged.

Everything is `keras.ops` (TensorFlow and JAX). Under TensorFlow, the image
size may be unknown when tracing (an exported model), the scaled sizes are
then computed in the graph.

Deliberate deviations from deeplab2:
  1. Outputs are resized from the scaled input size, where the network already
     put them, rather than from its stride-4 head outputs in one step. Both
     map output pixel `i` to the same head position; the values differ only
     where a sample falls between two head pixels' interpolation segments.
  2. The semantic logits returned are log mean probabilities; deeplab2 returns
     both the mean logits (unused by its merge) and the mean probabilities.
  3. deeplab2 sizes ASPP pooling per scale; here the pooling is global at
     every scale (DESIGN 2), so no pool size is involved.
"""

import gin
from keras import ops

from swiderrnet_tf import common
from swiderrnet_tf.data import dataset_info as dataset_info_lib
from swiderrnet_tf.layers import resize

# Floor of the averaged probabilities before the log: keeps logits finite, so
# that the merge's `exp(logit - class logit)` never meets `-inf - -inf`.
PROBABILITY_FLOOR = 1e-30


def scaled_size(size, scale: float):
    """Corner-aligned scaled length `int((size - 1) * scale + 1)`, as deeplab2.

    Args:
      size: A Python int or a scalar int tensor (unknown when tracing).
      scale: The scale.

    Returns:
      The scaled length, of the same kind as `size`.
    """
    if isinstance(size, int):
        return int((size - 1) * scale + 1)
    return ops.cast((ops.cast(size, "float64") - 1.0) * scale + 1.0, "int32")


def _spatial_size(images):
    """(height, width) as Python ints where known, else as scalar tensors."""
    static = images.shape[1:3]
    dynamic = ops.shape(images)[1:3]
    return tuple(s if isinstance(s, int) else d for s, d in zip(static, dynamic, strict=True))


def _back_to_input(outputs, size, flipped: bool):
    """Flips a pass's outputs back and resizes them to `size`; offsets in input pixels.

    Args:
      outputs: Dict of `[b, h', w', c]` network outputs at the scaled size.
      size: The input (height, width).
      flipped: Whether the pass saw left-right flipped images.

    Returns:
      (probabilities `[b, h, w, classes]`, heatmap `[b, h, w, 1]`, offsets `[b, h, w, 2]`).
    """
    logits = ops.cast(outputs[common.SEMANTIC_LOGITS], "float32")
    heatmap = ops.cast(outputs[common.CENTER_HEATMAP], "float32")
    offsets = ops.cast(outputs[common.OFFSETS], "float32")
    if flipped:
        logits, heatmap, offsets = (ops.flip(x, axis=2) for x in (logits, heatmap, offsets))
        offsets = offsets * ops.convert_to_tensor([1.0, -1.0])  # dx points the other way
    in_size = ops.cast(ops.stack(ops.shape(offsets)[1:3]), "float32")
    out_size = ops.cast(ops.stack(size), "float32")
    ratio = (out_size - 1.0) / ops.maximum(in_size - 1.0, 1.0)  # [2]: (dy, dx) scales
    logits = resize.resize_align_corners(logits, size)
    heatmap = resize.resize_align_corners(heatmap, size)
    offsets = resize.resize_align_corners(offsets * ratio, size)
    return ops.softmax(logits, axis=-1), heatmap, offsets


def multi_scale_outputs(predict, images, scales=(1.0,), flip: bool = False) -> dict:
    """Averages network outputs over rescaled and left-right flipped inputs.

    Args:
      predict: `predict(images) -> dict` with `common.SEMANTIC_LOGITS`,
        `common.CENTER_HEATMAP` and `common.OFFSETS` at the size of its input
        (offsets in its input's pixels), e.g. `model(images, training=False)`.
      images: `[batch, height, width, 3]` images in [0, 255], uint8 or float.
      scales: Input scales, e.g. a `DatasetInfo.eval_scales`.
      flip: Also run every scale on left-right flipped images.

    Returns:
      Dict of `common.SEMANTIC_LOGITS` `[batch, height, width, classes]` (log
      of the mean probabilities; the network's logits for a single pass),
      `common.CENTER_HEATMAP` `[batch, height, width, 1]` and `common.OFFSETS`
      `[batch, height, width, 2]` (dy, dx in input pixels), float32.

    Raises:
      ValueError: If `scales` is empty or holds a scale <= 0.
    """
    scales = tuple(float(s) for s in scales)
    if not scales or min(scales) <= 0:
        raise ValueError(f"scales must be a non-empty list of positive numbers, got {scales}")
    if scales == (1.0,) and not flip:
        return predict(images)
    x = ops.cast(images, "float32")
    size = _spatial_size(x)
    batch = ops.shape(x)[0]
    totals = None
    for scale in scales:
        scaled = x
        if scale != 1.0:
            scaled = resize.resize_align_corners(x, [scaled_size(s, scale) for s in size])
        if flip:
            # One network call for both copies: the flipped images follow in the batch.
            scaled = ops.concatenate([scaled, ops.flip(scaled, axis=2)], axis=0)
        outputs = predict(scaled)
        copies = [(outputs, False)]
        if flip:
            copies = [
                ({k: v[:batch] for k, v in outputs.items()}, False),
                ({k: v[batch:] for k, v in outputs.items()}, True),
            ]
        for copy, flipped in copies:
            parts = _back_to_input(copy, size, flipped)
            if totals is not None:
                parts = [t + p for t, p in zip(totals, parts, strict=True)]
            totals = parts
    count = len(scales) * (2 if flip else 1)
    probabilities, heatmap, offsets = (t / count for t in totals)
    return {
        common.SEMANTIC_LOGITS: ops.log(ops.maximum(probabilities, PROBABILITY_FLOOR)),
        common.CENTER_HEATMAP: heatmap,
        common.OFFSETS: offsets,
    }


def resolve_scales(scales=None, dataset_name: str | None = None) -> tuple[float, ...]:
    """The scales given, or the evaluation scales of a registered dataset.

    Raises:
      ValueError: If neither (or both) is given.
    """
    if (scales is None) == (dataset_name is None):
        raise ValueError(
            "give either scales (e.g. (0.5, 0.75, 1.0, 1.25, 1.5)) or dataset_name "
            f"(its eval_scales), not both or neither; got scales={scales!r}, "
            f"dataset_name={dataset_name!r}"
        )
    if scales is None:
        return tuple(dataset_info_lib.get_dataset_info(dataset_name).eval_scales)
    return tuple(float(s) for s in scales)


@gin.configurable(denylist=["model"])
def multi_scale_predict_fn(model, *, scales=None, dataset_name=None, flip: bool = True):
    """`predict_fn(images) -> outputs` over several scales and flips, for evaluation.

    A `predict_fn_factory` for the evaluation loop:
      panoptic_predictor.predict_fn_factory = @multi_scale_predict_fn
      multi_scale_predict_fn.dataset_name = %DATASET_NAME   # its eval_scales
      multi_scale_predict_fn.flip = True

    Args:
      model: The Panoptic-DeepLab model (called with `training=False`).
      scales: Input scales; or None for the `eval_scales` of `dataset_name`.
      dataset_name: A registered dataset whose `eval_scales` to use.
      flip: Also run left-right flipped inputs.

    Returns:
      `predict_fn(images [batch, height, width, 3]) -> dict` of averaged outputs
      (see `multi_scale_outputs`).
    """
    scales = resolve_scales(scales, dataset_name)

    def predict(images):
        return model(images, training=False)

    def predict_fn(images):
        return multi_scale_outputs(predict, images, scales=scales, flip=flip)

    return predict_fn
