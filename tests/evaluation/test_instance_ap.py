"""COCO instance AP: perfect predictions and a small case worked out by hand."""

import numpy as np
import pytest
from pycocotools import mask as mask_api

from swiderrnet_tf.evaluation import instance_ap
from tests.evaluation import coco_sample

# Three classes (0 stuff, 1 and 2 things), label divisor 10, void 255.
DIVISOR = 10


def _small_case():
    gt = np.zeros((20, 20), np.int64)
    gt[0:5, 0:5] = 11  # A: class 1, 25 pixels
    gt[10:15, 10:15] = 12  # B: class 1, 25 pixels
    first = gt == 11  # IoU 1 with A
    stray = np.zeros_like(first)
    stray[0:5, 15:20] = True  # overlaps nothing
    inner = np.zeros_like(first)
    inner[10:14, 10:14] = True  # 16 pixels inside B: IoU 16 / 25 = 0.64
    return gt, [first, stray, inner], [1, 1, 1], [0.9, 0.8, 0.7]


# Detections by score: A (IoU 1), stray, B (IoU 0.64); two ground-truth objects.
# COCO precision at 101 recall points, with precision made non-increasing:
#   IoU thresholds 0.50, 0.55, 0.60 (B matches): recall 0.5, 0.5, 1.0 with
#     precision 1, 1/2, 2/3 -> 1 at the 51 points r <= 0.5, 2/3 at the 50 above
#     -> AP = (51 + 50 * 2/3) / 101 = 253 / 303.
#   IoU thresholds 0.65 ... 0.95 (7 of them): recall stops at 0.5 -> 51 / 101.
# AP = (3 * 253/303 + 7 * 51/101) / 10 = 610 / 1010; AP50 = 253/303; AP75 = 51/101.
# AR100 = (3 * 1 + 7 * 0.5) / 10 = 0.65; AR1 (only A) = 0.5.
def test_worked_case():
    metric = instance_ap.InstanceAP(3, [1, 2], DIVISOR, 255)
    metric.add_detections(*_small_case())
    result = metric.result()
    assert result["ap"] == pytest.approx(610 / 1010)
    assert result["ap50"] == pytest.approx(253 / 303)
    assert result["ap75"] == pytest.approx(51 / 101)
    assert result["ar100"] == pytest.approx(0.65)
    assert result["ar1"] == pytest.approx(0.5)
    assert result["per_class_ap"][1] == pytest.approx(610 / 1010)
    # Class 2 has no ground truth; nor have medium and large areas.
    assert np.isnan(result["per_class_ap"][2])
    assert np.isnan(result["ap_large"])


def test_detection_on_crowd_region_is_not_a_false_positive():
    gt, masks, classes, scores = _small_case()
    gt[15:20, 0:10] = 10  # crowd region of class 1 (instance id 0)
    crowd_detection = gt == 10
    metric = instance_ap.InstanceAP(3, [1, 2], DIVISOR, 255)
    metric.add_detections(gt, masks + [crowd_detection], classes + [1], scores + [0.95])
    # Ranked first but matched to the crowd region, so ignored: AP as before.
    assert metric.result()["ap"] == pytest.approx(610 / 1010)
    # Without the crowd annotation (stuff there instead) it is a false positive
    # at rank 1. IoU <= 0.60: precision 0, 1/2, 1/3, 1/2 at recall 0, .5, .5, 1,
    # made non-increasing: 1/2 at every recall point -> 1/2. IoU >= 0.65:
    # recall stops at 0.5 with precision 1/2 -> 51 / 101 * 1/2.
    # AP = (3 * 1/2 + 7 * 51/202) / 10.
    metric.reset_state()
    gt[gt == 10] = 0
    metric.add_detections(gt, masks + [crowd_detection], classes + [1], scores + [0.95])
    assert metric.result()["ap"] == pytest.approx((3 / 2 + 7 * 51 / 202) / 10)


def test_scores_from_maps():
    pred = np.array([[11, 11, 12], [12, 0, 0]])
    instance_scores = np.array([[0.2, 0.4, 1.0], [0.5, 0.0, 0.0]])
    probabilities = np.zeros((2, 3, 3))
    probabilities[..., 1] = [[0.5, 1.0, 0.8], [0.6, 0.0, 0.0]]
    ids, scores = instance_ap.segment_scores(pred, instance_scores, DIVISOR, probabilities)
    # Segment 11: mean score 0.3, mean class-1 probability 0.75 -> 0.225.
    # Segment 12: mean score 0.75, mean class-1 probability 0.7 -> 0.525.
    # Segment 0 (class 0): mean score 0, probability of class 0 is 0 -> 0.
    assert ids.tolist() == [0, 11, 12]
    np.testing.assert_allclose(scores, [0.0, 0.225, 0.525])


def test_ground_truth_as_prediction_gives_one():
    info, _, images = coco_sample.load()
    metric = instance_ap.InstanceAP(
        info.num_classes, info.thing_classes, info.label_divisor, info.ignore_label
    )
    for image in images:
        metric.update_state(image.panoptic, image.panoptic, np.ones(image.panoptic.shape))
    result = metric.result()
    assert result["ap"] == result["ap50"] == result["ap75"] == 1.0
    # person, sports ball, truck and horse have instances in the sample.
    assert sum(not np.isnan(v) for v in result["per_class_ap"].values()) == 4


def test_no_detections_gives_zero():
    gt, _, _, _ = _small_case()
    metric = instance_ap.InstanceAP(3, [1, 2], DIVISOR, 255)
    metric.add_detections(gt, np.zeros((0, 20, 20), bool), [], [])
    assert metric.result()["ap"] == 0.0


def test_bad_detections_are_named():
    gt, masks, _, _ = _small_case()
    metric = instance_ap.InstanceAP(3, [1, 2], DIVISOR, 255)
    with pytest.raises(ValueError, match=r"classes \[0\] are not thing classes \[1, 2\]"):
        metric.add_detections(gt, masks[:1], [0], [0.5])
    with pytest.raises(ValueError, match="3 masks, 2 classes"):
        metric.add_detections(gt, masks, [1, 1], [0.5, 0.5])
    with pytest.raises(ValueError, match="no image"):
        metric.result()


def test_run_length_encodings_decode_to_the_masks():
    label = np.zeros((5, 7), np.int64)
    label[0, 1:6] = 11  # a row: wrong if rows and columns were swapped
    label[2:5, 6] = 12
    rles = instance_ap._encode_segments(label, np.array([11, 12]))
    decoded = mask_api.decode(rles)  # [height, width, 2]
    np.testing.assert_array_equal(decoded[..., 0], label == 11)
    np.testing.assert_array_equal(decoded[..., 1], label == 12)
    np.testing.assert_array_equal(
        mask_api.decode(instance_ap._encode(label[None] == 12))[..., 0], label == 12
    )
