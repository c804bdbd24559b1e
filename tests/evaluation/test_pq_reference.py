"""Panoptic quality against a plain per-segment port of panopticapi's pq_compute.

The reference below follows cocodataset/panopticapi `pq_compute_single_core`
and `PQStat.pq_average` step by step, with one boolean mask per segment and
Python loops, on the model-space ids of the COCO sample (void = class 255; with
`is_thing`, a thing segment with instance id 0 is a crowd region). Random
perturbations of the real ground truth make the predictions.
"""

import collections

import numpy as np
import pytest

from swiderrnet_tf.evaluation import panoptic_quality
from tests.evaluation import coco_sample

DIVISOR, IGNORE = coco_sample.DIVISOR, coco_sample.IGNORE


def _segments(label, is_thing, ground_truth):
    segments = {}
    for segment_id in np.unique(label).tolist():
        category = segment_id // DIVISOR
        if category == IGNORE:
            continue
        crowd = (
            ground_truth
            and is_thing is not None
            and is_thing[category]
            and segment_id % DIVISOR == 0
        )
        mask = label == segment_id
        segments[segment_id] = {
            "category_id": category,
            "iscrowd": int(crowd),
            "mask": mask,
            "area": int(mask.sum()),
        }
    return segments


def reference_image(gt, pred, is_thing, stats, rules_used):
    """Adds one image to `stats` (category -> [iou, tp, fp, fn]), panopticapi's way."""
    gt_segms = _segments(gt, is_thing, True)
    pred_segms = _segments(pred, is_thing, False)
    void_mask = gt // DIVISOR == IGNORE
    gt_pred_map = {}
    for gt_label, gt_info in gt_segms.items():
        for pred_label, pred_info in pred_segms.items():
            intersection = int(np.sum(gt_info["mask"] & pred_info["mask"]))
            if intersection:
                gt_pred_map[(gt_label, pred_label)] = intersection
    void_map = {p: int(np.sum(void_mask & info["mask"])) for p, info in pred_segms.items()}

    gt_matched, pred_matched = set(), set()
    for (gt_label, pred_label), intersection in gt_pred_map.items():
        if gt_segms[gt_label]["iscrowd"] == 1:
            continue
        if gt_segms[gt_label]["category_id"] != pred_segms[pred_label]["category_id"]:
            continue
        union = (
            pred_segms[pred_label]["area"]
            + gt_segms[gt_label]["area"]
            - intersection
            - void_map[pred_label]
        )
        iou = intersection / union
        if iou > 0.5:
            category = gt_segms[gt_label]["category_id"]
            stats[category][0] += iou
            stats[category][1] += 1
            gt_matched.add(gt_label)
            pred_matched.add(pred_label)

    crowd_labels_dict = {}
    for gt_label, gt_info in gt_segms.items():
        if gt_label in gt_matched:
            continue
        if gt_info["iscrowd"] == 1:
            crowd_labels_dict[gt_info["category_id"]] = gt_label
            continue
        stats[gt_info["category_id"]][3] += 1

    for pred_label, pred_info in pred_segms.items():
        if pred_label in pred_matched:
            continue
        intersection = void_map[pred_label]
        if pred_info["category_id"] in crowd_labels_dict:
            crowd_label = crowd_labels_dict[pred_info["category_id"]]
            intersection += gt_pred_map.get((crowd_label, pred_label), 0)
        if intersection / pred_info["area"] > 0.5:
            rules_used["excused"] += 1
            if void_map[pred_label] / pred_info["area"] <= 0.5:
                rules_used["excused_by_crowd"] += 1
            continue
        stats[pred_info["category_id"]][2] += 1


def reference_average(stats, num_classes, is_thing, isthing):
    pq, sq, rq, n = 0.0, 0.0, 0.0, 0
    for label in range(num_classes):
        if isthing is not None and bool(is_thing[label]) != isthing:
            continue
        iou, tp, fp, fn = stats[label]
        if tp + fp + fn == 0:
            continue
        n += 1
        pq += iou / (tp + 0.5 * fp + 0.5 * fn)
        sq += iou / tp if tp != 0 else 0
        rq += tp / (tp + 0.5 * fp + 0.5 * fn)
    return {"pq": pq / n, "sq": sq / n, "rq": rq / n, "n": n}


def _perturb(gt, info, rng):
    """Returns (ground truth, prediction) made from `gt` by random edits."""
    height, width = gt.shape
    gt, pred = gt.copy(), gt.copy()

    def rectangle():
        y, x = rng.integers(0, height - 8), rng.integers(0, width - 8)
        return slice(y, y + rng.integers(4, 60)), slice(x, x + rng.integers(4, 80))

    def random_id(thing_instance_zero=False):
        category = int(rng.integers(0, info.num_classes))
        instance = 0 if thing_instance_zero else int(rng.integers(0, 4))
        return category * DIVISOR + instance

    ids = [i for i in np.unique(gt) if i // DIVISOR != IGNORE]
    for segment_id in rng.choice(ids, size=min(len(ids), 8), replace=False):
        mask = pred == segment_id
        edit = rng.integers(0, 5)
        if edit == 0:  # shift, leaving void or the old ids behind
            moved = np.roll(mask, tuple(rng.integers(-12, 13, size=2)), axis=(0, 1))
            if rng.random() < 0.5:
                pred[mask & ~moved] = IGNORE * DIVISOR
            pred[moved] = segment_id
        elif edit == 1:  # keep a leading fraction (IoU near any value)
            keep = np.flatnonzero(mask)[: int(mask.sum() * rng.uniform(0.3, 0.8))]
            flat = pred.reshape(-1)
            flat[np.flatnonzero(mask)] = IGNORE * DIVISOR
            flat[keep] = segment_id
        elif edit == 2:  # another class
            pred[mask] = random_id()
        elif edit == 3:  # merged into another segment
            pred[mask] = rng.choice(ids)
        else:  # split in two instances
            columns = np.nonzero(mask)[1]
            split = mask & (np.arange(width) < np.median(columns))
            pred[split] = (segment_id // DIVISOR) * DIVISOR + 3
    for _ in range(6):
        pred[rectangle()] = random_id() if rng.random() < 0.8 else IGNORE * DIVISOR
    for _ in range(3):
        gt[rectangle()] = IGNORE * DIVISOR
    for _ in range(2):  # crowd regions of random thing classes
        thing = int(rng.choice(info.thing_classes))
        gt[rectangle()] = thing * DIVISOR
        pred[rectangle()] = thing * DIVISOR + int(rng.integers(0, 3))
    return gt, pred


@pytest.fixture(scope="module")
def sample():
    info, _, images = coco_sample.load()
    # Every other pixel keeps the segments and quarters the reference's time.
    return info, [image.panoptic[::2, ::2] for image in images]


@pytest.mark.parametrize("with_things", [True, False])
def test_matches_per_segment_reference(sample, with_things):
    info, images = sample
    is_thing = np.asarray(info.is_thing) if with_things else None
    rng = np.random.default_rng(7 if with_things else 11)
    rules_used = collections.Counter()
    for _ in range(6):
        metric = panoptic_quality.PanopticQuality(
            info.num_classes, IGNORE, DIVISOR, offset=2**20, is_thing=is_thing
        )
        stats = collections.defaultdict(lambda: [0.0, 0, 0, 0])
        for image in images:
            gt, pred = _perturb(image, info, rng)
            metric.update_state(gt, pred)
            reference_image(gt, pred, is_thing, stats, rules_used)
        result = metric.result()
        for c in range(info.num_classes):
            iou, tp, fp, fn = stats[c]
            ours = result["per_class"][c]
            assert (ours["tp"], ours["fp"], ours["fn"]) == (tp, fp, fn), c
            assert ours["iou_sum"] == pytest.approx(iou, abs=1e-9)
            rules_used["tp"] += tp
            rules_used["fp"] += fp
            rules_used["fn"] += fn
        groups = (("", None), ("_thing", True), ("_stuff", False)) if with_things else (("", None),)
        for suffix, isthing in groups:
            expected = reference_average(stats, info.num_classes, is_thing, isthing)
            for key in ("pq", "sq", "rq", "n"):
                assert result[key + suffix] == pytest.approx(expected[key], abs=1e-12)
    # The random edits reached every rule.
    assert rules_used["tp"] and rules_used["fp"] and rules_used["fn"]
    assert rules_used["excused"]
    if with_things:
        assert rules_used["excused_by_crowd"]
