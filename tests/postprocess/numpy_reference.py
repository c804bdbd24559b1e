"""A plain, loop-by-loop numpy Panoptic-DeepLab merge, one image at a time.

Written from the description of deeplab2's pure-TF post-processor (see
`tests/testdata/deeplab2_swidernet_tiny/README.md`), not from our implementation:
every step is an explicit loop over pixels, centers or segments. It is slow and
only meant for small test images.
"""

import numpy as np


def find_centers(heatmap, threshold, nms_kernel, keep_k):
    """Centers of one `[h, w]` heatmap as a row-major list of `((y, x), score)`."""
    height, width = heatmap.shape
    kept = np.where(heatmap > threshold, heatmap, np.float32(0))
    radius = nms_kernel // 2
    peaks = []
    for y in range(height):
        for x in range(width):
            if kept[y, x] <= 0:
                continue
            window = kept[max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1]
            if kept[y, x] == window.max():
                peaks.append(((y, x), float(kept[y, x])))
    if len(peaks) > keep_k:
        # The k highest; equal scores: the earlier pixel in row-major order.
        ranked = sorted(peaks, key=lambda p: (-p[1], p[0][0] * width + p[0][1]))
        peaks = sorted(ranked[:keep_k], key=lambda p: p[0][0] * width + p[0][1])
    return peaks


def merge_image(
    logits,
    heatmap,
    offsets,
    *,
    thing_classes,
    label_divisor,
    stuff_area_limit,
    threshold,
    nms_kernel,
    keep_k,
    void_label,
):
    """Merges one image; arrays without the batch axis.

    Returns:
      A dict with `semantic`, `instance`, `panoptic`, `instance_scores` ([h, w])
      and `centers` (the list of `find_centers`).
    """
    height, width, num_classes = logits.shape
    semantic = np.zeros((height, width), np.int32)
    for y in range(height):
        for x in range(width):
            semantic[y, x] = int(np.argmax(logits[y, x]))  # numpy: first index on ties
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)

    centers = find_centers(heatmap, threshold, nms_kernel, keep_k)
    instance = np.zeros((height, width), np.int32)
    for y in range(height):
        for x in range(width):
            if semantic[y, x] not in thing_classes or not centers:
                continue
            # float32 throughout, the target rounded first, as deeplab2 does.
            target_y = np.float32(y) + offsets[y, x, 0]
            target_x = np.float32(x) + offsets[y, x, 1]
            best, best_distance = 0, None
            for i, ((cy, cx), _) in enumerate(centers):
                dy = np.float32(cy) - target_y
                dx = np.float32(cx) - target_x
                distance = dy * dy + dx * dx
                if best_distance is None or distance < best_distance:
                    best, best_distance = i, distance
            instance[y, x] = best + 1

    panoptic = np.full((height, width), void_label * label_divisor, np.int32)
    scores = np.zeros((height, width), np.float32)
    # Instances in order of first appearance in a row-major scan.
    order = []
    for y in range(height):
        for x in range(width):
            if instance[y, x] and instance[y, x] not in order:
                order.append(int(instance[y, x]))
    count_per_class = {}
    for instance_id in order:
        mask = instance == instance_id
        votes = np.zeros(num_classes, np.int64)
        for c in semantic[mask]:
            votes[c] += 1
        majority = int(np.argmax(votes))  # smallest class on ties
        count_per_class[majority] = count_per_class.get(majority, 0) + 1
        panoptic[mask] = majority * label_divisor + count_per_class[majority]
        center_score = centers[instance_id - 1][1]
        scores[mask] = center_score * probabilities[mask, majority].mean()
    for c in range(num_classes):
        if c in thing_classes:
            continue
        mask = semantic == c
        if mask.sum() >= stuff_area_limit:
            panoptic[mask] = c * label_divisor
    return {
        "semantic": semantic,
        "instance": instance,
        "panoptic": panoptic,
        "instance_scores": scores,
        "centers": centers,
    }


def merge_batch(logits, heatmap, offsets, **settings):
    """`merge_image` over a batch; stacks the maps, keeps the center lists."""
    results = [
        merge_image(logits[b], heatmap[b], offsets[b], **settings) for b in range(len(logits))
    ]
    stacked = {k: np.stack([r[k] for r in results]) for k in results[0] if k != "centers"}
    stacked["centers"] = [r["centers"] for r in results]
    return stacked
