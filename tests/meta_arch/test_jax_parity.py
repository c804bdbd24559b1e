"""The same weights give the same outputs under the JAX backend as under TensorFlow."""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

from swiderrnet_tf.meta_arch import panoptic_deeplab
from swiderrnet_tf.tools import import_deeplab2

ROOT = pathlib.Path(__file__).parents[2]
FIXTURE = ROOT / "tests" / "testdata" / "deeplab2_swidernet_tiny"


def _save(model, directory, name):
    model.save_weights(directory / f"{name}.weights.h5")
    config = keras.saving.serialize_keras_object(model)
    (directory / f"{name}_config.json").write_text(json.dumps(config))


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="compares against TensorFlow")
def test_jax_backend_matches_tensorflow(tmp_path):
    pytest.importorskip("jax")
    images = np.random.default_rng(3).integers(0, 256, (2, 65, 97, 3)).astype(np.uint8)
    np.save(tmp_path / "inputs.npy", images)
    models = {
        # Paper layout, fast regime, SE + SAC at output stride 16.
        "paper_fast": panoptic_deeplab.build_panoptic_deeplab(
            "swidernet_0.25_0.25_0.75", 5, "fast", aspp_channels=16, semantic_head_channels=16
        ),
        # The deeplab2 fixture model with its (non-trivial) checkpoint weights.
        "deeplab2_fixture": import_deeplab2.build_from_config(str(FIXTURE / "config.textproto")),
    }
    import_deeplab2.assign_from_checkpoint(
        models["deeplab2_fixture"], str(FIXTURE / "ckpt" / "ckpt-1000")
    )
    # Random non-zero switch, context and BN statistics so every path matters.
    rng = np.random.default_rng(4)
    for weight in models["paper_fast"].weights:
        if "seed_generator" in weight.path:
            continue
        value = rng.normal(0.0, 0.1, weight.shape)
        if weight.path.endswith(("moving_variance", "gamma")):
            value = rng.uniform(0.5, 1.5, weight.shape)
        elif weight.path.endswith("kernel"):
            value *= 10 / np.sqrt(np.prod(weight.shape[:-1]))
        weight.assign(value.astype("float32"))
    expected = {}
    for name, model in models.items():
        _save(model, tmp_path, name)
        expected[name] = {k: np.asarray(v) for k, v in model(images, training=False).items()}

    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, str(pathlib.Path(__file__).with_name("jax_forward.py")), str(tmp_path)],
        env=env,
        check=True,
        capture_output=True,
    )
    for name, outputs in expected.items():
        jax_outputs = np.load(tmp_path / f"{name}_jax.npz")
        for key, value in outputs.items():
            error = np.abs(jax_outputs[key] - value).max() / np.abs(value).max()
            assert error < 1e-4, (name, key, error)
