"""Panoptic maps as COCO panoptic files (panopticapi's format).

A COCO panoptic prediction is a PNG per image whose colour encodes a segment
id per pixel (`id = R + 256 G + 256^2 B`, panopticapi's `id2rgb`/`rgb2id`;
0 = void) and a JSON whose `annotations` list, per image, its segments
(`id`, `category_id`, `iscrowd`, `area`, `bbox` = [x, y, width, height]).

Here the segment id of a panoptic id `p = class * label_divisor + instance`
is `p + 1`, so the PNG alone gives the panoptic map back (`segment id - 1`)
and void (panoptic id `ignore_label * label_divisor`) is 0. Categories are
the dataset's own ids (`category_ids`, e.g. COCO's sparse 1..200), so the
files evaluate against the dataset's ground truth with panopticapi's
`pq_compute`.
"""

import numpy as np

# Segment ids must fit the 24 bits of an RGB pixel.
_MAX_SEGMENT_ID = 256**3 - 1


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """panopticapi's `id2rgb`: `[h, w]` ids -> `[h, w, 3]` uint8 (R low byte)."""
    ids = np.asarray(ids, np.int64)
    if ids.min(initial=0) < 0 or ids.max(initial=0) > _MAX_SEGMENT_ID:
        raise ValueError(f"segment ids must lie in 0..{_MAX_SEGMENT_ID}, got {ids.min()}..")
    return np.stack([ids % 256, ids // 256 % 256, ids // 256**2], axis=-1).astype(np.uint8)


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """panopticapi's `rgb2id`: `[h, w, 3]` uint8 -> `[h, w]` int64 ids."""
    rgb = np.asarray(rgb, np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256**2 * rgb[..., 2]


def segment_ids(panoptic: np.ndarray, info) -> np.ndarray:
    """`[h, w]` panoptic ids -> segment ids (`panoptic + 1`; void and unknown classes 0)."""
    panoptic = np.asarray(panoptic, np.int64)
    classes = panoptic // info.label_divisor
    valid = (classes >= 0) & (classes < info.num_classes)
    ids = np.where(valid, panoptic + 1, 0)
    if ids.max(initial=0) > _MAX_SEGMENT_ID:
        raise ValueError(
            f"panoptic id {ids.max() - 1} does not fit a 24-bit PNG segment id "
            f"(label_divisor {info.label_divisor} is too large)"
        )
    return ids


def segments_info(ids: np.ndarray, info, category_ids=None) -> list[dict]:
    """COCO `segments_info` of a segment-id map, in increasing id order.

    Args:
      ids: `[h, w]` segment ids of `segment_ids` (0 = void).
      info: The `DatasetInfo` (`label_divisor`, `category_ids`).
      category_ids: Category id of each model class, instead of
        `info.category_ids` (e.g. the Cityscapes label ids).

    Returns:
      One dict per segment: `id`, `category_id`, `iscrowd` 0, `area` (pixels)
      and `bbox` [x, y, width, height] (integers).
    """
    flat = ids.reshape(-1)
    values, inverse, areas = np.unique(flat, return_inverse=True, return_counts=True)
    width = ids.shape[1]
    rows, cols = np.divmod(np.arange(flat.size), width)
    # Pixels grouped by segment: min and max of rows and columns per group.
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(areas)[:-1]])
    y0 = np.minimum.reduceat(rows[order], starts)
    y1 = np.maximum.reduceat(rows[order], starts)
    x0 = np.minimum.reduceat(cols[order], starts)
    x1 = np.maximum.reduceat(cols[order], starts)
    category_ids = info.category_ids if category_ids is None else category_ids
    segments = []
    for i, segment in enumerate(values):
        if segment == 0:
            continue
        model_class = int(segment - 1) // info.label_divisor
        segments.append(
            {
                "id": int(segment),
                "category_id": int(category_ids[model_class]),
                "iscrowd": 0,
                "area": int(areas[i]),
                "bbox": [int(x0[i]), int(y0[i]), int(x1[i] - x0[i] + 1), int(y1[i] - y0[i] + 1)],
            }
        )
    return segments


def categories(info, category_ids=None) -> list[dict]:
    """The COCO panoptic `categories` list of a dataset's classes (`info.category_ids`)."""
    category_ids = info.category_ids if category_ids is None else category_ids
    return [
        {
            "id": int(category_ids[c]),
            "name": info.class_names[c],
            "isthing": int(info.is_thing[c]),
            "color": list(info.colors[c]),
        }
        for c in range(info.num_classes)
    ]


def image_id(stem: str):
    """COCO's integer id for numeric file stems (`000000000139` -> 139), else the stem."""
    return int(stem) if stem.isdigit() else stem
