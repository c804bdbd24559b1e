"""Latency measurement on a tiny model; synthetic outputs hold the instances they promise."""

import math

import numpy as np
import pytest

from swiderrnet_tf import common
from swiderrnet_tf.data import dataset_info
from swiderrnet_tf.inference import latency
from swiderrnet_tf.postprocess import panoptic_merge
from tests.inference import helpers


def test_measure_returns_sane_medians():
    model = helpers.tiny_model()
    network_fn, merge_fn = latency.build_pipeline(model, helpers.INFO, keep_k_centers=16)
    images = helpers.random_images((2, 33, 41))
    result = latency.measure(network_fn, merge_fn, images, repeats=3)
    for name in ("network", "merge", "end_to_end", "first_call", "end_to_end_cpu"):
        value = getattr(result, name)
        assert math.isfinite(value) and 0 < value < 30, (name, value)
    # End to end runs both parts (medians of separate calls; allow jitter).
    assert result.end_to_end > 0.5 * max(result.network, result.merge)
    assert result.first_call > result.end_to_end  # tracing and compilation
    assert result.batch_size == 2 and result.repeats == 3
    assert 0 < result.as_dict()["merge_share"] < 5
    with pytest.raises(ValueError, match="repeats"):
        latency.measure(network_fn, merge_fn, images, repeats=0)


def test_merge_inputs_replace_the_network_outputs():
    calls = []

    def network_fn(images):
        calls.append("network")
        return {"unused": images}

    def merge_fn(outputs):
        calls.append(sorted(outputs))
        return {common.PANOPTIC: np.zeros((1, 4, 4), np.int32)}

    inputs = {common.CENTER_HEATMAP: np.zeros((1, 4, 4, 1), np.float32)}
    latency.measure(
        network_fn, merge_fn, np.zeros((1, 4, 4, 3), np.uint8), repeats=1, merge_inputs=inputs
    )
    assert "network" in calls and [common.CENTER_HEATMAP] in calls and ["unused"] not in calls


@pytest.mark.parametrize("name", ["cityscapes", "coco"])
def test_synthetic_outputs_hold_the_instances(name):
    info = dataset_info.get_dataset_info(name)
    outputs = latency.synthetic_outputs(2, 129, 257, info, num_instances=12, seed=1)
    merged = panoptic_merge.panoptic_merge(
        outputs[common.SEMANTIC_LOGITS],
        outputs[common.CENTER_HEATMAP],
        outputs[common.OFFSETS],
        thing_classes=info.thing_classes,
        label_divisor=info.label_divisor,
        stuff_area_limit=0,
        nms_kernel=13,
        keep_k_centers=100,
    )
    found = (np.asarray(merged[common.CENTER_SCORES]) > 0).sum(axis=1)
    np.testing.assert_array_equal(found, [12, 12])
    instances = [len(np.unique(p[p % info.label_divisor > 0])) for p in merged[common.PANOPTIC]]
    assert instances == [12, 12]
