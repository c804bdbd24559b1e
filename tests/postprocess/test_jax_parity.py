"""The merge under `jax.jit` equals the TensorFlow one (a subprocess: the Keras
backend is fixed once per process)."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np

from swiderrnet_tf import common
from swiderrnet_tf.postprocess import panoptic_merge
from tests.postprocess import test_deeplab2_fixture
from tests.postprocess import test_panoptic_merge

_REPO = pathlib.Path(__file__).resolve().parents[2]

# Runs in the subprocess: merges every case of inputs.npz with jax.jit, through the
# function and through the layer, and writes outputs.npz.
_JAX_SCRIPT = textwrap.dedent(
    """
    import json, pathlib, sys
    import jax, keras, numpy as np
    from swiderrnet_tf import common
    from swiderrnet_tf.postprocess import merge_layer, panoptic_merge

    assert keras.backend.backend() == "jax", keras.backend.backend()
    folder = pathlib.Path(sys.argv[1])
    inputs = np.load(folder / "inputs.npz")
    cases = json.loads((folder / "cases.json").read_text())
    results = {}
    for name, settings in cases.items():
        arrays = [inputs[f"{name}/{key}"] for key in ("logits", "heatmap", "offsets")]
        merge = jax.jit(lambda l, h, o: panoptic_merge.panoptic_merge(l, h, o, **settings))
        for key, value in merge(*arrays).items():
            results[f"{name}/function/{key}"] = np.asarray(value)
        layer = merge_layer.PanopticMerge(**settings)
        keys = (common.SEMANTIC_LOGITS, common.CENTER_HEATMAP, common.OFFSETS)
        outputs = jax.jit(layer)(dict(zip(keys, arrays)))
        for key, value in outputs.items():
            results[f"{name}/layer/{key}"] = np.asarray(value)
    np.savez(folder / "outputs.npz", **results)
    """
)


def test_jax_matches_tensorflow(tmp_path, testdata):
    fixture = test_deeplab2_fixture.load_fixture(testdata)
    cases = {
        "random": (
            test_panoptic_merge.random_outputs(11, 3),
            dict(test_panoptic_merge.RANDOM_SETTINGS, keep_k_centers=6),
        ),
        "fixture": (
            (
                fixture["semantic_logits"],
                fixture["center_heatmap"][..., None],
                fixture["offset_map"],
            ),
            test_deeplab2_fixture.FIXTURE_SETTINGS,
        ),
        # Larger than one grouping tile (centers.TILE), so tiles and pruning run.
        "tiles": (
            test_panoptic_merge.random_outputs(13, 1, height=300, width=270),
            dict(test_panoptic_merge.RANDOM_SETTINGS, keep_k_centers=40),
        ),
    }
    arrays = {}
    for name, ((logits, heatmap, offsets), _) in cases.items():
        arrays.update(
            {f"{name}/logits": logits, f"{name}/heatmap": heatmap, f"{name}/offsets": offsets}
        )
    np.savez(tmp_path / "inputs.npz", **arrays)
    (tmp_path / "cases.json").write_text(json.dumps({k: s for k, (_, s) in cases.items()}))

    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=str(_REPO))
    result = subprocess.run(
        [sys.executable, "-c", _JAX_SCRIPT, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jax_outputs = np.load(tmp_path / "outputs.npz")

    for name, (inputs, settings) in cases.items():
        expected = panoptic_merge.panoptic_merge(*inputs, **settings)
        for key, value in expected.items():
            value = np.asarray(value)
            for route in ("function", "layer"):
                got = jax_outputs[f"{name}/{route}/{key}"]
                if value.dtype.kind == "f":
                    np.testing.assert_allclose(got, value, rtol=1e-6, err_msg=f"{name} {key}")
                else:
                    np.testing.assert_array_equal(got, value, err_msg=f"{name} {route} {key}")
        # The fixture case also equals deeplab2 under JAX.
        if name == "fixture":
            np.testing.assert_array_equal(
                jax_outputs[f"fixture/function/{common.PANOPTIC}"], fixture["panoptic_pred"]
            )
