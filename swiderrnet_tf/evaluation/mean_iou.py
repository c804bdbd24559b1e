"""Mean IoU and pixel accuracy of semantic segmentation, streaming over images.

A confusion matrix over the model classes, as deeplab2's evaluator builds with
`tf.keras.metrics.MeanIoU` on pixels whose ground truth is not void: per class
IoU = TP / (TP + FP + FN); the mean leaves out classes absent from both ground
truth and prediction; pixel accuracy = correct pixels / non-void pixels.

Deliberate deviations:
  1. A predicted label outside the model classes (e.g. void from a panoptic
     map) counts as a miss of the ground-truth class and as nobody's false
     positive; deeplab2 would fail on it.
  2. A mean over no classes is NaN.
"""

import numpy as np

from swiderrnet_tf.evaluation import inputs


class MeanIoU:
    """Streaming confusion matrix `[num_classes, num_classes + 1]`.

    Rows are ground-truth classes, columns predicted classes; the last column
    collects predictions outside the model classes.
    """

    def __init__(self, num_classes: int, ignored_label: int):
        """Creates the metric.

        Args:
          num_classes: Number of model classes.
          ignored_label: Ground-truth class id of void pixels, which are skipped.
        """
        if num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if 0 <= ignored_label < num_classes:
            raise ValueError(
                f"ignored_label {ignored_label} collides with model classes 0..{num_classes - 1}"
            )
        self.num_classes = num_classes
        self.ignored_label = ignored_label
        self.reset_state()

    def reset_state(self) -> None:
        """Forgets every pixel seen so far."""
        self.confusion = np.zeros((self.num_classes, self.num_classes + 1), np.int64)

    def update_state(self, gt_semantic, pred_semantic) -> None:
        """Adds images to the confusion matrix.

        Args:
          gt_semantic: Ground-truth classes, `[height, width]` or
            `[batch, height, width]`; `ignored_label` marks void.
          pred_semantic: Predicted classes, same shape.

        Raises:
          ValueError: On mismatched shapes or ground-truth classes that are
            neither model classes nor void.
        """
        gt = inputs.label_batch(gt_semantic, "ground-truth semantic").ravel()
        pred = inputs.label_batch(pred_semantic, "predicted semantic").ravel()
        if gt.shape != pred.shape:
            raise ValueError(
                f"ground-truth vs predicted semantic: {gt.size} vs {pred.size} pixels "
                "(expected the same [batch, height, width])"
            )
        keep = gt != self.ignored_label
        gt, pred = gt[keep], pred[keep]
        bad = (gt < 0) | (gt >= self.num_classes)
        if np.any(bad):
            raise ValueError(
                f"ground-truth semantic classes {np.unique(gt[bad])[:5].tolist()} are outside "
                f"0..{self.num_classes - 1} and not void ({self.ignored_label})"
            )
        pred = np.where((pred < 0) | (pred >= self.num_classes), self.num_classes, pred)
        columns = self.num_classes + 1
        self.confusion += np.bincount(
            gt * columns + pred, minlength=self.num_classes * columns
        ).reshape(self.num_classes, columns)

    def per_class_iou(self) -> np.ndarray:
        """IoU per class, `[num_classes]`; NaN for classes never seen nor predicted."""
        tp = np.diag(self.confusion[:, : self.num_classes]).astype(np.float64)
        gt_total = self.confusion.sum(axis=1)
        pred_total = self.confusion[:, : self.num_classes].sum(axis=0)
        union = gt_total + pred_total - tp
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)

    def result(self) -> dict:
        """Returns `miou`, `pixel_accuracy` and `per_class_iou` (a list)."""
        iou = self.per_class_iou()
        total = self.confusion.sum()
        correct = np.trace(self.confusion[:, : self.num_classes])
        return {
            "miou": float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan"),
            "pixel_accuracy": float(correct / total) if total else float("nan"),
            "per_class_iou": [float(v) for v in iou],
        }
