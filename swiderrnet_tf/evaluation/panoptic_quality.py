"""Panoptic quality (PQ, SQ, RQ), streaming over images.

Kirillov et al., "Panoptic Segmentation", CVPR 2019, with the matching rules of
cocodataset/panopticapi `evaluation.py` (`pq_compute`) and the streaming
interface of deeplab2 `evaluation/panoptic_quality.py`:
  * a ground-truth and a predicted segment of the same class match when their
    IoU is above 0.5; the union leaves out the predicted pixels that lie on
    ground-truth void;
  * an unmatched predicted segment is not a false positive when more than half
    of it lies on ground-truth void or on a crowd region of its own class;
  * crowd ground-truth segments are never matched and never false negatives;
  * per class PQ = sum(IoU of matches) / (TP + FN/2 + FP/2), SQ = sum(IoU) / TP,
    RQ = TP / (TP + FN/2 + FP/2); the means leave out classes with no TP, FN or
    FP.

Ids are panoptic ids in model space: `class * max_instances_per_category +
instance`, classes `0..num_classes-1`, void = `ignored_label`.

Deliberate deviations:
  1. Void is every id whose class is `ignored_label`, whatever its instance
     part (panopticapi: the single id 0; deeplab2: `ignored_label * divisor`
     for void overlap, but the whole class for skipping segments). Predicted
     void pixels are not a segment, as in both.
  2. Crowd regions follow panopticapi (thing class, instance id 0) only when
     `is_thing` is given; without it every id is an ordinary segment, as in
     deeplab2, whose PQ is known to read higher than panopticapi's on COCO.
  3. The per-image matching is vectorised with numpy over the unique
     (ground truth, prediction) pairs instead of Python loops over segments;
     the result is identical (tested against a per-segment reference).
  4. Ids outside the model classes raise an error instead of being counted.
  5. A mean over no classes (e.g. PQ of things on a stuff-only set) is NaN,
     where panopticapi divides by zero.
"""

import numpy as np

from swiderrnet_tf.evaluation import inputs

_GROUPS = (("", None), ("_thing", True), ("_stuff", False))


class PanopticQuality:
    """Accumulates TP, FP, FN and matched IoU per class over images.

    Usage:
      pq = PanopticQuality(num_classes=19, ignored_label=255,
                           max_instances_per_category=1000, offset=256**3,
                           is_thing=info.is_thing)
      for gt, pred in batches:
          pq.update_state(gt, pred)  # [batch, height, width] panoptic ids
      pq.result()["pq"]
    """

    def __init__(
        self,
        num_classes: int,
        ignored_label: int,
        max_instances_per_category: int,
        offset: int,
        is_thing=None,
    ):
        """Creates the metric with empty statistics.

        Args:
          num_classes: Number of model classes (void excluded).
          ignored_label: Class id of void; not a model class.
          max_instances_per_category: Label divisor of the panoptic ids.
          offset: Multiplier that makes `gt_id * offset + pred_id` unique per
            pair; must exceed every valid panoptic id.
          is_thing: Optional sequence of `num_classes` booleans. When given,
            results include thing and stuff means and a thing-class ground
            truth segment with instance id 0 is a crowd region.

        Raises:
          ValueError: On inconsistent arguments.
        """
        if num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if 0 <= ignored_label < num_classes:
            raise ValueError(
                f"ignored_label {ignored_label} collides with model classes 0..{num_classes - 1}"
            )
        if max_instances_per_category <= 0:
            raise ValueError(
                f"max_instances_per_category must be positive, got {max_instances_per_category}"
            )
        largest_id = (max(num_classes - 1, ignored_label) + 1) * max_instances_per_category - 1
        if offset <= largest_id:
            raise ValueError(
                f"offset {offset} must exceed the largest panoptic id {largest_id} "
                f"(class {max(num_classes - 1, ignored_label)}, "
                f"label divisor {max_instances_per_category})"
            )
        if (largest_id + 1) * offset >= 2**63:
            raise ValueError(f"offset {offset} overflows int64 pair ids; use a smaller offset")
        if is_thing is not None:
            is_thing = np.asarray(is_thing, dtype=bool)
            if is_thing.shape != (num_classes,):
                raise ValueError(
                    f"is_thing has shape {is_thing.shape}, expected ({num_classes},) booleans"
                )
        self.num_classes = num_classes
        self.ignored_label = ignored_label
        self.max_instances_per_category = max_instances_per_category
        self.offset = offset
        self.is_thing = is_thing
        self._largest_id = largest_id
        self.reset_state()

    def reset_state(self) -> None:
        """Forgets every image seen so far."""
        self.iou_sum = np.zeros(self.num_classes, np.float64)
        self.tp = np.zeros(self.num_classes, np.int64)
        self.fp = np.zeros(self.num_classes, np.int64)
        self.fn = np.zeros(self.num_classes, np.int64)
        self.num_images = 0

    def update_state(self, gt_panoptic, pred_panoptic) -> None:
        """Adds images to the statistics.

        Args:
          gt_panoptic: Ground-truth panoptic ids, `[height, width]` or
            `[batch, height, width]`, numpy or framework tensor.
          pred_panoptic: Predicted panoptic ids, same shape.

        Raises:
          ValueError: On mismatched shapes or ids outside the model classes.
        """
        gt = inputs.label_batch(gt_panoptic, "ground-truth panoptic")
        pred = inputs.label_batch(pred_panoptic, "predicted panoptic")
        inputs.check_same_shape(gt, pred, "ground-truth vs predicted panoptic")
        for image in range(gt.shape[0]):
            self._add_image(gt[image].ravel(), pred[image].ravel(), image)
            self.num_images += 1

    def _segments(self, ids: np.ndarray, what: str, image: int) -> np.ndarray:
        """Returns the class of each id, after checking that it is valid."""
        classes = ids // self.max_instances_per_category
        bad = (classes >= self.num_classes) & (classes != self.ignored_label)
        if np.any(bad):
            raise ValueError(
                f"{what} panoptic ids {ids[bad][:5].tolist()} (image {image} of the batch) "
                f"have classes outside 0..{self.num_classes - 1} and are not void "
                f"(class {self.ignored_label}, label divisor {self.max_instances_per_category})"
            )
        return classes

    def _add_image(self, gt: np.ndarray, pred: np.ndarray, image: int) -> None:
        """Matches the segments of one image; `gt`, `pred` are `[pixels]` ids."""
        for ids, what in ((gt, "ground-truth"), (pred, "predicted")):
            # Checked before pairing so that no id can overflow the pair ids.
            if ids.size and (ids.min() < 0 or ids.max() > self._largest_id):
                raise ValueError(
                    f"{what} panoptic ids of image {image} of the batch span "
                    f"{ids.min()}..{ids.max()}, expected 0..{self._largest_id}"
                )
        # One sort of the whole image; everything else works on the few pairs.
        pair_ids, inter = np.unique(gt * self.offset + pred, return_counts=True)
        gt_ids, gt_of_pair = np.unique(pair_ids // self.offset, return_inverse=True)
        pred_ids, pred_of_pair = np.unique(pair_ids % self.offset, return_inverse=True)
        gt_area = np.bincount(gt_of_pair, weights=inter).astype(np.int64)
        pred_area = np.bincount(pred_of_pair, weights=inter).astype(np.int64)
        gt_class = self._segments(gt_ids, "ground-truth", image)
        pred_class = self._segments(pred_ids, "predicted", image)

        gt_void = gt_class == self.ignored_label
        pred_void = pred_class == self.ignored_label
        gt_crowd = np.zeros_like(gt_void)
        if self.is_thing is not None:
            thing = self.is_thing[np.where(gt_void, 0, gt_class)] & ~gt_void
            gt_crowd = thing & (gt_ids % self.max_instances_per_category == 0)

        pair_gt_class = gt_class[gt_of_pair]
        same_class = pair_gt_class == pred_class[pred_of_pair]
        on_void = gt_void[gt_of_pair]
        on_own_crowd = gt_crowd[gt_of_pair] & same_class
        void_overlap = np.bincount(pred_of_pair, weights=inter * on_void, minlength=len(pred_ids))
        crowd_overlap = np.bincount(
            pred_of_pair, weights=inter * on_own_crowd, minlength=len(pred_ids)
        )

        union = gt_area[gt_of_pair] + pred_area[pred_of_pair] - inter
        union -= void_overlap[pred_of_pair].astype(np.int64)
        # IoU > 0.5 in integers, so no rounding decides a match.
        match = same_class & ~on_void & ~gt_crowd[gt_of_pair] & (2 * inter > union)
        matched_class = pair_gt_class[match]
        self.tp += np.bincount(matched_class, minlength=self.num_classes)
        self.iou_sum += np.bincount(
            matched_class, weights=inter[match] / union[match], minlength=self.num_classes
        )

        gt_matched = np.zeros(len(gt_ids), bool)
        gt_matched[gt_of_pair[match]] = True
        pred_matched = np.zeros(len(pred_ids), bool)
        pred_matched[pred_of_pair[match]] = True

        missed = ~gt_matched & ~gt_void & ~gt_crowd
        self.fn += np.bincount(gt_class[missed], minlength=self.num_classes)
        excused = 2 * (void_overlap + crowd_overlap) > pred_area
        false_positive = ~pred_matched & ~pred_void & ~excused
        self.fp += np.bincount(pred_class[false_positive], minlength=self.num_classes)

    def per_class(self) -> dict[int, dict[str, float]]:
        """Per model class: pq, sq, rq, tp, fp, fn, iou_sum (0 when not counted)."""
        tp = self.tp.astype(np.float64)
        denominator = tp + 0.5 * self.fn + 0.5 * self.fp
        counted = denominator > 0
        safe = np.where(counted, denominator, 1.0)
        pq = np.where(counted, self.iou_sum / safe, 0.0)
        sq = np.where(self.tp > 0, self.iou_sum / np.maximum(tp, 1.0), 0.0)
        rq = np.where(counted, tp / safe, 0.0)
        return {
            c: {
                "pq": float(pq[c]),
                "sq": float(sq[c]),
                "rq": float(rq[c]),
                "tp": int(self.tp[c]),
                "fp": int(self.fp[c]),
                "fn": int(self.fn[c]),
                "iou_sum": float(self.iou_sum[c]),
            }
            for c in range(self.num_classes)
        }

    def result(self) -> dict:
        """Returns the class means and the per-class values.

        Returns:
          Dict with `pq`, `sq`, `rq` and `n` (classes counted); with `is_thing`
          also the same keys suffixed `_thing` and `_stuff`; and `per_class`,
          the output of `per_class()`. Means over no class are NaN.
        """
        per_class = self.per_class()
        counted = (self.tp + self.fp + self.fn) > 0
        results = {}
        for suffix, thing in _GROUPS:
            if thing is not None and self.is_thing is None:
                continue
            members = counted if thing is None else counted & (self.is_thing == thing)
            chosen = np.flatnonzero(members)
            for name in ("pq", "sq", "rq"):
                values = [per_class[c][name] for c in chosen]
                results[name + suffix] = float(np.mean(values)) if values else float("nan")
            results["n" + suffix] = len(chosen)
        results["per_class"] = per_class
        return results
