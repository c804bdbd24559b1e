"""Instance centers of Panoptic-DeepLab: heatmap -> center points -> pixel grouping.

Panoptic-DeepLab (Cheng et al., CVPR 2020, Sec. 3.2; used unchanged by SWideRNet,
Chen et al. 2020) keeps the local maxima of the center heatmap above a threshold,
at most `k` of them, and groups every pixel with the center nearest to the point
its offset vector lands on. These functions do that with static shapes, for a
whole batch, in `keras.ops` only, so they run eagerly, in a `tf.function` (with or
without XLA) and under `jax.jit`, with identical integer results on CPU.

Grouping never builds the `[pixels, k]` distance matrix (1.7 GB in float32 for
1025 x 2049 pixels and k = 200). The image is cut into tiles of at most
`TILE` pixels; a tile compares its pixels only with the centers that can be
nearest to one of its target points: with `r` the center nearest the middle
of the targets' bounding box and `bound` the largest distance from `r` to a
target, a center farther than `bound` from the whole box is farther than `r`
from every target, so it never wins (a small slack covers rounding). The
result is exactly that of comparing every center, in the same order; the work
follows the centers near each tile (a few of the 200 slots in a crowded
Cityscapes image) rather than all centers found. Within a tile a while loop
keeps a running minimum distance and its center per pixel and compares a few
candidates per pass. Distances are float32, as in deeplab2; where a compiler
contracts `a * a + b * b` into a fused multiply-add, a pixel equidistant from
two centers to within rounding may join a different one on another device (on
CPU the backends agree, as tested).

Deliberate deviations from deeplab2 (`model/post_processor/panoptic_deeplab.py`):
  1. When more than `keep_k_centers` maxima survive NMS, exactly the `k` highest
     are kept (equal scores: the earlier one in row-major order). deeplab2 keeps
     those strictly above the last score of an unsorted `top_k`, which can keep
     fewer than `k` and depends on `top_k`'s internal order.
  2. Nearest centers are found by comparing squared distances; deeplab2 compares
     their square roots. The two differ only when rounding the roots makes two
     different distances equal.
  3. `nms_kernel` must be odd, so that the window is centred on its pixel.
"""

import math

from keras import ops

# Candidate centers compared per pass over a tile. The comparisons of one chunk
# are unrolled so that XLA fuses them into a single loop over the tile; the while
# loop around the chunks stops after the last candidate.
CENTER_CHUNK = 8
# Largest tile of pixels that shares one list of candidate centers: small enough
# that the list is short, large enough that building it costs little (measured
# with scripts/benchmark_merge.py: 256x256 beat 64x128 .. 128x256 at 1025x2049).
TILE = (256, 256)
# Relative and absolute slack of the pruning bound, far above float32 rounding.
_BOUND_SLACK = 1e-4


def window_max(x, kernel_size: int):
    """Max over a `kernel_size` square window around every pixel, zero padded.

    The max is separable, and along one axis a window of width `k` is covered by
    two overlapping windows of the largest power of two `p <= k`, which are built
    by doubling. That is `O(log k)` elementwise maxima per axis, cheap even for
    the 41-pixel COCO kernel where a direct max-pool touches 1681 values per pixel.

    Args:
      x: `[batch, height, width]` float tensor, values >= 0 (the zero padding
        never exceeds them).
      kernel_size: Odd window size.

    Returns:
      `[batch, height, width]` tensor of window maxima.
    """
    radius = kernel_size // 2
    for axis in (1, 2):
        padding = [[0, 0], [0, 0], [0, 0]]
        padding[axis] = [radius, radius]
        m = ops.pad(x, padding)
        width = 1
        while 2 * width <= kernel_size:
            m = ops.maximum(_shift(m, axis, 0, width), _shift(m, axis, width, 0))
            width *= 2
        if width < kernel_size:
            rest = kernel_size - width
            m = ops.maximum(_shift(m, axis, 0, rest), _shift(m, axis, rest, 0))
        x = m
    return x


def _shift(x, axis: int, start: int, stop_from_end: int):
    """`x[start : len - stop_from_end]` along `axis` (1 or 2) of a rank-3 tensor."""
    stop = -stop_from_end if stop_from_end else None
    if axis == 1:
        return x[:, start:stop, :]
    return x[:, :, start:stop]


def find_centers(
    center_heatmap,
    *,
    center_threshold: float,
    nms_kernel: int,
    keep_k_centers: int,
):
    """Finds instance centers: threshold, max-pool NMS, top-k.

    A pixel is a center if its heatmap value is above `center_threshold` and
    equals the maximum of its `nms_kernel` window (values at or below the
    threshold count as 0 in the window).

    Args:
      center_heatmap: `[batch, height, width]` float32 heatmap.
      center_threshold: Scores at or below it are dropped.
      nms_kernel: Odd size of the NMS window.
      keep_k_centers: Number of center slots `k`.

    Returns:
      A tuple of
        - `[batch, k, 2]` int32 center points `(y, x)` in row-major order, real
          centers first; unused slots hold `(-1, -1)`;
        - `[batch, k]` float32 center scores (heatmap values), 0 for unused slots.
    """
    _, height, width = center_heatmap.shape
    heatmap = ops.where(center_heatmap > center_threshold, center_heatmap, 0.0)
    is_peak = ops.logical_and(heatmap == window_max(heatmap, nms_kernel), heatmap > 0.0)
    peaks = ops.reshape(ops.where(is_peak, heatmap, 0.0), [-1, height * width])
    if height * width < keep_k_centers:
        peaks = ops.pad(peaks, [[0, 0], [0, keep_k_centers - height * width]])
    scores, positions = ops.top_k(peaks, keep_k_centers, sorted=True)  # [b, k] each
    positions = ops.cast(positions, "int32")
    # Row-major order of the kept centers; unused slots sort last.
    num_positions = height * width
    positions = ops.sort(ops.where(scores > 0.0, positions, num_positions), axis=-1)
    is_used = positions < num_positions
    scores = ops.take_along_axis(peaks, ops.minimum(positions, num_positions - 1), axis=1)
    scores = ops.where(is_used, scores, 0.0)
    points = ops.stack([positions // width, positions % width], axis=-1)  # [b, k, 2]
    points = ops.where(is_used[:, :, None], points, -1)
    return points, scores


def assign_to_centers(
    offsets, center_points, center_scores, *, chunk: int = CENTER_CHUNK, tile=TILE
):
    """Index of the center nearest to each pixel's offset target.

    Pixel `(y, x)` votes for the point `(y + dy, x + dx)`; it joins the center at
    the smallest Euclidean distance from that point (the earlier center on
    ties). The image is cut into tiles; each tile compares only the centers
    that can be nearest to one of its points (see the module docstring),
    `chunk` at a time inside a while loop over those candidates.

    Args:
      offsets: `[batch, height, width, 2]` float32 offsets `(dy, dx)` in pixels.
      center_points: `[batch, k, 2]` int32 centers `(y, x)`, as `find_centers`
        returns them (real centers first).
      center_scores: `[batch, k]` float32, > 0 for real centers.
      chunk: Center slots compared per pass over a tile.
      tile: Largest `(height, width)` of a tile.

    Returns:
      `[batch, height, width]` int32 index into the `k` center slots; 0 where an
      image has no center at all.
    """
    _, height, width, _ = offsets.shape
    num_slots = center_scores.shape[1]
    rows, cols = math.ceil(height / tile[0]), math.ceil(width / tile[1])
    tile_h, tile_w = math.ceil(height / rows), math.ceil(width / cols)
    is_used = center_scores > 0.0
    # Unused slots sit at infinity, so no pixel ever picks them.
    center_y = ops.where(is_used, ops.cast(center_points[:, :, 0], "float32"), math.inf)
    center_x = ops.cast(center_points[:, :, 1], "float32")

    # Same rounding as deeplab2: the target point is rounded before the distance.
    target_y = ops.cast(ops.arange(height), "float32")[None, :, None] + offsets[..., 0]
    target_x = ops.cast(ops.arange(width), "float32")[None, None, :] + offsets[..., 1]
    # Tiles [b * rows * cols, tile_h, tile_w]; the padding repeats edge values, so
    # it leaves each tile's range of targets as it is, and is cropped at the end.
    padding = [[0, 0], [0, rows * tile_h - height], [0, cols * tile_w - width]]

    def to_tiles(x):
        x = ops.pad(x, padding, mode="symmetric")
        x = ops.reshape(x, [-1, rows, tile_h, cols, tile_w])
        return ops.reshape(ops.transpose(x, [0, 1, 3, 2, 4]), [-1, tile_h, tile_w])

    image = ops.arange(ops.shape(target_y)[0] * rows * cols, dtype="int32") // (rows * cols)
    per_tile = (
        to_tiles(target_y),
        to_tiles(target_x),
        ops.take(center_y, image, axis=0),  # [tiles, k]
        ops.take(center_x, image, axis=0),
        ops.take(is_used, image, axis=0),
    )
    nearest = ops.map(
        lambda args: _nearest_in_tile(*args, num_slots=num_slots, chunk=chunk), per_tile
    )  # [tiles, tile_h, tile_w]
    nearest = ops.reshape(nearest, [-1, rows, cols, tile_h, tile_w])
    nearest = ops.reshape(
        ops.transpose(nearest, [0, 1, 3, 2, 4]), [-1, rows * tile_h, cols * tile_w]
    )
    return nearest[:, :height, :width]


def _candidates(target_y, target_x, center_y, center_x, is_used):
    """Centers that can be the nearest to a point of the tile, and how many.

    A reference center `r` (the one nearest the middle of the points' bounding
    box) is at most `bound` from every point. A center whose distance from the
    box is more than `bound` is farther than `r` from every point, so it never
    wins; the slack covers rounding (and a fused multiply-add) in the
    comparisons. NaN or infinite targets keep every center.

    Returns:
      `[k]` bool candidates and their int32 count.
    """
    y_low, y_high = ops.min(target_y), ops.max(target_y)
    x_low, x_high = ops.min(target_x), ops.max(target_x)
    middle_distance = ops.square(center_y - (y_low + y_high) / 2) + ops.square(
        center_x - (x_low + x_high) / 2
    )
    # Any center would do as the reference (the bound holds for each); top_k
    # rather than argmin, whose TF form has an op TFLite lacks.
    _, reference = ops.top_k(-ops.where(is_used, middle_distance, math.inf), 1)
    reference = reference[0]
    bound = ops.max(
        ops.square(ops.take(center_y, reference) - target_y)
        + ops.square(ops.take(center_x, reference) - target_x)
    )
    gap_y = ops.maximum(ops.maximum(y_low - center_y, center_y - y_high), 0.0)
    gap_x = ops.maximum(ops.maximum(x_low - center_x, center_x - x_high), 0.0)
    too_far = ops.square(gap_y) + ops.square(gap_x) > bound * (1.0 + _BOUND_SLACK) + _BOUND_SLACK
    candidate = ops.logical_and(is_used, ops.logical_not(too_far))
    return candidate, ops.sum(ops.cast(candidate, "int32"))


def _nearest_in_tile(target_y, target_x, center_y, center_x, is_used, *, num_slots, chunk):
    """`[tile_h, tile_w]` int32 nearest center slot (see `assign_to_centers`)."""
    candidate, count = _candidates(target_y, target_x, center_y, center_x, is_used)
    num_chunks = math.ceil(num_slots / chunk)
    slots = ops.arange(num_slots, dtype="int32")
    # Candidates first, in slot order, so ties go to the earlier center as before
    # (top_k of distinct keys rather than argsort, which TFLite lacks for ints).
    _, order = ops.top_k(ops.where(candidate, 2 * num_slots - slots, num_slots - slots), num_slots)
    order = ops.cast(order, "int32")
    order = ops.pad(order, [[0, num_chunks * chunk - num_slots]])
    listed = ops.arange(num_chunks * chunk, dtype="int32") < count
    order_y = ops.where(listed, ops.take(center_y, ops.minimum(order, num_slots - 1)), math.inf)
    order_x = ops.take(center_x, ops.minimum(order, num_slots - 1))

    def compare_chunk(step, best_distance, best_index):
        for offset in range(chunk):
            position = step * chunk + offset
            distance = ops.square(ops.take(order_y, position) - target_y) + ops.square(
                ops.take(order_x, position) - target_x
            )
            closer = distance < best_distance  # strict: the earlier center wins ties
            best_distance = ops.where(closer, distance, best_distance)
            best_index = ops.where(closer, ops.take(order, position), best_index)
        return step + 1, best_distance, best_index

    _, _, best_index = ops.while_loop(
        lambda step, *_: step * chunk < count,
        compare_chunk,
        (
            ops.convert_to_tensor(0, "int32"),
            ops.full_like(target_y, math.inf),
            ops.zeros_like(target_y, "int32"),
        ),
        maximum_iterations=num_chunks,
    )
    return best_index
