"""The export program: a training run's gin files + checkpoint -> SavedModel (+ TFLite)."""

import os
import pathlib
import subprocess
import sys

import gin
import numpy as np
import pytest
import tensorflow as tf

from swiderrnet_tf import common
from swiderrnet_tf import export
from swiderrnet_tf.inference import export_lib
from swiderrnet_tf.inference import multi_scale
from swiderrnet_tf.inference import tflite
from swiderrnet_tf.postprocess import panoptic_merge
from swiderrnet_tf.training import gin_config
from tests.inference import helpers

ROOT = pathlib.Path(__file__).parents[2]
GIN_FILES = ["gin_configs/models/tiny.gin", "gin_configs/datasets/synthetic.gin"]


@pytest.fixture(autouse=True)
def clear_gin():
    yield
    gin.clear_config()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(model, checkpoint prefix) of the tiny gin model with random weights."""
    gin_config.parse(GIN_FILES)
    model = gin.get_bindings("evaluate")["model_fn"](num_classes=helpers.INFO.num_classes)
    gin.clear_config()
    rng = np.random.default_rng(0)
    for weight in model.weights:
        if "seed_generator" not in weight.path:
            scale = 0.5 if "final_conv" in weight.path else 0.1
            value = rng.normal(0.0, scale, weight.shape)
            if weight.path.endswith(("moving_variance", "gamma")):
                value = rng.uniform(0.5, 1.5, weight.shape)
            weight.assign(value.astype("float32"))
    prefix = str(tmp_path_factory.mktemp("run") / "ckpt-7")
    tf.train.Checkpoint(model=model).write(prefix)
    return model, prefix


def _merge(outputs):
    # synthetic.gin: panoptic_predictor.nms_kernel = 7, keep_k_centers = 32.
    info = helpers.INFO
    return panoptic_merge.panoptic_merge(
        outputs[common.SEMANTIC_LOGITS],
        outputs[common.CENTER_HEATMAP],
        outputs[common.OFFSETS],
        thing_classes=info.thing_classes,
        label_divisor=info.label_divisor,
        stuff_area_limit=info.stuff_area_limit,
        nms_kernel=7,
        keep_k_centers=32,
    )


def test_exports_the_checkpoint_with_the_runs_settings(trained, tmp_path):
    model, checkpoint = trained
    output = str(tmp_path / "saved_model")
    status = export.run(
        gin_files=GIN_FILES,
        gin_bindings=[
            "panoptic_predictor.predict_fn_factory = @multi_scale_predict_fn",
            "multi_scale_predict_fn.scales = (0.75, 1.0)",
        ],
        checkpoint=checkpoint,
        output=output,
        canvas_sides=["48"],
        tflite_size="33x41",
        jit_compile_merge=False,
    )
    assert status == 0
    metadata = export_lib.read_metadata(output)
    assert metadata["dataset"] == "synthetic" and metadata["scales"] == [0.75, 1.0]
    assert metadata["flip"] is True and metadata["merge"]["keep_k_centers"] == 32
    assert metadata["merge_xla"] is False
    images = helpers.random_images((1, 33, 41), seed=2)
    serve = tf.saved_model.load(output).signatures["serving_default"]
    got = serve(images=tf.constant(images))
    predict_fn = multi_scale.multi_scale_predict_fn(model, scales=(0.75, 1.0), flip=True)
    expected = _merge(predict_fn(images))
    np.testing.assert_array_equal(got[common.PANOPTIC], expected[common.PANOPTIC])
    # The TFLite file is single-scale: network + merge at 33x41.
    content = (tmp_path / "saved_model" / export.TFLITE_FILE).read_bytes()
    lite = tflite.run_tflite(content, images, with_merge=True)
    expected = _merge(model(images, training=False))
    np.testing.assert_array_equal(lite[common.PANOPTIC], expected[common.PANOPTIC])


def test_configuration_errors_exit_with_2(trained, tmp_path, capsys):
    _, checkpoint = trained
    (tmp_path / "file").write_text("")
    bad = [
        (
            {"gin_files": GIN_FILES, "output": str(tmp_path / "file" / "out")},
            f"error: {tmp_path / 'file'}: cannot create the parent folder of the SavedModel: ",
        ),
        ({"gin_files": ["gin_configs/runs/cpu.gin"]}, "evaluate.model_fn"),
        ({"gin_files": GIN_FILES, "tflite_size": "33by41"}, "HEIGHTxWIDTH"),
        ({"gin_files": GIN_FILES, "canvas_sides": ["0"]}, "positive integers"),
        ({"gin_files": GIN_FILES, "checkpoint": str(tmp_path / "ckpt-3")}, "no complete"),
    ]
    for overrides, message in bad:
        arguments = {"checkpoint": checkpoint, "output": str(tmp_path / "out"), **overrides}
        assert export.run(**arguments) == 2, overrides
        assert message in capsys.readouterr().err, overrides


def test_command_line_flags(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "swiderrnet_tf.export", "--gin_file=gin_configs/demo.gin"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "--checkpoint and --output are required" in done.stderr
