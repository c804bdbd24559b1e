"""Backbone initialisation from pretrained weights, with its report."""

import json
import os

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from swiderrnet_tf.backbones import registry
from swiderrnet_tf.meta_arch import panoptic_deeplab
from swiderrnet_tf.training import gin_config
from swiderrnet_tf.training import initialization
from tests.training import helpers

BACKBONE = "swidernet_0.25_0.25_0.35"
NARROW = dict(aspp_channels=8, semantic_decoder_channels=8, instance_decoder_channels=8)


def _model(**backbone_options):
    return panoptic_deeplab.build_panoptic_deeplab(
        BACKBONE, 6, regime="fast", backbone_options=backbone_options, **NARROW
    )


def _values(model) -> dict:
    return {w.path: w.numpy() for w in model.weights if "seed_generator" not in w.path}


def test_training_checkpoint_restores_the_backbone_and_nothing_else(straight_run):
    keras.utils.set_random_seed(1)
    model = _model()
    before = _values(model)
    report = initialization.initialize_backbone(model.backbone, straight_run)
    backbone_paths = set(_values(model.backbone))
    assert report["restored"] == len(backbone_paths)
    assert report["not_restored"] == [] and report["unused"] == []

    # The trained model, restored whole by TensorFlow, is the reference.
    gin_config.parse([helpers.TINY_GIN], ["DATA_DIR = 'unused'"])
    try:
        reference = gin.get_configurable("build_panoptic_deeplab")(num_classes=6)
    finally:
        gin.clear_config()
    status = tf.train.Checkpoint(model=reference).restore(os.path.join(straight_run, "ckpt-6"))
    status.expect_partial().assert_existing_objects_matched()
    expected = _values(reference.backbone)
    after = _values(model)
    for path in backbone_paths:
        np.testing.assert_array_equal(after[path], expected[path], err_msg=path)
    heads = [p for p in after if p not in backbone_paths]
    assert heads
    for path in heads:
        np.testing.assert_array_equal(after[path], before[path], err_msg=path)


@pytest.fixture
def imported(tmp_path):
    """A backbone saved as import_deeplab2 writes one: no SE, a 10-class head."""
    source = registry.create_backbone(BACKBONE, squeeze_excite=False, classification_classes=10)
    source.save_weights(tmp_path / "backbone.weights.h5")
    config = keras.saving.serialize_keras_object(source)
    (tmp_path / "backbone_config.json").write_text(json.dumps(config))
    return tmp_path, _values(source)


def test_weights_file_reports_what_was_and_was_not_restored(imported):
    directory, source = imported
    model = _model()  # with SE, which the file lacks
    se_paths = sorted(p for p in _values(model.backbone) if "squeeze_excite" in p)
    assert se_paths
    with pytest.raises(ValueError, match=r"have no value in it.*squeeze_excite"):
        initialization.initialize_backbone(model.backbone, str(directory))

    report = initialization.initialize_backbone(model.backbone, str(directory), strict=False)
    assert report["not_restored"] == se_paths
    assert report["unused"] == ["classifier/bias", "classifier/kernel"]
    after = _values(model.backbone)
    assert report["restored"] == len(after) - len(se_paths)
    for path in set(after) - set(se_paths):
        np.testing.assert_array_equal(after[path], source[path], err_msg=path)
    text = initialization.format_report(report)
    assert f"{report['restored']} variables restored" in text
    assert f"not restored (left at their initial value): {len(se_paths)}" in text


def test_weights_file_without_config_loads_into_a_copy_of_our_backbone(tmp_path):
    source = _model().backbone
    path = tmp_path / "mine.weights.h5"
    source.save_weights(path)
    model = _model()
    report = initialization.initialize_backbone(model.backbone, str(path))
    assert report["not_restored"] == [] and report["unused"] == []
    after = _values(model.backbone)
    for path_, value in _values(source).items():
        np.testing.assert_array_equal(after[path_], value, err_msg=path_)


def test_shape_mismatch_is_named(imported):
    directory, _ = imported
    wider = panoptic_deeplab.build_panoptic_deeplab(
        "swidernet_0.25_0.35_0.35", 6, regime="fast", backbone_options={"squeeze_excite": False}
    )
    with pytest.raises(ValueError, match=r"shapes differ .*checkpoint \[.*\] vs ours"):
        initialization.initialize_backbone(wider.backbone, str(directory))


def test_missing_source_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.weights.h5"):
        initialization.initialize_backbone(_model().backbone, str(tmp_path / "nothing.weights.h5"))
    with pytest.raises(FileNotFoundError, match="no complete training checkpoint"):
        initialization.initialize_backbone(_model().backbone, str(tmp_path))
