"""The combined evaluator on the COCO sample and on a small synthetic map."""

import numpy as np
import pytest

from swiderrnet_tf import common
from swiderrnet_tf.data import dataset_info
from swiderrnet_tf.evaluation import evaluator
from tests.evaluation import coco_sample


def _padded_sample():
    """Both sample images in one [2, 427, 640] batch, padded with void."""
    info, model_class, images = coco_sample.load()
    void = info.ignore_label * info.label_divisor
    gt = np.full((2, 427, 640), void, np.int64)
    sizes = []
    for i, image in enumerate(images):
        height, width = image.panoptic.shape
        gt[i, :height, :width] = image.panoptic
        sizes.append((height, width))
    return info, model_class, gt, np.array(sizes)


def test_ground_truth_as_prediction_with_padding():
    info, model_class, gt, sizes = _padded_sample()
    assert sizes.tolist() == [[427, 640], [360, 640]]
    pred = gt.copy()
    # A person instance in the padding of the second image: outside the image.
    pred[1, 380:420, 100:200] = model_class[1] * info.label_divisor + 50
    scores = np.ones(gt.shape, np.float32)
    scores[1, 380:420, 100:200] = 2.0
    metrics = evaluator.PanopticEvaluator(info)
    metrics.update_state(gt, pred, instance_scores=scores, original_size=sizes)
    result = metrics.result()
    for key in ("pq", "sq", "rq", "pq_thing", "pq_stuff", "miou", "pixel_accuracy", "ap"):
        assert result[key] == 1.0, key
    assert result["num_images"] == 2
    # person, sports ball, truck, horse | gravel, tree, sky, grass.
    assert (result["n"], result["n_thing"], result["n_stuff"]) == (8, 4, 4)

    # Uncropped, the padding's person is a false detection ranked first, so
    # AP drops; PQ excuses it (it lies on void).
    metrics.reset_state()
    metrics.update_state(gt, pred, instance_scores=scores)
    result = metrics.result()
    assert result["pq"] == 1.0
    assert result["ap"] < 1.0


def test_update_from_outputs_and_per_class_rows():
    info, _, gt, sizes = _padded_sample()
    metrics = evaluator.PanopticEvaluator(info)
    features = {common.PANOPTIC_LABEL: gt, common.ORIGINAL_SIZE: sizes}
    predictions = {common.PANOPTIC: gt, common.INSTANCE_SCORES: np.ones(gt.shape)}
    metrics.update_from_outputs(features, predictions)
    assert metrics.result()["ap"] == 1.0
    rows = {row["name"]: row for row in metrics.per_class_result()}
    assert len(rows) == 133
    person, tree, car = rows["person"], rows["tree-merged"], rows["car"]
    # 13 + 13 non-crowd persons in the two images.
    assert (person["kind"], person["tp"], person["pq"], person["ap"]) == ("thing", 26, 1.0, 1.0)
    assert (tree["kind"], tree["tp"], tree["iou"]) == ("stuff", 2, 1.0)
    assert np.isnan(tree["ap"])
    assert not car["counted"] and np.isnan(car["iou"])
    with pytest.raises(ValueError, match="lacks 'panoptic'"):
        metrics.update_from_outputs(features, {})
    with pytest.raises(ValueError, match="instance scores are needed"):
        metrics.update_state(gt, gt)


def test_semantic_prediction_drives_mean_iou():
    info = dataset_info.get_dataset_info("synthetic")  # things 3, 4, 5; divisor 1000
    gt = np.array([[0, 0, 3001, 3001], [1000, 1000, 3002, 255000]])
    semantic = np.array([[0, 0, 3, 3], [1, 0, 3, 0]])
    metrics = evaluator.PanopticEvaluator(info, compute_instance_ap=False)
    metrics.update_state(gt, gt, pred_semantic=semantic)
    result = metrics.result()
    # 7 non-void pixels, 6 correct. Class 0: TP 2, in gt 2, predicted 3 -> 2/3;
    # class 1: TP 1, in gt 2, predicted 1 -> 1/2; class 3: 3/3 -> 1.
    # mIoU = (2/3 + 1/2 + 1) / 3 = 13/18. PQ comes from the panoptic map: 1.
    assert result["miou"] == pytest.approx(13 / 18)
    assert result["pixel_accuracy"] == pytest.approx(6 / 7)
    assert result["pq"] == 1.0
    assert "ap" not in result
    # Without a semantic prediction, the panoptic map's classes are used.
    metrics.reset_state()
    metrics.update_state(gt, gt)
    assert metrics.result()["miou"] == 1.0


def test_stuff_only_dataset_needs_ap_off():
    info = dataset_info.get_dataset_info("synthetic")
    stuff_only = dataset_info.DatasetInfo(
        name="stuff_only",
        num_classes=2,
        thing_classes=(),
        label_divisor=info.label_divisor,
        stuff_area_limit=0,
        eval_scales=(1.0,),
        class_names=("a", "b"),
        colors=((0, 0, 0), (1, 1, 1)),
    )
    with pytest.raises(ValueError, match="no thing classes"):
        evaluator.PanopticEvaluator(stuff_only)
    metrics = evaluator.PanopticEvaluator(stuff_only, compute_instance_ap=False)
    metrics.update_state(np.array([[0, 1000]]), np.array([[0, 1000]]))
    result = metrics.result()
    assert result["pq"] == result["pq_stuff"] == 1.0
    assert np.isnan(result["pq_thing"]) and result["n_thing"] == 0
