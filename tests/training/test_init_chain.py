"""A fine-tuning chain through the trainer: a panoptic run, then another class count from it."""

import os

import gin
import numpy as np
import pytest
import tensorflow as tf

from swiderrnet_tf.training import gin_config
from swiderrnet_tf.training import initialization
from swiderrnet_tf.training import trainer
from tests.training import helpers

# The synthetic records read as a dataset of 8 classes (its 6 and two unused),
# as Cityscapes' 19 classes follow Mapillary Vistas' 65 in the paper's chain.
EIGHT_CLASSES = (
    "train.dataset_name = @register_custom_dataset()",
    "register_custom_dataset.name = 'synthetic_8_classes'",
    "register_custom_dataset.class_names = "
    "['sky', 'grass', 'road', 'disc', 'box', 'triangle', 'unused_a', 'unused_b']",
    "register_custom_dataset.thing_classes = [3, 4, 5]",
    "register_custom_dataset.label_divisor = 1000",
    "register_custom_dataset.stuff_area_limit = 64",
    "register_custom_dataset.eval_scales = [1.0]",
)
HEAD = ("semantic_head/final_conv/kernel", "semantic_head/final_conv/bias")


def _values(model) -> dict:
    return {w.path: w.numpy() for w in model.weights if "seed_generator" not in w.path}


def _source_values(run_dir: str) -> dict:
    """The first run's last weights, restored whole by TensorFlow (not by the code under test)."""
    gin_config.parse([helpers.TINY_GIN], ["DATA_DIR = 'unused'"])
    try:
        reference = gin.get_configurable("build_panoptic_deeplab")(num_classes=6)
    finally:
        gin.clear_config()
    status = tf.train.Checkpoint(model=reference).restore(os.path.join(run_dir, "ckpt-6"))
    status.expect_partial().assert_existing_objects_matched()
    return _values(reference)


def test_run_with_another_class_count_starts_from_a_panoptic_run(
    straight_run, tiny_data, tmp_path, monkeypatch
):
    seen = {}
    initialize_model = initialization.initialize_model

    def recording(model, path, **kwargs):
        seen["before"] = _values(model)
        seen["report"] = initialize_model(model, path, **kwargs)
        seen["after"] = _values(model)
        seen["arguments"] = (path, kwargs)
        return seen["report"]

    monkeypatch.setattr(initialization, "initialize_model", recording)
    gin_config.parse(
        [helpers.TINY_GIN],
        [
            f"DATA_DIR = '{tiny_data}'",
            *EIGHT_CLASSES,
            f"train.init_checkpoint = '{straight_run}'",
            "train.init_scope = 'all_but_heads'",
            "train.num_steps = 1",
            # Another seed than the first run's: its weights start elsewhere.
            "train.seed = 1",
        ],
    )
    try:
        result = trainer.train(
            strategy=tf.distribute.get_strategy(), model_dir=str(tmp_path / "fine_tuned")
        )
    finally:
        gin.clear_config()
    assert result.step == 1
    assert seen["arguments"] == (straight_run, {"scope": "all_but_heads", "strict": True})
    source, before, after = _source_values(straight_run), seen["before"], seen["after"]
    assert set(after) == set(source)
    for path in HEAD:
        assert after[path].shape[-1] == 8 and source[path].shape[-1] == 6
        np.testing.assert_array_equal(after[path], before[path], err_msg=path)
    others = [p for p in after if p not in HEAD]
    assert len(seen["report"].loaded) == len(others)
    # Only batch-norm scales start equal: 1 in both runs, barely moved by the first
    # run's six steps (Adam epsilon 1, see helpers.COMPARABLE).
    unchanged = [p for p in others if np.array_equal(before[p], source[p])]
    assert all(p.endswith("batch_norm/gamma") for p in unchanged), unchanged
    assert len(unchanged) < 0.2 * len(others)
    for path in others:
        np.testing.assert_array_equal(after[path], source[path], err_msg=path)


def test_unknown_init_scope_fails_before_any_work(tmp_path):
    gin_config.parse([helpers.TINY_GIN], ["DATA_DIR = 'unused'", "train.init_scope = 'heads'"])
    try:
        with pytest.raises(ValueError, match=r"train.init_scope must be one of .* got 'heads'"):
            trainer.train(strategy=tf.distribute.get_strategy(), model_dir=str(tmp_path))
    finally:
        gin.clear_config()
    assert not os.listdir(tmp_path)
