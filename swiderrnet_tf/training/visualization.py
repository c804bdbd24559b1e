"""Panoptic maps as coloured overlays, for TensorBoard image summaries.

Each segment takes its class colour from the `DatasetInfo`; thing instances of
one class are told apart by shading the colour (instance `n` gets a brightness
factor in [0.55, 1.0] that cycles with `n`), segment boundaries are drawn in
white and void pixels keep the image. Plain numpy on the host.
"""

import numpy as np

from swiderrnet_tf.data import dataset_info as dataset_info_lib

_SHADES = np.array([1.0, 0.7, 0.85, 0.55, 0.95, 0.65, 0.8, 0.6])


def colorize(panoptic: np.ndarray, info: dataset_info_lib.DatasetInfo) -> tuple:
    """Colours of a panoptic map.

    Args:
      panoptic: `[height, width]` int panoptic ids in model space.
      info: The dataset (colours, label divisor, void).

    Returns:
      `(colors, void)`: `[height, width, 3]` float32 RGB in [0, 255] and the
      `[height, width]` bool void mask.
    """
    panoptic = np.asarray(panoptic, dtype=np.int64)
    classes = panoptic // info.label_divisor
    instances = panoptic % info.label_divisor
    void = (classes < 0) | (classes >= info.num_classes)
    table = np.asarray(info.colors, dtype=np.float32)
    colors = table[np.clip(classes, 0, info.num_classes - 1)]
    shade = np.where(instances > 0, _SHADES[instances % len(_SHADES)], 1.0)
    colors *= shade[..., None].astype(np.float32)
    colors[void] = 0.0
    return colors, void


def boundaries(panoptic: np.ndarray) -> np.ndarray:
    """`[height, width]` bool: pixels whose right or lower neighbour is another segment."""
    edge = np.zeros(panoptic.shape, dtype=bool)
    edge[:, :-1] |= panoptic[:, :-1] != panoptic[:, 1:]
    edge[:-1, :] |= panoptic[:-1, :] != panoptic[1:, :]
    return edge


def overlay(image: np.ndarray, panoptic: np.ndarray, info, alpha: float = 0.5) -> np.ndarray:
    """Blends the coloured panoptic map over the image.

    Args:
      image: `[height, width, 3]` float or uint8 in [0, 255].
      panoptic: `[height, width]` int panoptic ids.
      info: The dataset.
      alpha: Weight of the colours.

    Returns:
      `[height, width, 3]` uint8.
    """
    image = np.asarray(image, dtype=np.float32)
    colors, void = colorize(panoptic, info)
    blended = np.where(void[..., None], image, (1.0 - alpha) * image + alpha * colors)
    blended[boundaries(np.asarray(panoptic))] = 255.0
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def comparison_panels(images, ground_truth, predictions, info) -> np.ndarray:
    """Image | ground truth | prediction, side by side, one row per image.

    Args:
      images: `[batch, height, width, 3]` in [0, 255].
      ground_truth, predictions: `[batch, height, width]` panoptic ids.
      info: The dataset.

    Returns:
      `[batch, height, 3 * width, 3]` uint8.
    """
    rows = []
    for image, truth, prediction in zip(images, ground_truth, predictions, strict=True):
        plain = np.clip(np.round(np.asarray(image, dtype=np.float32)), 0, 255).astype(np.uint8)
        rows.append(
            np.concatenate(
                [plain, overlay(image, truth, info), overlay(image, prediction, info)], axis=1
            )
        )
    return np.stack(rows)
