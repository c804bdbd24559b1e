"""Panoptic quality on the real COCO sample, with answers worked out by hand.

Image 000000142238 (427 x 640 = 273280 pixels), from panoptic_examples.json:
  person: 13 segments (e.g. 4917453, area 477) + crowd 3153362 (area 24295)
  sports ball 16757838 (area 175)          -- thing
  tree-merged 2330219 (area 130762)        -- stuff
  sky-other-merged 11829830 (area 8204)    -- stuff
  grass-merged 10025880 (area 75100)       -- stuff
  void: 273280 - (sum of the areas) = 2712 pixels
Against itself every counted class has PQ = SQ = RQ = 1; five classes are
counted (person, sports ball | tree, sky, grass), two things and three stuff.
"""

import numpy as np
import pytest

from swiderrnet_tf.evaluation import panoptic_quality
from tests.evaluation import coco_sample

BALL, SMALL_PERSON, CROWD, TREE = 16757838, 4917453, 3153362, 2330219
VOID = coco_sample.IGNORE * coco_sample.DIVISOR


@pytest.fixture(scope="module")
def sample():
    info, model_class, images = coco_sample.load()
    return info, model_class, images[0]


def _metric(info, is_thing=True):
    return panoptic_quality.PanopticQuality(
        num_classes=info.num_classes,
        ignored_label=coco_sample.IGNORE,
        max_instances_per_category=coco_sample.DIVISOR,
        offset=256 * 256,
        is_thing=info.is_thing if is_thing else None,
    )


def _evaluate(info, gt, pred, is_thing=True):
    metric = _metric(info, is_thing)
    metric.update_state(gt, pred)
    return metric.result()


def _first_pixels(mask, k):
    """The first `k` pixels of `mask` in raster order."""
    flat = np.zeros(mask.size, bool)
    flat[np.flatnonzero(mask)[:k]] = True
    return flat.reshape(mask.shape)


def _class_id(image, coco_segment):
    return image.segment_ids[coco_segment] // coco_sample.DIVISOR


def _assert_summary(result, pq, sq, rq, n):
    assert result["pq"] == pytest.approx(pq, abs=1e-12)
    assert result["sq"] == pytest.approx(sq, abs=1e-12)
    assert result["rq"] == pytest.approx(rq, abs=1e-12)
    assert result["n"] == n


def test_sample_facts(sample):
    _, _, image = sample
    assert image.panoptic.shape == (427, 640)
    assert 427 * 640 - sum(image.areas.values()) == 2712
    assert np.sum(image.panoptic == VOID) == 2712


def test_ground_truth_against_itself(sample):
    info, _, image = sample
    result = _evaluate(info, image.panoptic, image.panoptic)
    _assert_summary(result, 1.0, 1.0, 1.0, 5)
    for group in ("_thing", "_stuff"):
        assert result["pq" + group] == result["sq" + group] == result["rq" + group] == 1.0
    assert (result["n_thing"], result["n_stuff"]) == (2, 3)
    person = result["per_class"][_class_id(image, SMALL_PERSON)]
    # 13 matches; the crowd region is neither matched nor a false negative.
    assert (person["tp"], person["fp"], person["fn"]) == (13, 0, 0)
    assert person["iou_sum"] == pytest.approx(13.0)


def test_removed_segment_is_a_false_negative(sample):
    info, _, image = sample
    pred = image.panoptic.copy()
    pred[image.panoptic == image.segment_ids[BALL]] = VOID
    result = _evaluate(info, image.panoptic, pred)
    # Sports ball: TP 0, FN 1 -> PQ = SQ = RQ = 0; four classes stay at 1.
    # PQ = SQ = RQ = 4 / 5; things (person 1, ball 0) 0.5; stuff 1.
    _assert_summary(result, 0.8, 0.8, 0.8, 5)
    assert result["pq_thing"] == pytest.approx(0.5)
    assert result["pq_stuff"] == pytest.approx(1.0)
    ball = result["per_class"][_class_id(image, BALL)]
    assert (ball["tp"], ball["fp"], ball["fn"]) == (0, 0, 1)


def test_wrong_class_is_a_false_negative_and_a_false_positive(sample):
    info, model_class, image = sample
    car = model_class[3]
    pred = image.panoptic.copy()
    pred[image.panoptic == image.segment_ids[BALL]] = car * coco_sample.DIVISOR + 1
    result = _evaluate(info, image.panoptic, pred)
    # Sports ball FN 1, car FP 1 (its 175 pixels lie on no void nor car crowd):
    # six classes counted, four at 1 -> PQ = SQ = RQ = 4 / 6.
    # Things: person 1, ball 0, car 0 -> 1 / 3.
    _assert_summary(result, 4 / 6, 4 / 6, 4 / 6, 6)
    assert result["pq_thing"] == pytest.approx(1 / 3)
    assert result["n_thing"] == 3
    assert result["per_class"][car]["fp"] == 1
    assert result["per_class"][_class_id(image, BALL)]["fn"] == 1


@pytest.mark.parametrize("kept", [239, 238])
def test_shrunk_segment_around_iou_one_half(sample, kept):
    info, _, image = sample
    person = image.panoptic == image.segment_ids[SMALL_PERSON]
    pred = image.panoptic.copy()
    pred[person & ~_first_pixels(person, kept)] = VOID
    result = _evaluate(info, image.panoptic, pred)
    # The prediction lies inside the 477-pixel person, so IoU = kept / 477.
    if kept == 239:
        # 239 / 477 = 0.50105 > 0.5: a match. Person: TP 13, IoU sum 12 + 239/477.
        person_pq = (12 + 239 / 477) / 13
        _assert_summary(result, (4 + person_pq) / 5, (4 + person_pq) / 5, 1.0, 5)
        expected = (13, 0, 0)
    else:
        # 238 / 477 = 0.49895: no match. Person: TP 12, FN 1, FP 1 (the 238
        # pixels lie on person, not on void or crowd) -> PQ = RQ = 12 / 13, SQ 1.
        _assert_summary(result, (4 + 12 / 13) / 5, 1.0, (4 + 12 / 13) / 5, 5)
        expected = (12, 1, 1)
    counts = result["per_class"][_class_id(image, SMALL_PERSON)]
    assert (counts["tp"], counts["fp"], counts["fn"]) == expected


def test_prediction_on_crowd_region(sample):
    info, model_class, image = sample
    crowd = image.panoptic == image.segment_ids[CROWD]
    # A new person instance over the person crowd region: not a false positive.
    pred = image.panoptic.copy()
    pred[crowd] = _class_id(image, CROWD) * coco_sample.DIVISOR + 99
    _assert_summary(_evaluate(info, image.panoptic, pred), 1.0, 1.0, 1.0, 5)
    # Nothing predicted there: the crowd region is not a false negative.
    pred[crowd] = VOID
    _assert_summary(_evaluate(info, image.panoptic, pred), 1.0, 1.0, 1.0, 5)
    # A car over the person crowd is a false positive (crowd of another class):
    # six classes, five at 1 -> PQ = SQ = RQ = 5 / 6.
    pred[crowd] = model_class[3] * coco_sample.DIVISOR + 1
    _assert_summary(_evaluate(info, image.panoptic, pred), 5 / 6, 5 / 6, 5 / 6, 6)


@pytest.mark.parametrize("taken", [2711, 2712])
def test_prediction_mostly_on_void(sample, taken):
    info, model_class, image = sample
    car = model_class[3]
    tree = image.panoptic == image.segment_ids[TREE]
    pred = image.panoptic.copy()
    pred[(image.panoptic == VOID) | _first_pixels(tree, taken)] = car * coco_sample.DIVISOR + 1
    result = _evaluate(info, image.panoptic, pred)
    # The car holds the 2712 void pixels and `taken` tree pixels; the tree keeps
    # IoU (130762 - taken) / 130762 and stays a match.
    tree_iou = (130762 - taken) / 130762
    if taken == 2711:
        # 2712 / 5423 > 0.5 on void: not a false positive; car not counted.
        _assert_summary(result, (4 + tree_iou) / 5, (4 + tree_iou) / 5, 1.0, 5)
        assert result["per_class"][car]["fp"] == 0
    else:
        # 2712 / 5424 is exactly one half, not more: a false positive.
        # Six classes: RQ = 5 / 6, PQ = SQ = (4 + tree IoU) / 6 (car SQ is 0).
        _assert_summary(result, (4 + tree_iou) / 6, (4 + tree_iou) / 6, 5 / 6, 6)
        assert result["per_class"][car]["fp"] == 1
    assert result["pq_stuff"] == pytest.approx((2 + tree_iou) / 3)


def test_void_and_own_crowd_add_up(sample):
    info, _, image = sample
    person_class = _class_id(image, CROWD)
    crowd = image.panoptic == image.segment_ids[CROWD]
    tree = image.panoptic == image.segment_ids[TREE]
    pred = image.panoptic.copy()
    pred[crowd] = VOID
    # 100 crowd + 50 void + 120 tree pixels: 150 / 270 > 0.5 on void or own
    # crowd, though neither alone is more than half -> not a false positive.
    segment = (
        _first_pixels(crowd, 100)
        | _first_pixels(image.panoptic == VOID, 50)
        | _first_pixels(tree, 120)
    )
    pred[segment] = person_class * coco_sample.DIVISOR + 99
    result = _evaluate(info, image.panoptic, pred)
    tree_iou = (130762 - 120) / 130762
    _assert_summary(result, (4 + tree_iou) / 5, (4 + tree_iou) / 5, 1.0, 5)
    # Grown to the first 300 tree pixels: 100 crowd + 50 void of 450 pixels,
    # one third -> a false positive.
    pred[_first_pixels(tree, 300)] = person_class * coco_sample.DIVISOR + 99
    result = _evaluate(info, image.panoptic, pred)
    assert result["per_class"][person_class]["fp"] == 1


def test_without_is_thing_crowd_is_an_ordinary_segment(sample):
    info, _, image = sample
    pred = image.panoptic.copy()
    pred[image.panoptic == image.segment_ids[CROWD]] = VOID
    result = _evaluate(info, image.panoptic, pred, is_thing=False)
    # deeplab2's rule: the crowd id (person, instance 0) is a missed segment.
    # Person: TP 13, FN 1 -> PQ = RQ = 13 / 13.5; four classes at 1.
    _assert_summary(result, (4 + 13 / 13.5) / 5, 1.0, (4 + 13 / 13.5) / 5, 5)
    assert "pq_thing" not in result


def test_streaming_batches_and_reset(sample):
    info, _, image = sample
    pred = image.panoptic.copy()
    pred[image.panoptic == image.segment_ids[BALL]] = VOID
    metric = _metric(info)
    metric.update_state(np.stack([image.panoptic] * 2), np.stack([image.panoptic, pred]))
    # Two images: sports ball TP 1 and FN 1 -> PQ_ball = 1 / 1.5.
    result = metric.result()
    assert result["per_class"][_class_id(image, BALL)]["tp"] == 1
    assert result["pq"] == pytest.approx((4 + 1 / 1.5) / 5)
    assert metric.num_images == 2
    metric.reset_state()
    metric.update_state(image.panoptic, image.panoptic)
    assert metric.result()["pq"] == 1.0


def test_framework_tensors(sample):
    tf = pytest.importorskip("tensorflow")
    jnp = pytest.importorskip("jax.numpy")
    info, _, image = sample
    gt = image.panoptic[:64, :64].astype(np.int32)
    for convert in (tf.constant, jnp.asarray):
        metric = _metric(info)
        metric.update_state(convert(gt), convert(gt))
        assert metric.result()["pq"] == 1.0


def test_bad_inputs_are_named(sample):
    info, _, image = sample
    metric = _metric(info)
    gt = image.panoptic[:4, :4].copy()
    with pytest.raises(ValueError, match="shapes differ"):
        metric.update_state(gt, gt[:3])
    bad = gt.copy()
    bad[0, 0] = 200 * coco_sample.DIVISOR + 1
    with pytest.raises(ValueError, match=r"predicted panoptic ids \[51201\].*outside 0..132"):
        metric.update_state(gt, bad)
    with pytest.raises(ValueError, match="ground-truth panoptic ids of image 0.*-1"):
        metric.update_state(np.full_like(gt, -1), gt)
    with pytest.raises(ValueError, match="integer"):
        metric.update_state(gt.astype(np.float32), gt)
    with pytest.raises(ValueError, match="offset 1000 must exceed"):
        panoptic_quality.PanopticQuality(133, 255, 256, offset=1000)
    with pytest.raises(ValueError, match="is_thing has shape"):
        panoptic_quality.PanopticQuality(133, 255, 256, offset=2**16, is_thing=[True])
