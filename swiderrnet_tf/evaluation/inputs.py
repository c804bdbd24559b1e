"""Turns label maps and score maps from any framework into numpy batches.

The metrics accept numpy arrays, TensorFlow tensors and JAX arrays alike: all of
them convert with `np.asarray`, so no framework is imported here.
"""

import numpy as np


def label_batch(labels, what: str) -> np.ndarray:
    """Returns integer label maps as an int64 batch.

    Args:
      labels: Integer maps, `[height, width]` or `[batch, height, width]`.
      what: What the maps are, for error messages (e.g. `predicted panoptic`).

    Returns:
      `[batch, height, width]` int64 array.

    Raises:
      ValueError: If the maps are not integers of rank 2 or 3.
    """
    array = np.asarray(labels)
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim != 3:
        raise ValueError(
            f"{what}: expected [height, width] or [batch, height, width], got shape {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{what}: expected integer ids, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def float_batch(values, what: str, rank: int) -> np.ndarray:
    """Returns per-pixel float maps as a float64 batch.

    Args:
      values: Float maps of rank `rank` (one image) or `rank + 1` (a batch).
      what: What the maps are, for error messages.
      rank: Rank of one image's map: 2 for `[height, width]`, 3 for
        `[height, width, channels]`.

    Returns:
      Float64 array with a leading batch dimension.

    Raises:
      ValueError: If the rank is neither `rank` nor `rank + 1`.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == rank:
        array = array[np.newaxis]
    if array.ndim != rank + 1:
        raise ValueError(
            f"{what}: expected rank {rank} (one image) or {rank + 1} (a batch), "
            f"got shape {array.shape}"
        )
    return array


def check_same_shape(first: np.ndarray, second: np.ndarray, what: str) -> None:
    """Raises a ValueError naming `what` unless the two batches' shapes agree."""
    if first.shape[:3] != second.shape[:3]:
        raise ValueError(
            f"{what}: shapes differ, {first.shape} vs {second.shape} "
            "(expected the same [batch, height, width])"
        )
