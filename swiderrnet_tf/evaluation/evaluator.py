"""All evaluation metrics of a panoptic model, fed batch by batch.

`PanopticEvaluator` updates panoptic quality, mean IoU / pixel accuracy and COCO
instance AP from batches of ground truth and predictions (the dicts of
`swiderrnet_tf.common` keys, or plain arrays), and returns one flat dict of
numbers plus per-class rows for the report. It follows deeplab2's evaluator,
which reports PQ (panoptic quality), mIoU and AP of the same predictions.

Deliberate deviations:
  1. Crowd regions (thing class, instance id 0) are handled as panopticapi
     does, so PQ on COCO is the official one and not deeplab2's higher
     estimate.
  2. Images are cropped to their original size before evaluation when the
     batch gives it, so padding never reaches the metrics.
"""

from collections.abc import Mapping

import numpy as np

from swiderrnet_tf import common
from swiderrnet_tf.data import dataset_info as dataset_info_lib
from swiderrnet_tf.evaluation import inputs
from swiderrnet_tf.evaluation import instance_ap
from swiderrnet_tf.evaluation import mean_iou
from swiderrnet_tf.evaluation import panoptic_quality


class PanopticEvaluator:
    """Panoptic quality, mean IoU and instance AP over a dataset.

    Usage:
      evaluator = PanopticEvaluator(dataset_info.get_dataset_info("cityscapes"))
      for features, predictions in batches:
          evaluator.update_from_outputs(features, predictions)
      metrics = evaluator.result()            # {"pq": ..., "miou": ..., "ap": ...}
      rows = evaluator.per_class_result()     # one dict per class
    """

    def __init__(
        self,
        info: dataset_info_lib.DatasetInfo,
        *,
        offset: int | None = None,
        compute_instance_ap: bool = True,
    ):
        """Creates the metrics.

        Args:
          info: The dataset's facts (classes, things, label divisor, void).
          offset: Pair-id multiplier of panoptic quality; by default the
            smallest that exceeds every valid panoptic id.
          compute_instance_ap: Whether to compute COCO instance AP; then every
            update needs instance scores, and the dataset needs thing classes.
        """
        self.info = info
        if offset is None:
            offset = (max(info.num_classes, info.ignore_label + 1)) * info.label_divisor
        self.panoptic_quality = panoptic_quality.PanopticQuality(
            num_classes=info.num_classes,
            ignored_label=info.ignore_label,
            max_instances_per_category=info.label_divisor,
            offset=offset,
            is_thing=info.is_thing,
        )
        self.mean_iou = mean_iou.MeanIoU(info.num_classes, info.ignore_label)
        self.instance_ap = None
        if compute_instance_ap:
            if not info.thing_classes:
                raise ValueError(
                    f"dataset {info.name!r} has no thing classes; "
                    "instance AP needs them (pass compute_instance_ap=False)"
                )
            self.instance_ap = instance_ap.InstanceAP(
                info.num_classes, info.thing_classes, info.label_divisor, info.ignore_label
            )
        self.num_images = 0

    def reset_state(self) -> None:
        """Forgets every image seen so far."""
        self.panoptic_quality.reset_state()
        self.mean_iou.reset_state()
        if self.instance_ap is not None:
            self.instance_ap.reset_state()
        self.num_images = 0

    def update_state(
        self,
        gt_panoptic,
        pred_panoptic,
        pred_semantic=None,
        instance_scores=None,
        semantic_probabilities=None,
        original_size=None,
    ) -> None:
        """Adds a batch of images to every metric.

        Args:
          gt_panoptic: `[batch, height, width]` (or `[height, width]`)
            ground-truth panoptic ids in model space.
          pred_panoptic: Predicted panoptic ids, same shape.
          pred_semantic: Predicted classes, same shape, for mean IoU; by
            default the classes of `pred_panoptic`.
          instance_scores: Per-pixel instance scores, same shape; needed when
            instance AP is computed.
          semantic_probabilities: Optional `[batch, height, width, classes]`
            probabilities that weight the instance scores (deeplab2's AP score).
          original_size: Optional `[batch, 2]` (height, width) of each image
            before padding; the maps are cropped to it.

        Raises:
          ValueError: On missing instance scores or inconsistent shapes.
        """
        divisor = self.info.label_divisor
        gt = inputs.label_batch(gt_panoptic, "ground-truth panoptic")
        pred = inputs.label_batch(pred_panoptic, "predicted panoptic")
        inputs.check_same_shape(gt, pred, "ground-truth vs predicted panoptic")
        if pred_semantic is None:
            semantic = pred // divisor
        else:
            semantic = inputs.label_batch(pred_semantic, "predicted semantic")
            inputs.check_same_shape(gt, semantic, "ground-truth panoptic vs predicted semantic")
        scores = probabilities = None
        if self.instance_ap is not None:
            if instance_scores is None:
                raise ValueError(
                    "instance scores are needed for instance AP "
                    f"(`{common.INSTANCE_SCORES}`); or create the evaluator with "
                    "compute_instance_ap=False"
                )
            scores = inputs.float_batch(instance_scores, "instance scores", rank=2)
            inputs.check_same_shape(gt, scores, "ground-truth panoptic vs instance scores")
            if semantic_probabilities is not None:
                probabilities = inputs.float_batch(
                    semantic_probabilities, "semantic probabilities", rank=3
                )
                inputs.check_same_shape(gt, probabilities, "panoptic vs semantic probabilities")
        sizes = None
        if original_size is not None:
            sizes = np.asarray(original_size, dtype=np.int64).reshape(-1, 2)
            if len(sizes) != gt.shape[0]:
                raise ValueError(
                    f"original_size has {len(sizes)} rows, expected one per image ({gt.shape[0]})"
                )

        for image in range(gt.shape[0]):
            height, width = gt.shape[1:] if sizes is None else sizes[image]
            crop = (image, slice(0, height), slice(0, width))
            self.panoptic_quality.update_state(gt[crop], pred[crop])
            self.mean_iou.update_state(gt[crop] // divisor, semantic[crop])
            if self.instance_ap is not None:
                self.instance_ap.update_state(
                    gt[crop],
                    pred[crop],
                    scores[crop],
                    None if probabilities is None else probabilities[crop],
                )
            self.num_images += 1

    def update_from_outputs(
        self, features: Mapping[str, object], predictions: Mapping[str, object]
    ) -> None:
        """Adds a batch given as input-pipeline features and model predictions.

        Args:
          features: Needs `common.PANOPTIC_LABEL`; uses `common.ORIGINAL_SIZE`
            when present.
          predictions: Needs `common.PANOPTIC`; uses `common.SEMANTIC`,
            `common.INSTANCE_SCORES` and `common.SEMANTIC_PROBABILITIES` when
            present.
        """
        for key, where in (
            (common.PANOPTIC_LABEL, features),
            (common.PANOPTIC, predictions),
        ):
            if key not in where:
                raise ValueError(f"evaluation batch lacks {key!r}; it has {sorted(where)}")
        self.update_state(
            features[common.PANOPTIC_LABEL],
            predictions[common.PANOPTIC],
            pred_semantic=predictions.get(common.SEMANTIC),
            instance_scores=predictions.get(common.INSTANCE_SCORES),
            semantic_probabilities=predictions.get(common.SEMANTIC_PROBABILITIES),
            original_size=features.get(common.ORIGINAL_SIZE),
        )

    def result(self) -> dict[str, float]:
        """Returns every metric as one flat dict of numbers.

        Keys: `pq sq rq n` and the same with `_thing` / `_stuff`; `miou`,
        `pixel_accuracy`; with AP the COCO numbers `instance_ap.STAT_NAMES`
        (`ap ap50 ap75 ...`); `num_images`. NaN marks undefined values.
        """
        results = {k: v for k, v in self.panoptic_quality.result().items() if k != "per_class"}
        semantic = self.mean_iou.result()
        results["miou"] = semantic["miou"]
        results["pixel_accuracy"] = semantic["pixel_accuracy"]
        if self.instance_ap is not None:
            ap = self.instance_ap.result()
            results.update({name: ap[name] for name in instance_ap.STAT_NAMES})
        results["num_images"] = self.num_images
        return results

    def per_class_result(self) -> list[dict]:
        """One row per model class: id, name, kind, PQ statistics, IoU, AP."""
        pq = self.panoptic_quality.per_class()
        iou = self.mean_iou.per_class_iou()
        ap = self.instance_ap.result()["per_class_ap"] if self.instance_ap is not None else {}
        rows = []
        for c, name in enumerate(self.info.class_names):
            is_thing = self.info.is_thing[c]
            row = {"class_id": c, "name": name, "kind": "thing" if is_thing else "stuff"}
            row.update(pq[c])
            row["counted"] = pq[c]["tp"] + pq[c]["fp"] + pq[c]["fn"] > 0
            row["iou"] = float(iou[c])
            if self.instance_ap is not None:
                row["ap"] = ap[c] if is_thing else float("nan")
            rows.append(row)
        return rows
