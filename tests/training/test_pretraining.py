"""ImageNet-style pre-training on the trainer, then a panoptic run that starts from it."""

import json

import gin
import numpy as np
import pytest
import tensorflow as tf

from swiderrnet_tf import train as train_cli
from swiderrnet_tf.data import classification_synthetic
from swiderrnet_tf.training import gin_config
from swiderrnet_tf.training import initialization
from swiderrnet_tf.training import trainer
from tests.training import helpers

SMALL_SET = dict(num_train=48, num_val=20, min_size=40, max_size=48)
PRETRAIN = (
    *(f"ensure_classification_dataset.{k} = {v}" for k, v in SMALL_SET.items()),
    "train.crop_size = (32, 32)",
    "evaluate.crop_size = (32, 32)",
    "train.batch_size = 8",
    "train.num_steps = 4",
    "train.warmup_steps = 0",
    "train.steps_per_loop = 2",
    "train.log_every_n_steps = 2",
    "train.checkpoint_every_n_steps = 2",
    "evaluate.batch_size = 8",
)


@pytest.fixture(autouse=True)
def clear_gin():
    yield
    gin.clear_config()


def _values(model) -> dict:
    return {w.path: w.numpy() for w in model.weights if "seed_generator" not in w.path}


def test_pretraining_then_a_panoptic_run_from_its_backbone(tiny_data, tmp_path, monkeypatch):
    data_dir = classification_synthetic.ensure_dataset(str(tmp_path / "data"), **SMALL_SET)
    run_dir = tmp_path / "pretrain"
    code = train_cli.run(
        gin_files=["gin_configs/pretrain_demo.gin"],
        gin_bindings=[f"DATA_DIR = '{data_dir}'", *PRETRAIN],
        model_dir=str(run_dir),
        mode="train_and_eval",
    )
    assert code == 0
    with open(run_dir / "eval" / "results_step_4.json") as f:
        metrics = json.load(f)["metrics"]
    # 20 validation images: accuracies are multiples of 5%, top-5 >= top-1.
    assert metrics["num_images"] == 20 and metrics["step"] == 4
    assert metrics["top_1_accuracy"] % 5 == 0
    assert metrics["top_1_accuracy"] <= metrics["top_5_accuracy"] <= 100
    # The classifier of the run, restored whole by TensorFlow (not by the code
    # under test), is what the panoptic backbone must start from.
    gin_config.parse(["gin_configs/pretrain_demo.gin"], [f"DATA_DIR = '{data_dir}'"])
    source = gin.get_configurable("build_classifier")(num_classes=10)
    gin.clear_config()
    status = tf.train.Checkpoint(model=source).restore(str(run_dir / "ckpt-4"))
    status.expect_partial().assert_existing_objects_matched()
    source_values = _values(source)

    seen = {}
    initialize_model = initialization.initialize_model

    def recording(model, path, **kwargs):
        seen["report"] = initialize_model(model, path, **kwargs)
        seen["backbone"] = _values(model.backbone)
        return seen["report"]

    monkeypatch.setattr(initialization, "initialize_model", recording)
    gin_config.parse(
        [helpers.TINY_GIN],
        [
            f"DATA_DIR = '{tiny_data}'",
            f"train.init_checkpoint = '{run_dir}'",
            "train.num_steps = 1",
            "train.steps_per_loop = 1",
            "train.log_every_n_steps = 1",
        ],
    )
    trainer.train(strategy=tf.distribute.get_strategy(), model_dir=str(tmp_path / "panoptic"))
    backbone = seen["backbone"]
    classifier = {p for p in source_values if p.startswith("classifier/")}
    assert classifier and set(backbone) == set(source_values) - classifier
    for path, value in backbone.items():
        np.testing.assert_array_equal(value, source_values[path], err_msg=path)
