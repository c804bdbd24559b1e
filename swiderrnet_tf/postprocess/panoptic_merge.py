"""Panoptic-DeepLab post-processing: semantic, centers and offsets -> panoptic map.

Follows Panoptic-DeepLab (Cheng et al., CVPR 2020, Sec. 3.2), the inference used
by SWideRNet (Chen, Wang, Qiao 2020), with the conventions of deeplab2's pure-TF
path (`model/post_processor/panoptic_deeplab.py`):
  * semantic class = argmax over classes, the first class on ties;
  * centers, pixel grouping: see `centers.py`; instance `i` (1-based) is the
    `i`-th kept center in row-major order, on thing pixels only;
  * instance class = majority semantic class over the instance's thing pixels
    (the smallest class on ties); the panoptic id is `class * label_divisor + n`,
    `n` counting the instances of that class from 1 in order of their first pixel
    in a row-major scan; instances without thing pixels are dropped;
  * a stuff class whose area is below `stuff_area_limit` becomes void; thing
    pixels of an image without any center are void;
  * instance score (for instance AP) = center score x mean probability of the
    instance's class over its pixels, as deeplab2's `combined_instance_scores`.

Everything is batched with static shapes and written in `keras.ops`: no custom op,
no Python loop over instances, no data-dependent shapes, so it compiles with XLA
(CPU, GPU, TPU) and runs under `jax.jit`. Votes, areas and first pixels are
segment reductions over `(image, instance)` ids.

Deliberate deviations from deeplab2:
  1. The semantic argmax and center grouping deviate as listed in
     `semantic_scores.py` and `centers.py`.
  2. deeplab2 merges one image at a time (`batch == 1`); here any batch size.
  3. Outputs: centers come as points and scores (`[batch, k, 2]`, `[batch, k]`)
     rather than deeplab2's NMS-filtered heatmap; `INSTANCE_SCORES` holds the
     combined AP score above rather than the bare center score; the softmax is
     returned only on request, as it is as large as the logits.
"""

import math

from keras import ops

from swiderrnet_tf import common
from swiderrnet_tf.postprocess import centers
from swiderrnet_tf.postprocess import merge_defaults
from swiderrnet_tf.postprocess import semantic_scores

_INT32_MAX = 2**31 - 1


def check_merge_settings(
    *,
    thing_classes,
    label_divisor: int,
    stuff_area_limit: int,
    center_threshold: float,
    nms_kernel: int,
    keep_k_centers: int,
    void_label: int,
    num_classes: int | None = None,
) -> None:
    """Raises `ValueError` naming the setting that cannot work.

    Args:
      thing_classes: Model classes that have instances.
      label_divisor: Panoptic id = class * label_divisor + instance.
      stuff_area_limit: Minimum stuff area in pixels.
      center_threshold: Center heatmap threshold.
      nms_kernel: Odd NMS window size.
      keep_k_centers: Number of center slots, > 0.
      void_label: Void class.
      num_classes: Number of semantic classes, when known.
    """
    where = "panoptic merge settings"
    if nms_kernel < 1 or nms_kernel % 2 == 0:
        raise ValueError(f"{where}: nms_kernel must be an odd positive size, got {nms_kernel}")
    if keep_k_centers < 1:
        raise ValueError(
            f"{where}: keep_k_centers must be >= 1 (static shapes need a bound on the "
            f"number of centers), got {keep_k_centers}"
        )
    if label_divisor <= keep_k_centers:
        raise ValueError(
            f"{where}: label_divisor ({label_divisor}) must exceed keep_k_centers "
            f"({keep_k_centers}), or instance ids would spill into the next class"
        )
    if stuff_area_limit < 0:
        raise ValueError(f"{where}: stuff_area_limit must be >= 0, got {stuff_area_limit}")
    if not math.isfinite(center_threshold):
        raise ValueError(f"{where}: center_threshold must be finite, got {center_threshold}")
    if void_label < 0 or (void_label + 1) * label_divisor > _INT32_MAX:
        raise ValueError(
            f"{where}: void_label {void_label} with label_divisor {label_divisor} "
            "does not give an int32 panoptic id"
        )
    if num_classes is None:
        return
    bad = [c for c in thing_classes if not 0 <= c < num_classes]
    if bad:
        raise ValueError(
            f"{where}: thing_classes {bad} are outside the model classes 0..{num_classes - 1}"
        )
    if void_label < num_classes:
        raise ValueError(
            f"{where}: void_label {void_label} collides with a model class "
            f"(semantic_logits has {num_classes} classes)"
        )
    if num_classes * label_divisor > _INT32_MAX:
        raise ValueError(
            f"{where}: {num_classes} classes x label_divisor {label_divisor} "
            "overflow int32 panoptic ids"
        )


def panoptic_merge(
    semantic_logits,
    center_heatmap,
    offsets,
    *,
    thing_classes,
    label_divisor: int,
    stuff_area_limit: int,
    center_threshold: float = merge_defaults.CENTER_THRESHOLD,
    nms_kernel: int = merge_defaults.NMS_KERNEL,
    keep_k_centers: int = merge_defaults.KEEP_K_CENTERS,
    void_label: int = merge_defaults.VOID_LABEL,
    return_semantic_probabilities: bool = False,
) -> dict:
    """Merges Panoptic-DeepLab outputs into semantic, instance and panoptic maps.

    Args:
      semantic_logits: `[batch, height, width, num_classes]` float logits.
      center_heatmap: `[batch, height, width, 1]` (or `[batch, height, width]`)
        float center heatmap.
      offsets: `[batch, height, width, 2]` float offsets `(dy, dx)` in pixels,
        from a pixel to its instance center.
      thing_classes: Model classes that have instances.
      label_divisor: Panoptic id = class * label_divisor + instance id.
      stuff_area_limit: Stuff segments (one per class) with fewer pixels become void.
      center_threshold: Heatmap values at or below it are not centers.
      nms_kernel: Odd size of the max-pool NMS window (7-13 Cityscapes, 41 COCO).
      keep_k_centers: At most this many centers per image (static slot count).
      void_label: Class of void pixels; their panoptic id is
        `void_label * label_divisor`.
      return_semantic_probabilities: Whether to return the softmax, a
        `[batch, height, width, num_classes]` float32 tensor that costs as much
        memory as the logits.

    Returns:
      A dict with (`k` = `keep_k_centers`)
        - `common.PANOPTIC`: `[batch, height, width]` int32 panoptic ids;
        - `common.SEMANTIC`: `[batch, height, width]` int32 classes;
        - `common.INSTANCE`: `[batch, height, width]` int32, 1-based center slot
          of each thing pixel, 0 elsewhere;
        - `common.INSTANCE_SCORES`: `[batch, height, width]` float32 score of the
          instance of each thing pixel, 0 elsewhere;
        - `common.CENTER_POINTS`: `[batch, k, 2]` int32 `(y, x)`, -1 if unused;
        - `common.CENTER_SCORES`: `[batch, k]` float32, 0 if unused;
        - `common.SEMANTIC_PROBABILITIES` (if requested): softmax of the logits.

    Raises:
      ValueError: On a setting that cannot work or a spatial size that is unknown.
    """
    num_classes = semantic_logits.shape[-1]
    height, width = semantic_logits.shape[1:3]
    if height is None or width is None or num_classes is None:
        raise ValueError(
            f"{common.SEMANTIC_LOGITS} needs static height, width and classes, got shape "
            f"{semantic_logits.shape}"
        )
    check_merge_settings(
        thing_classes=thing_classes,
        label_divisor=label_divisor,
        stuff_area_limit=stuff_area_limit,
        center_threshold=center_threshold,
        nms_kernel=nms_kernel,
        keep_k_centers=keep_k_centers,
        void_label=void_label,
        num_classes=num_classes,
    )
    if tuple(center_heatmap.shape[1:]) not in ((height, width, 1), (height, width)):
        raise ValueError(
            f"{common.CENTER_HEATMAP} has shape {center_heatmap.shape}, expected "
            f"[batch, {height}, {width}, 1] to match {common.SEMANTIC_LOGITS}"
        )
    if tuple(offsets.shape[1:]) != (height, width, 2):
        raise ValueError(
            f"{common.OFFSETS} has shape {offsets.shape}, expected "
            f"[batch, {height}, {width}, 2] to match {common.SEMANTIC_LOGITS}"
        )
    if len(center_heatmap.shape) == 4:
        center_heatmap = center_heatmap[..., 0]

    logits = ops.cast(semantic_logits, "float32")
    semantic = semantic_scores.argmax_first(logits)  # [b, h, w]
    center_points, center_scores = centers.find_centers(
        ops.cast(center_heatmap, "float32"),
        center_threshold=center_threshold,
        nms_kernel=nms_kernel,
        keep_k_centers=keep_k_centers,
    )
    nearest = centers.assign_to_centers(ops.cast(offsets, "float32"), center_points, center_scores)

    thing_lookup = ops.convert_to_tensor(
        [c in set(thing_classes) for c in range(num_classes)], "bool"
    )
    is_thing = ops.take(thing_lookup, semantic)  # [b, h, w]
    has_center = center_scores[:, 0] > 0.0  # [b]; real centers come first
    instance = ops.where(
        ops.logical_and(is_thing, has_center[:, None, None]), nearest + 1, 0
    )  # [b, h, w]

    segments = _segment_table(
        logits,
        semantic,
        instance,
        center_scores,
        label_divisor=label_divisor,
    )
    panoptic = _paste(
        semantic,
        instance,
        is_thing,
        segments,
        num_classes=num_classes,
        label_divisor=label_divisor,
        stuff_area_limit=stuff_area_limit,
        void_label=void_label,
    )
    outputs = {
        common.PANOPTIC: panoptic,
        common.SEMANTIC: semantic,
        common.INSTANCE: instance,
        common.INSTANCE_SCORES: ops.where(
            instance > 0, ops.take(segments["score"], segments["ids"]), 0.0
        ),
        common.CENTER_POINTS: center_points,
        common.CENTER_SCORES: center_scores,
    }
    if return_semantic_probabilities:
        outputs[common.SEMANTIC_PROBABILITIES] = ops.softmax(logits, axis=-1)
    return outputs


def _segment_table(logits, semantic, instance, center_scores, *, label_divisor: int) -> dict:
    """Per (image, instance slot) class, panoptic id and score; per image stuff areas.

    Args:
      logits: `[b, h, w, c]` float32.
      semantic: `[b, h, w]` int32.
      instance: `[b, h, w]` int32, 0 = no instance, else 1..k.
      center_scores: `[b, k]` float32.
      label_divisor: Panoptic label divisor.

    Returns:
      A dict of
        - `ids`: `[b, h, w]` int32 row of each pixel in the flat per-instance
          tables, `image * (k + 1) + instance`;
        - `panoptic`: `[b * (k + 1)]` int32 panoptic id per instance slot;
        - `score`: `[b * (k + 1)]` float32 instance score per slot;
        - `stuff_area`: `[b * c]` int32 pixels of each class outside instances.
    """
    _, height, width, num_classes = logits.shape
    num_slots = center_scores.shape[1] + 1  # slot 0: no instance
    batch = ops.shape(logits)[0]
    ids = ops.arange(batch, dtype="int32")[:, None, None] * num_slots + instance
    flat_ids = ops.reshape(ids, [-1])

    # Votes and areas in one reduction: pixels per (image, slot, class). Slot 0
    # holds the pixels outside instances, i.e. the stuff areas.
    votes = ops.segment_sum(
        ops.ones_like(flat_ids),
        flat_ids * num_classes + ops.reshape(semantic, [-1]),
        num_segments=batch * num_slots * num_classes,
    )
    votes = ops.reshape(votes, [-1, num_slots, num_classes])
    area = ops.sum(votes, axis=-1)  # [b, slots]
    instance_class = ops.cast(ops.argmax(votes, axis=-1), "int32")  # smallest on ties
    is_instance = ops.logical_and(area > 0, ops.arange(num_slots)[None, :] > 0)

    # First pixel of each instance in a row-major scan, as a max of (h*w - position).
    position = ops.arange(height * width, dtype="int32")
    position_from_end = ops.where(
        ops.reshape(instance, [-1, height * width]) > 0, height * width - position, 0
    )
    last = ops.segment_max(
        ops.reshape(position_from_end, [-1]), flat_ids, num_segments=batch * num_slots
    )
    first = height * width - ops.reshape(ops.maximum(last, 0), [-1, num_slots])  # [b, slots]

    # n = 1 + instances of the same class whose first pixel comes earlier.
    earlier = ops.logical_and(
        instance_class[:, :, None] == instance_class[:, None, :],
        first[:, :, None] < first[:, None, :],
    )  # [b, earlier slot, slot]
    earlier = ops.logical_and(earlier, is_instance[:, :, None])
    number = 1 + ops.sum(ops.cast(earlier, "int32"), axis=1)
    panoptic = instance_class * label_divisor + number

    # Mean probability of the instance's class over its pixels. The conditional
    # skips the softmax work when no image has an instance, and keeps XLA from
    # fusing that work into the scatter below, where it runs unvectorised (5x
    # slower on CPU).
    pixel_class = ops.take(ops.reshape(instance_class, [-1]), ids)  # [b, h, w]
    probability = ops.cond(
        ops.any(instance > 0),
        lambda: semantic_scores.class_probability(logits, pixel_class),
        lambda: ops.zeros_like(pixel_class, "float32"),
    )
    probability_sum = ops.segment_sum(
        ops.reshape(ops.where(instance > 0, probability, 0.0), [-1]),
        flat_ids,
        num_segments=batch * num_slots,
    )
    mean_probability = probability_sum / ops.cast(
        ops.maximum(ops.reshape(area, [-1]), 1), "float32"
    )
    slot_scores = ops.reshape(ops.pad(center_scores, [[0, 0], [1, 0]]), [-1])
    return {
        "ids": ids,
        "panoptic": ops.reshape(panoptic, [-1]),
        "score": slot_scores * mean_probability,
        "stuff_area": ops.reshape(votes[:, 0, :], [-1]),
    }


def _paste(
    semantic,
    instance,
    is_thing,
    segments: dict,
    *,
    num_classes: int,
    label_divisor: int,
    stuff_area_limit: int,
    void_label: int,
):
    """Panoptic ids per pixel: instances, then stuff above the area limit, else void.

    Args:
      semantic: `[b, h, w]` int32.
      instance: `[b, h, w]` int32.
      is_thing: `[b, h, w]` bool.
      segments: The dict of `_segment_table`.
      num_classes: Number of semantic classes.
      label_divisor: Panoptic label divisor.
      stuff_area_limit: Minimum stuff area.
      void_label: Void class.

    Returns:
      `[b, h, w]` int32 panoptic ids.
    """
    batch = ops.shape(semantic)[0]
    stuff_ids = ops.arange(batch, dtype="int32")[:, None, None] * num_classes + semantic
    big_enough = ops.take(segments["stuff_area"], stuff_ids) >= stuff_area_limit
    void = void_label * label_divisor
    stuff = ops.where(ops.logical_and(~is_thing, big_enough), semantic * label_divisor, void)
    return ops.where(instance > 0, ops.take(segments["panoptic"], segments["ids"]), stuff)
