"""Coloured overlays of panoptic maps: predict's overlays and TensorBoard's images.

Stuff segments take their class colour; each instance of a thing class takes
its class colour shifted by a pseudo-random offset of its instance id, so that
touching instances of one class differ; segment borders are drawn in white;
void pixels show the image unchanged. The colours come from a `DatasetInfo`
(its `colors`, `label_divisor`, `num_classes`). Plain numpy on the host.
"""

import numpy as np


def segment_colors(panoptic: np.ndarray, info) -> np.ndarray:
    """`[h, w]` panoptic ids -> `[h, w, 3]` uint8 colours (void black).

    Args:
      panoptic: Panoptic ids, `class * label_divisor + instance`.
      info: The `DatasetInfo` (`label_divisor`, `colors`, `num_classes`).

    Returns:
      The colour image.
    """
    panoptic = np.asarray(panoptic, np.int64)
    classes, instances = np.divmod(panoptic, info.label_divisor)
    valid = (classes >= 0) & (classes < info.num_classes)
    palette = np.asarray(info.colors, np.int64)  # [classes, 3]
    colors = palette[np.where(valid, classes, 0)]
    # Instances 1, 2, ... get distinct, reproducible shifts of their class colour.
    shift = (instances[..., None] * np.array([37, 91, 53])) % 96 - 48
    colors = np.where((instances > 0)[..., None], colors + shift, colors)
    colors = np.where(valid[..., None], np.clip(colors, 0, 255), 0)
    return colors.astype(np.uint8)


def segment_borders(panoptic: np.ndarray) -> np.ndarray:
    """`[h, w]` bool, True where a pixel's right or lower neighbour is another segment."""
    panoptic = np.asarray(panoptic)
    border = np.zeros(panoptic.shape, bool)
    border[:, :-1] |= panoptic[:, :-1] != panoptic[:, 1:]
    border[:-1, :] |= panoptic[:-1, :] != panoptic[1:, :]
    return border


def overlay(image: np.ndarray, panoptic: np.ndarray, info, alpha: float = 0.5) -> np.ndarray:
    """Blends segment colours over an image and marks segment borders.

    Args:
      image: `[h, w, 3]` RGB, uint8 or float in [0, 255].
      panoptic: `[h, w]` panoptic ids.
      info: The `DatasetInfo`.
      alpha: Weight of the segment colours (0: image only, 1: colours only).

    Returns:
      `[h, w, 3]` uint8.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    image = np.asarray(image, np.float32)
    if image.shape[:2] != np.shape(panoptic):
        raise ValueError(f"image {image.shape} and panoptic {np.shape(panoptic)} sizes differ")
    classes = np.asarray(panoptic) // info.label_divisor
    void = (classes < 0) | (classes >= info.num_classes)
    blended = (1.0 - alpha) * image + alpha * segment_colors(panoptic, info)
    blended = np.where(void[..., None], image, blended)
    blended[segment_borders(panoptic)] = 255.0
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def comparison_panels(images, ground_truth, predictions, info) -> np.ndarray:
    """Image | ground truth | prediction, side by side, one row per image.

    Args:
      images: `[batch, height, width, 3]` in [0, 255].
      ground_truth, predictions: `[batch, height, width]` panoptic ids.
      info: The `DatasetInfo`.

    Returns:
      `[batch, height, 3 * width, 3]` uint8.
    """
    rows = []
    for image, truth, prediction in zip(images, ground_truth, predictions, strict=True):
        plain = np.clip(np.round(np.asarray(image, np.float32)), 0, 255).astype(np.uint8)
        rows.append(
            np.concatenate(
                [plain, overlay(image, truth, info), overlay(image, prediction, info)], axis=1
            )
        )
    return np.stack(rows)
