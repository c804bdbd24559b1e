"""Panoptic-DeepLab training targets from a panoptic map, vectorised.

Panoptic-DeepLab (Cheng et al., CVPR 2020), as trained by the SWideRNet paper
and deeplab2's `sample_generator.py`:
  * semantic label: the class of every pixel, void = `ignore_label`; a crowd
    region keeps its class;
  * semantic weights: 0 on void, `small_instance_weight` (3) on the pixels of
    instances with fewer than `small_instance_area` (4096) pixels, counted
    after the crop, 1 elsewhere;
  * center heatmap: a Gaussian (sigma 8, a `6 * sigma + 3` window, peak 1) at
    each instance's center, the rounded mean of its pixel coordinates
    (`tf.round`, halves to even, as deeplab2), the maximum where they overlap;
  * center weights: 1 except on void and crowd pixels;
  * offsets: `center - pixel` as `(dy, dx)` in input pixels on instance pixels,
    0 elsewhere; offset weights: 1 on thing pixels that are not crowd.

An instance is a segment of a thing class with a non-zero instance id; crowd
is a thing class with instance id 0. Per-pixel maps are elementwise ops;
per-instance facts come from `tf.unique` and segment sums over the instance
pixels only, scattered back; the heatmap is one `tensor_scatter_nd_max` of
all Gaussian windows. Nothing loops over instances in Python.

Deviations from deeplab2:
  1. Stuff segments never get a center, even with a non-zero instance id
     (deeplab2 gives any non-void id not divisible by the divisor a center).
  2. Semantic weights are 0 on void (deeplab2 leaves that to the loss's
     ignore label); the result is the same.
"""

import numpy as np
import tensorflow as tf

from swiderrnet_tf import common
from swiderrnet_tf.data import dataset_info as dataset_info_lib


def gaussian_window(sigma: float) -> tuple[np.ndarray, int]:
    """The center Gaussian: `([2r+1, 2r+1] float32, r)` with `r = round(3 sigma + 1)`.

    For integer sigma the window is `6 * sigma + 3` wide, as in deeplab2.
    """
    radius = int(round(3 * sigma + 1))
    d = np.arange(-radius, radius + 1, dtype=np.float64)
    window = np.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2.0 * sigma**2))
    return window.astype(np.float32), radius


def _is_thing(classes: tf.Tensor, info: dataset_info_lib.DatasetInfo) -> tf.Tensor:
    """Whether each class id is a thing class (void is not)."""
    things = sorted(info.thing_classes)
    if not things:
        return tf.zeros_like(classes, tf.bool)
    if things == list(range(things[0], things[-1] + 1)):
        # Contiguous thing ids (Cityscapes, COCO, ...): two comparisons, no gather.
        return (classes >= things[0]) & (classes <= things[-1])
    table = np.zeros(max(info.num_classes, info.ignore_label + 1), dtype=bool)
    table[things] = True
    return tf.gather(tf.constant(table), tf.clip_by_value(classes, 0, len(table) - 1))


def generate_targets(
    panoptic: tf.Tensor,
    *,
    dataset_info: dataset_info_lib.DatasetInfo,
    center_sigma: float = 8.0,
    small_instance_area: int = 4096,
    small_instance_weight: float = 3.0,
) -> dict[str, tf.Tensor]:
    """Computes the Panoptic-DeepLab targets of one panoptic map.

    Args:
      panoptic: `[h, w]` int32, `model class * label_divisor + instance`, void
        pixels `ignore_label * label_divisor`.
      dataset_info: Classes, thing classes, divisor and ignore label.
      center_sigma: Standard deviation of the center Gaussian, in pixels.
      small_instance_area: Instances with fewer pixels get the larger weight.
      small_instance_weight: Semantic weight of small-instance pixels.

    Returns:
      A dict with `common.SEMANTIC_LABEL` `[h, w]` int32,
      `common.SEMANTIC_WEIGHTS`, `common.CENTER_TARGET`,
      `common.CENTER_WEIGHTS`, `common.OFFSET_WEIGHTS` `[h, w]` float32,
      `common.OFFSET_TARGET` `[h, w, 2]` float32 and `common.CROWD_MASK`
      `[h, w]` bool.
    """
    info = dataset_info
    shape = tf.shape(panoptic)
    semantic = panoptic // info.label_divisor
    instance_id = panoptic - semantic * info.label_divisor
    is_void = tf.equal(semantic, info.ignore_label)
    thing = _is_thing(semantic, info) & ~is_void
    crowd = thing & tf.equal(instance_id, 0)
    on_instance = thing & (instance_id > 0)

    # Per-instance work touches instance pixels only: stuff dominates most maps.
    coords = tf.cast(tf.where(on_instance), tf.int32)  # [n, 2] (y, x)
    ids, segment = tf.unique(tf.gather_nd(panoptic, coords))  # [k], [n]
    num_instances = tf.size(ids)
    area = tf.math.unsorted_segment_sum(tf.ones_like(segment), segment, num_instances)
    # int64 sums stay exact at any image size; halves round to even like deeplab2.
    coord_sum = tf.math.unsorted_segment_sum(tf.cast(coords, tf.int64), segment, num_instances)
    mean = tf.cast(coord_sum, tf.float64) / tf.cast(area, tf.float64)[:, tf.newaxis]
    centers = tf.cast(tf.round(mean), tf.int32)  # [k, 2]

    offsets = tf.cast(tf.gather(centers, segment) - coords, tf.float32)  # [n, 2]
    offsets = tf.scatter_nd(coords, offsets, tf.concat([shape, [2]], 0))
    small = tf.cast(tf.gather(area < small_instance_area, segment), tf.float32)  # [n]
    on_small = tf.scatter_nd(coords, small, shape)
    semantic_weights = tf.where(
        is_void, 0.0, 1.0 + (tf.cast(small_instance_weight, tf.float32) - 1.0) * on_small
    )
    return {
        common.SEMANTIC_LABEL: semantic,
        common.SEMANTIC_WEIGHTS: semantic_weights,
        common.CENTER_TARGET: _center_heatmap(centers, shape[0], shape[1], center_sigma),
        common.CENTER_WEIGHTS: tf.cast(~(is_void | crowd), tf.float32),
        common.OFFSET_TARGET: offsets,
        common.OFFSET_WEIGHTS: tf.cast(on_instance, tf.float32),
        common.CROWD_MASK: crowd,
    }


def _center_heatmap(centers, height, width, sigma):
    """Max of Gaussian windows at `centers` (`[m, 2]` int32) on an `[h, w]` map."""
    window, radius = gaussian_window(sigma)
    size = 2 * radius + 1
    d = tf.range(size)
    window_yx = tf.reshape(tf.stack(tf.meshgrid(d, d, indexing="ij"), axis=-1), [-1, 2])
    # On a canvas padded by `radius`, a window centred at c starts at c.
    indices = tf.reshape(centers[:, tf.newaxis, :] + window_yx[tf.newaxis], [-1, 2])
    updates = tf.tile(tf.reshape(window, [-1]), [tf.shape(centers)[0]])
    canvas = tf.zeros([height + 2 * radius, width + 2 * radius], tf.float32)
    canvas = tf.tensor_scatter_nd_max(canvas, indices, updates)
    return canvas[radius : radius + height, radius : radius + width]
