"""Mean IoU and pixel accuracy on a small map worked out by hand."""

import numpy as np
import pytest

from swiderrnet_tf.evaluation import mean_iou

# Four classes, void 255.
GT = np.array([[0, 0, 1], [1, 2, 255]])
PRED = np.array([[0, 1, 1], [1, 0, 0]])
# Non-void pixels: 5. Confusion (gt -> pred): 0->0, 0->1, 1->1, 1->1, 2->0.
# Class 0: TP 1, in gt 2, predicted 2 -> IoU 1 / (2 + 2 - 1) = 1/3.
# Class 1: TP 2, in gt 2, predicted 3 -> IoU 2 / 3.
# Class 2: TP 0, in gt 1, predicted 0 -> IoU 0.
# Class 3: absent from both -> left out of the mean.
# mIoU = (1/3 + 2/3 + 0) / 3 = 1/3; pixel accuracy = 3 correct / 5 = 0.6.


def test_hand_worked_case():
    metric = mean_iou.MeanIoU(num_classes=4, ignored_label=255)
    metric.update_state(GT, PRED)
    result = metric.result()
    assert result["miou"] == pytest.approx(1 / 3)
    assert result["pixel_accuracy"] == pytest.approx(0.6)
    np.testing.assert_allclose(result["per_class_iou"][:3], [1 / 3, 2 / 3, 0.0])
    assert np.isnan(result["per_class_iou"][3])


def test_streaming_equals_one_batch():
    metric = mean_iou.MeanIoU(num_classes=4, ignored_label=255)
    metric.update_state(GT[:1], PRED[:1])
    metric.update_state(GT[1:], PRED[1:])
    assert metric.result()["miou"] == pytest.approx(1 / 3)
    metric.reset_state()
    metric.update_state(np.stack([GT, GT]), np.stack([GT, GT]))
    assert metric.result()["miou"] == 1.0
    assert metric.result()["pixel_accuracy"] == 1.0


def test_prediction_outside_classes_is_a_miss_only():
    metric = mean_iou.MeanIoU(num_classes=2, ignored_label=255)
    # gt [0, 1, 1], pred [0, void, 1]: class 1 misses one pixel, nobody gains
    # a false positive. Class 0: 1/1; class 1: 1 / (2 + 1 - 1) = 1/2.
    metric.update_state(np.array([[0, 1, 1]]), np.array([[0, 255, 1]]))
    result = metric.result()
    np.testing.assert_allclose(result["per_class_iou"], [1.0, 0.5])
    assert result["pixel_accuracy"] == pytest.approx(2 / 3)


def test_bad_ground_truth_is_named():
    metric = mean_iou.MeanIoU(num_classes=2, ignored_label=255)
    with pytest.raises(ValueError, match=r"classes \[7\] are outside 0..1"):
        metric.update_state(np.array([[7, 0]]), np.array([[0, 0]]))
    with pytest.raises(ValueError, match="6 vs 4 pixels"):
        metric.update_state(np.zeros((2, 3), int), np.zeros((2, 2), int))
