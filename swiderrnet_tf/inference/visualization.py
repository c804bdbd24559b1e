"""Coloured overlays of panoptic predictions.

Stuff segments take their class colour; each instance of a thing class takes
its class colour shifted by a pseudo-random offset of its instance id, so that
touching instances of one class differ; segment borders are drawn in white;
void pixels show the image unchanged.
"""

import numpy as np


def segment_colors(panoptic: np.ndarray, metadata: dict) -> np.ndarray:
    """`[h, w]` panoptic ids -> `[h, w, 3]` uint8 colours (void black).

    Args:
      panoptic: Panoptic ids, `class * label_divisor + instance`.
      metadata: The SavedModel metadata (`label_divisor`, `colors`, `num_classes`).

    Returns:
      The colour image.
    """
    panoptic = np.asarray(panoptic, np.int64)
    divisor = metadata["label_divisor"]
    classes, instances = np.divmod(panoptic, divisor)
    valid = (classes >= 0) & (classes < metadata["num_classes"])
    palette = np.asarray(metadata["colors"], np.int64)  # [classes, 3]
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


def overlay(image: np.ndarray, panoptic: np.ndarray, metadata: dict, alpha: float = 0.5):
    """Blends segment colours over an image and marks segment borders.

    Args:
      image: `[h, w, 3]` uint8 RGB.
      panoptic: `[h, w]` panoptic ids.
      metadata: The SavedModel metadata.
      alpha: Weight of the segment colours (0: image only, 1: colours only).

    Returns:
      `[h, w, 3]` uint8.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    image = np.asarray(image, np.float32)
    if image.shape[:2] != np.shape(panoptic):
        raise ValueError(f"image {image.shape} and panoptic {np.shape(panoptic)} sizes differ")
    void = np.asarray(panoptic) // metadata["label_divisor"] >= metadata["num_classes"]
    blended = (1.0 - alpha) * image + alpha * segment_colors(panoptic, metadata)
    blended = np.where(void[..., None], image, blended)
    blended[segment_borders(panoptic)] = 255.0
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)
