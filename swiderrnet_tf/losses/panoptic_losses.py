"""Panoptic-DeepLab losses: bootstrapped cross-entropy, center MSE, offset L1.

Panoptic-DeepLab (Cheng et al., CVPR 2020), as trained in the SWideRNet paper
(Chen, Wang, Qiao 2020, section 4), optimises

    1 * bootstrapped softmax cross-entropy (hardest 20% of pixels per image)
    + 200 * center heatmap MSE + 0.01 * offset L1.

The reduction follows google-research/deeplab2 (`model/loss/base_loss.py`,
`compute_average_top_k_loss`, and the trainer's batch mean) exactly:

  1. per-pixel loss times per-pixel weight, flattened to `[batch, pixels]`;
  2. when `top_k_percent < 1`, keep the `round(top_k_percent * pixels)` largest
     *weighted* losses of each image (round half to even, as `tf.math.round`);
  3. per image: sum of the kept values divided by the number of kept values that
     are non-zero (0 when there are none);
  4. mean over the batch.

So the normaliser counts non-zero weighted losses among the kept pixels, not
non-zero weights over the whole image: a weighted pixel whose loss is exactly 0
(e.g. a center prediction equal to its target) is not counted. The offset loss
averages |error| over its two channels before weighting, so each pixel counts
once. The center prediction's channel axis is dropped before the squared error,
as deeplab2 does before computing its losses.

All arithmetic is float32 whatever the prediction dtype (bfloat16 and float16
outputs of mixed-precision models are cast first); every loss is float32.

Deliberate deviations from deeplab2:
  1. The top-k selection is one batched `top_k` over `[batch, pixels]` instead
     of a `map_fn` over images; the kept values are the same.
  2. At least one pixel per image is kept, where deeplab2 would keep none when
     `top_k_percent * pixels < 0.5` and return 0.
  3. Labels outside `[0, num_classes)`, not only `ignore_label`, get weight 0.
     deeplab2's one-hot encoding gives them a zero loss, hence the same result,
     but here they never reach the gather.
  4. The cross-entropy is `logsumexp(logits) - logits[label]` instead of a
     one-hot product with a full log-softmax, which saves a
     `[batch, height, width, num_classes]` temporary.
  5. deeplab2 replaces a NaN batch mean by 0. Here the zero-count guard is the
     only division, so a NaN can only come from the network, and it is left to
     surface rather than be hidden for the rest of a long run.
"""

import numpy as np
from keras import ops

from swiderrnet_tf import common
from swiderrnet_tf.data import dataset_info

_FLOAT = "float32"


def _validate_top_k_percent(top_k_percent: float) -> None:
    if not 0.0 < top_k_percent <= 1.0:
        raise ValueError(f"top_k_percent must lie in (0, 1], got {top_k_percent}")


def _num_kept(num_pixels, top_k_percent: float):
    """Number of pixels kept per image: `round(top_k_percent * num_pixels)`, at least 1.

    Args:
      num_pixels: Python int (static shape) or scalar int tensor (dynamic shape).
      top_k_percent: Fraction of pixels to keep, in (0, 1].

    Returns:
      A Python int, or a scalar int32 tensor for a dynamic `num_pixels`.
    """
    if isinstance(num_pixels, int):
        # float32 product and half-to-even rounding, like deeplab2's tf.math.round.
        kept = int(np.round(np.float32(top_k_percent) * np.float32(num_pixels)))
        return max(kept, 1)
    kept = ops.round(ops.multiply(top_k_percent, ops.cast(num_pixels, _FLOAT)))
    return ops.maximum(ops.cast(kept, "int32"), 1)


def average_top_k_loss(weighted_loss, top_k_percent: float = 1.0):
    """Per-image mean of the largest weighted losses, normalised by their non-zero count.

    Args:
      weighted_loss: `[batch, ...]` per-pixel loss already multiplied by its weight.
      top_k_percent: Fraction of pixels per image to keep, in (0, 1]; 1 keeps all.

    Returns:
      `[batch]` float32: sum of the kept values divided by the number of kept
      values that are non-zero, 0 for an image without any.

    Raises:
      ValueError: If `top_k_percent` is outside (0, 1].
    """
    _validate_top_k_percent(top_k_percent)
    weighted_loss = ops.cast(weighted_loss, _FLOAT)
    batch = ops.shape(weighted_loss)[0]
    flat = ops.reshape(weighted_loss, (batch, -1))  # [b, pixels]
    if top_k_percent < 1.0:
        kept = _num_kept(ops.shape(flat)[1], top_k_percent)
        flat, _ = ops.top_k(flat, kept, sorted=False)  # [b, kept]
    total = ops.sum(flat, axis=1)
    count = ops.sum(ops.cast(ops.not_equal(flat, 0.0), _FLOAT), axis=1)
    # A zero count means every kept value is 0, so the sum is 0 too: dividing by
    # max(count, 1) returns 0 there and keeps the gradient finite.
    return total / ops.maximum(count, 1.0)


def _check_rank(where: str, tensor, rank: int, layout: str) -> None:
    if len(tensor.shape) != rank:
        raise ValueError(f"{where} has shape {tuple(tensor.shape)}; expected {layout}")


def _check_same_shape(where: str, tensor, reference_where: str, reference) -> None:
    """Raises when two static shapes differ in rank or in a dimension known on both sides."""
    same = len(tensor.shape) == len(reference.shape) and all(
        size is None or reference_size is None or size == reference_size
        for size, reference_size in zip(tensor.shape, reference.shape, strict=True)
    )
    if not same:
        raise ValueError(
            f"{where} has shape {tuple(tensor.shape)} but {reference_where} has "
            f"{tuple(reference.shape)}; predictions and targets must share the "
            "input resolution"
        )


def softmax_cross_entropy(
    labels,
    logits,
    weights,
    *,
    top_k_percent: float = 1.0,
    ignore_label: int = dataset_info.IGNORE_LABEL,
):
    """Bootstrapped, weighted softmax cross-entropy per image.

    Args:
      labels: `[batch, height, width]` int class ids; `ignore_label` and any id
        outside `[0, num_classes)` count as void.
      logits: `[batch, height, width, num_classes]` any float dtype.
      weights: `[batch, height, width]` per-pixel weights.
      top_k_percent: Fraction of hardest pixels per image to keep, in (0, 1].
      ignore_label: Void label.

    Returns:
      `[batch]` float32 loss per image.

    Raises:
      ValueError: On a bad `top_k_percent` or mismatched static shapes.
    """
    _check_rank("logits", logits, 4, "[batch, height, width, num_classes]")
    _check_rank("labels", labels, 3, "[batch, height, width]")
    _check_same_shape("labels", labels, "logits[..., 0]", logits[..., 0])
    _check_same_shape("weights", weights, "labels", labels)
    num_classes = logits.shape[-1]
    logits = ops.cast(logits, _FLOAT)
    labels = ops.cast(labels, "int32")
    valid = ops.logical_and(
        ops.logical_and(ops.greater_equal(labels, 0), ops.less(labels, num_classes)),
        ops.not_equal(labels, ignore_label),
    )
    # Void pixels gather class 0; their weight is 0, so the value never counts.
    safe_labels = ops.where(valid, labels, 0)
    label_logits = ops.take_along_axis(logits, safe_labels[..., None], axis=-1)[..., 0]
    pixel_loss = ops.logsumexp(logits, axis=-1) - label_logits  # [b, h, w]
    weights = ops.where(valid, ops.cast(weights, _FLOAT), 0.0)
    return average_top_k_loss(pixel_loss * weights, top_k_percent)


def center_mse(center_target, center_heatmap, weights):
    """Weighted squared error of the center heatmap per image.

    Args:
      center_target: `[batch, height, width]` target heatmap.
      center_heatmap: `[batch, height, width, 1]` predicted heatmap, any float dtype.
      weights: `[batch, height, width]` per-pixel weights.

    Returns:
      `[batch]` float32 loss per image.

    Raises:
      ValueError: On mismatched static shapes.
    """
    _check_rank("center_heatmap", center_heatmap, 4, "[batch, height, width, 1]")
    if center_heatmap.shape[-1] != 1:
        raise ValueError(
            f"center_heatmap has shape {tuple(center_heatmap.shape)}; "
            "expected [batch, height, width, 1]"
        )
    prediction = ops.cast(center_heatmap[..., 0], _FLOAT)  # [b, h, w]
    _check_rank("center_target", center_target, 3, "[batch, height, width]")
    _check_same_shape("center_target", center_target, "center_heatmap[..., 0]", prediction)
    _check_same_shape("center_weights", weights, "center_target", center_target)
    error = ops.square(ops.cast(center_target, _FLOAT) - prediction)
    return average_top_k_loss(error * ops.cast(weights, _FLOAT))


def offset_l1(offset_target, offsets, weights):
    """Weighted L1 error of the offsets, averaged over (dy, dx), per image.

    Args:
      offset_target: `[batch, height, width, 2]` target (dy, dx).
      offsets: `[batch, height, width, 2]` predicted (dy, dx), any float dtype.
      weights: `[batch, height, width]` per-pixel weights.

    Returns:
      `[batch]` float32 loss per image.

    Raises:
      ValueError: On mismatched static shapes.
    """
    _check_rank("offsets", offsets, 4, "[batch, height, width, 2]")
    _check_same_shape("offset_target", offset_target, "offsets", offsets)
    _check_same_shape("offset_weights", weights, "offsets[..., 0]", offsets[..., 0])
    error = ops.abs(ops.cast(offset_target, _FLOAT) - ops.cast(offsets, _FLOAT))
    pixel_loss = ops.mean(error, axis=-1)  # [b, h, w]
    return average_top_k_loss(pixel_loss * ops.cast(weights, _FLOAT))


class PanopticLoss:
    """Weighted sum of the three Panoptic-DeepLab losses, averaged over the batch.

    Example:
      loss_fn = PanopticLoss(top_k_percent=0.2)
      losses = loss_fn(targets, outputs)
      losses[common.TOTAL_LOSS]  # scalar float32
    """

    def __init__(
        self,
        *,
        semantic_weight: float = 1.0,
        center_weight: float = 200.0,
        offset_weight: float = 0.01,
        top_k_percent: float = 0.2,
        ignore_label: int = dataset_info.IGNORE_LABEL,
    ):
        """Stores the loss weights.

        Args:
          semantic_weight: Weight of the bootstrapped cross-entropy.
          center_weight: Weight of the center heatmap MSE.
          offset_weight: Weight of the offset L1.
          top_k_percent: Fraction of hardest pixels per image kept by the
            cross-entropy, in (0, 1].
          ignore_label: Void semantic label.

        Raises:
          ValueError: On a negative weight or a bad `top_k_percent`.
        """
        for name, value in (
            ("semantic_weight", semantic_weight),
            ("center_weight", center_weight),
            ("offset_weight", offset_weight),
        ):
            if value < 0:
                raise ValueError(f"PanopticLoss: {name} must be >= 0, got {value}")
        _validate_top_k_percent(top_k_percent)
        self.semantic_weight = semantic_weight
        self.center_weight = center_weight
        self.offset_weight = offset_weight
        self.top_k_percent = top_k_percent
        self.ignore_label = ignore_label

    def get_config(self) -> dict:
        """Constructor arguments, for logs and for `PanopticLoss(**config)`."""
        return {
            "semantic_weight": self.semantic_weight,
            "center_weight": self.center_weight,
            "offset_weight": self.offset_weight,
            "top_k_percent": self.top_k_percent,
            "ignore_label": self.ignore_label,
        }

    def __call__(self, targets: dict, outputs: dict) -> dict:
        """Computes the weighted losses.

        Args:
          targets: Dict with `common.SEMANTIC_LABEL`, `SEMANTIC_WEIGHTS`,
            `CENTER_TARGET`, `CENTER_WEIGHTS` (`[batch, height, width]`),
            `OFFSET_TARGET` (`[batch, height, width, 2]`) and `OFFSET_WEIGHTS`
            (`[batch, height, width]`). Other keys are ignored.
          outputs: Dict with `common.SEMANTIC_LOGITS` (`[batch, height, width,
            num_classes]`), `CENTER_HEATMAP` (`[batch, height, width, 1]`) and
            `OFFSETS` (`[batch, height, width, 2]`), at the targets' resolution.

        Returns:
          Dict of scalar float32 losses, already weighted:
          `common.SEMANTIC_LOSS`, `CENTER_LOSS`, `OFFSET_LOSS` and their sum
          `TOTAL_LOSS`.

        Raises:
          KeyError: If a required key is missing, naming it.
          ValueError: On mismatched static shapes.
        """
        _require(targets, "targets", _TARGET_KEYS)
        _require(outputs, "outputs", _OUTPUT_KEYS)
        semantic = softmax_cross_entropy(
            targets[common.SEMANTIC_LABEL],
            outputs[common.SEMANTIC_LOGITS],
            targets[common.SEMANTIC_WEIGHTS],
            top_k_percent=self.top_k_percent,
            ignore_label=self.ignore_label,
        )
        center = center_mse(
            targets[common.CENTER_TARGET],
            outputs[common.CENTER_HEATMAP],
            targets[common.CENTER_WEIGHTS],
        )
        offset = offset_l1(
            targets[common.OFFSET_TARGET],
            outputs[common.OFFSETS],
            targets[common.OFFSET_WEIGHTS],
        )
        losses = {
            common.SEMANTIC_LOSS: self.semantic_weight * ops.mean(semantic),
            common.CENTER_LOSS: self.center_weight * ops.mean(center),
            common.OFFSET_LOSS: self.offset_weight * ops.mean(offset),
        }
        losses[common.TOTAL_LOSS] = (
            losses[common.SEMANTIC_LOSS] + losses[common.CENTER_LOSS] + losses[common.OFFSET_LOSS]
        )
        return losses


_TARGET_KEYS = (
    common.SEMANTIC_LABEL,
    common.SEMANTIC_WEIGHTS,
    common.CENTER_TARGET,
    common.CENTER_WEIGHTS,
    common.OFFSET_TARGET,
    common.OFFSET_WEIGHTS,
)
_OUTPUT_KEYS = (common.SEMANTIC_LOGITS, common.CENTER_HEATMAP, common.OFFSETS)


def _require(tensors: dict, where: str, keys: tuple[str, ...]) -> None:
    missing = [key for key in keys if key not in tensors]
    if missing:
        raise KeyError(
            f"PanopticLoss: {where} lacks {missing}; it has {sorted(tensors)}, "
            f"expected all of {list(keys)}"
        )
