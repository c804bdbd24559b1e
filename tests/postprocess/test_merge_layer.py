"""Tests of the `PanopticMerge` Keras layer."""

import keras
import numpy as np
import pytest

from swiderrnet_tf import common
from swiderrnet_tf.data import dataset_info
from swiderrnet_tf.postprocess import merge_layer
from swiderrnet_tf.postprocess import panoptic_merge
from tests.postprocess import test_panoptic_merge

SETTINGS = dict(test_panoptic_merge.RANDOM_SETTINGS, keep_k_centers=8)


def _model_outputs(seed=5, batch=2):
    logits, heatmap, offsets = test_panoptic_merge.random_outputs(seed, batch, height=9, width=7)
    return {common.SEMANTIC_LOGITS: logits, common.CENTER_HEATMAP: heatmap, common.OFFSETS: offsets}


def _numpy(outputs):
    return {k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()}


def test_get_config_round_trip():
    layer = merge_layer.PanopticMerge(
        name="merge", return_semantic_probabilities=True, jit_compile=False, **SETTINGS
    )
    config = layer.get_config()
    assert config["thing_classes"] == [1, 3, 4]
    assert config["keep_k_centers"] == 8 and config["jit_compile"] is False
    clone = merge_layer.PanopticMerge.from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, merge_layer.PanopticMerge)
    assert restored.get_config() == config


@pytest.mark.parametrize("jit_compile", [False, True])
def test_layer_equals_function(jit_compile):
    outputs = _model_outputs()
    expected = _numpy(
        panoptic_merge.panoptic_merge(
            outputs[common.SEMANTIC_LOGITS],
            outputs[common.CENTER_HEATMAP],
            outputs[common.OFFSETS],
            **SETTINGS,
        )
    )
    got = _numpy(merge_layer.PanopticMerge(jit_compile=jit_compile, **SETTINGS)(outputs))
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-6, err_msg=key)


def test_saved_functional_model_reloads(tmp_path):
    outputs = _model_outputs()
    inputs = {k: keras.Input(v.shape[1:], name=k) for k, v in outputs.items()}
    model = keras.Model(inputs, merge_layer.PanopticMerge(**SETTINGS)(inputs))
    path = tmp_path / "merge.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    expected, got = _numpy(model(outputs)), _numpy(reloaded(outputs))
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)
    assert expected[common.PANOPTIC].shape == (2, 9, 7)


def test_missing_output_is_named():
    outputs = _model_outputs()
    del outputs[common.OFFSETS]
    with pytest.raises(ValueError, match=r"merge: the model outputs lack \['offsets'\]"):
        merge_layer.PanopticMerge(name="merge", **SETTINGS)(outputs)


def test_bad_setting_fails_at_construction():
    with pytest.raises(ValueError, match="nms_kernel must be an odd"):
        merge_layer.PanopticMerge(**dict(SETTINGS, nms_kernel=8))


def test_from_dataset_info_takes_the_dataset_facts():
    info = dataset_info.get_dataset_info("cityscapes")
    config = merge_layer.PanopticMerge.from_dataset_info(info, nms_kernel=13).get_config()
    assert config["thing_classes"] == list(range(11, 19))
    assert (config["label_divisor"], config["stuff_area_limit"]) == (1000, 2048)
    assert (config["void_label"], config["nms_kernel"]) == (255, 13)
