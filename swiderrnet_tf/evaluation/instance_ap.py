"""COCO instance-segmentation AP of the thing segments of panoptic predictions.

As deeplab2 `evaluation/coco_instance_ap.py` (`PanopticInstanceAveragePrecision`):
every predicted thing segment is a detection whose score is the mean of the
instance score map over the segment, times the mean predicted probability of
the segment's class when semantic probabilities are given
(deeplab2 `utils/panoptic_instances.combined_instance_scores`); every
ground-truth thing segment is an annotation, crowd regions (thing class,
instance id 0) with `iscrowd=1`; pycocotools' COCOeval ('segm') does the rest.
Detections may also be given directly as (mask, class, score).

Deliberate deviations:
  1. Masks are stored as COCO run-length encodings as images arrive, not as
     dense masks, so a full validation set fits in memory.
  2. The categories are all thing classes, not only those seen so far, so the
     category list does not depend on the order of the images.
  3. Values COCOeval reports as -1 (no ground truth for the category or
     area range) are NaN here.
"""

import contextlib
import io

import numpy as np
from absl import logging
from pycocotools import coco as coco_api
from pycocotools import cocoeval
from pycocotools import mask as mask_api

from swiderrnet_tf.evaluation import inputs

# Names of COCOeval's 12 summary numbers, in its order.
STAT_NAMES = (
    "ap",
    "ap50",
    "ap75",
    "ap_small",
    "ap_medium",
    "ap_large",
    "ar1",
    "ar10",
    "ar100",
    "ar_small",
    "ar_medium",
    "ar_large",
)


def _encode(masks: np.ndarray) -> list[dict]:
    """COCO RLEs of `[num_masks, height, width]` boolean masks."""
    if not len(masks):
        return []
    # pycocotools wants [height, width, num_masks] in column-major order, which
    # is the memory layout of C-ordered [num_masks, width, height].
    by_column = np.ascontiguousarray(np.swapaxes(masks.astype(bool, copy=False), 1, 2))
    return mask_api.encode(by_column.view(np.uint8).transpose(2, 1, 0))


def _encode_segments(label_map: np.ndarray, ids: np.ndarray) -> list[dict]:
    """COCO RLEs of the segments `ids` of a `[height, width]` label map."""
    by_column = np.ascontiguousarray(label_map.T)
    masks = by_column[np.newaxis] == ids[:, np.newaxis, np.newaxis]  # [n, width, height]
    return mask_api.encode(masks.view(np.uint8).transpose(2, 1, 0)) if len(ids) else []


def segment_scores(
    pred_panoptic: np.ndarray,
    instance_scores: np.ndarray,
    label_divisor: int,
    semantic_probabilities: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Score of each predicted segment of one image.

    Args:
      pred_panoptic: `[height, width]` int panoptic ids.
      instance_scores: `[height, width]` float instance score map.
      label_divisor: Label divisor of the panoptic ids.
      semantic_probabilities: Optional `[height, width, num_classes]` class
        probabilities; when given, each score is multiplied by the mean
        probability of the segment's class over the segment.

    Returns:
      `(ids, scores)`: the unique ids of `pred_panoptic`, `[num_segments]`, and
      their scores, `[num_segments]` float64.
    """
    flat = pred_panoptic.ravel()
    # np.unique's return_inverse does a slow argsort; a search is much faster.
    ids = np.unique(flat)
    segment_of_pixel = np.searchsorted(ids, flat)
    area = np.bincount(segment_of_pixel, minlength=len(ids))
    scores = np.bincount(segment_of_pixel, weights=instance_scores.ravel(), minlength=len(ids))
    scores /= area
    if semantic_probabilities is not None:
        num_classes = semantic_probabilities.shape[-1]
        pixel_class = ids[segment_of_pixel] // label_divisor
        in_range = pixel_class < num_classes
        per_pixel = semantic_probabilities.reshape(-1, num_classes)
        pixel_probability = np.where(
            in_range, per_pixel[np.arange(len(per_pixel)), np.where(in_range, pixel_class, 0)], 0.0
        )
        scores *= np.bincount(segment_of_pixel, weights=pixel_probability, minlength=len(ids))
        scores /= area
    return ids, scores


class InstanceAP:
    """Collects ground-truth and predicted thing segments; COCOeval at the end."""

    def __init__(
        self, num_classes: int, thing_classes, label_divisor: int, ignored_label: int
    ) -> None:
        """Creates the metric.

        Args:
          num_classes: Number of model classes.
          thing_classes: Model class ids that have instances (non-empty).
          label_divisor: Label divisor of the panoptic ids.
          ignored_label: Class id of void.
        """
        self.thing_classes = tuple(sorted(int(c) for c in thing_classes))
        if not self.thing_classes:
            raise ValueError("instance AP needs at least one thing class, got none")
        bad = [c for c in self.thing_classes if not 0 <= c < num_classes]
        if bad:
            raise ValueError(f"thing_classes {bad} are outside 0..{num_classes - 1}")
        self.num_classes = num_classes
        self.label_divisor = label_divisor
        self.ignored_label = ignored_label
        self._is_thing = np.zeros(num_classes + 1, bool)
        self._is_thing[list(self.thing_classes)] = True
        self.reset_state()

    def reset_state(self) -> None:
        """Forgets every image seen so far."""
        self._images = []
        self._ground_truth = []
        self._detections = []
        self._stats = None

    def _thing_classes(self, classes: np.ndarray) -> np.ndarray:
        """Which of `classes` are thing classes (void and stuff are not)."""
        in_range = (classes >= 0) & (classes < self.num_classes)
        # Index -1 is the extra False entry of `_is_thing`.
        return self._is_thing[np.where(in_range, classes, -1)]

    def _thing_ids(self, ids: np.ndarray) -> np.ndarray:
        """Which of the panoptic `ids` belong to thing classes."""
        return self._thing_classes(ids // self.label_divisor)

    def update_state(
        self, gt_panoptic, pred_panoptic, instance_scores, semantic_probabilities=None
    ) -> None:
        """Adds images whose detections are the predicted thing segments.

        Args:
          gt_panoptic: Ground-truth panoptic ids, `[height, width]` or
            `[batch, height, width]`.
          pred_panoptic: Predicted panoptic ids, same shape.
          instance_scores: Per-pixel instance scores, same shape, float.
          semantic_probabilities: Optional `[(batch,) height, width,
            num_classes]` class probabilities (see `segment_scores`).
        """
        gt = inputs.label_batch(gt_panoptic, "ground-truth panoptic")
        pred = inputs.label_batch(pred_panoptic, "predicted panoptic")
        scores = inputs.float_batch(instance_scores, "instance scores", rank=2)
        inputs.check_same_shape(gt, pred, "ground-truth vs predicted panoptic")
        inputs.check_same_shape(gt, scores, "ground-truth panoptic vs instance scores")
        probabilities = None
        if semantic_probabilities is not None:
            probabilities = inputs.float_batch(
                semantic_probabilities, "semantic probabilities", rank=3
            )
            inputs.check_same_shape(gt, probabilities, "panoptic vs semantic probabilities")
        for image in range(gt.shape[0]):
            ids, image_scores = segment_scores(
                pred[image],
                scores[image],
                self.label_divisor,
                None if probabilities is None else probabilities[image],
            )
            keep = self._thing_ids(ids)
            self._add_image(
                gt[image],
                _encode_segments(pred[image], ids[keep]),
                ids[keep] // self.label_divisor,
                image_scores[keep],
            )

    def add_detections(self, gt_panoptic, masks, classes, scores) -> None:
        """Adds one image with detections given as masks.

        Args:
          gt_panoptic: `[height, width]` ground-truth panoptic ids.
          masks: `[num_detections, height, width]` boolean masks.
          classes: `[num_detections]` model class ids (thing classes).
          scores: `[num_detections]` confidence scores.
        """
        gt = inputs.label_batch(gt_panoptic, "ground-truth panoptic")
        if gt.shape[0] != 1:
            raise ValueError(f"add_detections takes one image, got a batch of {gt.shape[0]}")
        masks = np.asarray(masks, dtype=bool).reshape((-1,) + gt.shape[1:])
        classes = np.asarray(classes, dtype=np.int64).reshape(-1)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if not len(masks) == len(classes) == len(scores):
            raise ValueError(
                f"detections: {len(masks)} masks, {len(classes)} classes and {len(scores)} "
                "scores; expected one of each per detection"
            )
        not_thing = ~self._thing_classes(classes)
        if np.any(not_thing):
            raise ValueError(
                f"detection classes {classes[not_thing].tolist()} are not thing classes "
                f"{list(self.thing_classes)}"
            )
        self._add_image(gt[0], _encode(masks), classes, scores)

    def _add_image(self, gt: np.ndarray, rles: list, classes: np.ndarray, scores) -> None:
        self._stats = None
        image_id = len(self._images) + 1
        height, width = gt.shape
        self._images.append({"id": image_id, "height": height, "width": width})
        gt_ids = np.unique(gt)
        gt_ids = gt_ids[self._thing_ids(gt_ids)]
        gt_rles = _encode_segments(gt, gt_ids)
        areas = mask_api.area(gt_rles) if gt_rles else []
        boxes = mask_api.toBbox(gt_rles) if gt_rles else []
        for panoptic_id, rle, area, box in zip(gt_ids, gt_rles, areas, boxes, strict=True):
            self._ground_truth.append(
                {
                    "id": len(self._ground_truth) + 1,
                    "image_id": image_id,
                    "category_id": int(panoptic_id // self.label_divisor),
                    "segmentation": rle,
                    "area": float(area),
                    "bbox": [float(v) for v in box],
                    "iscrowd": int(panoptic_id % self.label_divisor == 0),
                }
            )
        det_areas = mask_api.area(rles) if len(rles) else []
        det_boxes = mask_api.toBbox(rles) if len(rles) else []
        for rle, area, box, category, score in zip(
            rles, det_areas, det_boxes, classes, scores, strict=True
        ):
            self._detections.append(
                {
                    "id": len(self._detections) + 1,
                    "image_id": image_id,
                    "category_id": int(category),
                    "segmentation": rle,
                    "area": float(area),
                    "bbox": [float(v) for v in box],
                    "iscrowd": 0,
                    "score": float(score),
                }
            )

    def _coco(self, annotations: list[dict]) -> coco_api.COCO:
        """A COCO object over the images seen so far."""
        dataset = coco_api.COCO()
        dataset.dataset = {
            "images": self._images,
            "annotations": annotations,
            "categories": [{"id": c} for c in self.thing_classes],
        }
        dataset.createIndex()
        return dataset

    def result(self) -> dict:
        """Returns the 12 COCO numbers (`STAT_NAMES`) and `per_class_ap`.

        `per_class_ap` maps each thing class to its AP over IoU 0.50:0.95 (all
        areas, 100 detections). NaN marks values without ground truth.

        Raises:
          ValueError: If no image was added.
        """
        if self._stats is None:
            self._stats = self._compute()
        return self._stats

    def _compute(self) -> dict:
        if not self._images:
            raise ValueError("instance AP: no image was added before result()")
        # pycocotools prints its progress; keep it in the log instead. Built by
        # hand rather than with COCO.loadRes, which fails on zero detections.
        captured = io.StringIO()
        with contextlib.redirect_stdout(captured):
            evaluation = cocoeval.COCOeval(
                self._coco(self._ground_truth), self._coco(self._detections), iouType="segm"
            )
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        logging.info("COCO instance segmentation evaluation:\n%s", captured.getvalue())
        results = {
            name: (float(v) if v >= 0 else float("nan"))
            for name, v in zip(STAT_NAMES, evaluation.stats, strict=True)
        }
        # precision: [iou thresholds, recall thresholds, classes, areas, max dets].
        precision = evaluation.eval["precision"][:, :, :, 0, -1]
        per_class = {}
        for k, c in enumerate(evaluation.params.catIds):
            values = precision[:, :, k]
            values = values[values > -1]
            per_class[int(c)] = float(values.mean()) if values.size else float("nan")
        results["per_class_ap"] = per_class
        return results
