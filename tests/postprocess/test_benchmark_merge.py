"""The merge benchmark runs and feeds the center loads it claims."""

import importlib.util
import os
import pathlib
import subprocess
import sys

import numpy as np

from swiderrnet_tf import common
from swiderrnet_tf.postprocess import panoptic_merge

_SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "benchmark_merge.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("benchmark_merge", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_inputs_hold_the_requested_centers():
    benchmark = _load_script()
    settings = dict(
        thing_classes=benchmark._THINGS, label_divisor=1000, stuff_area_limit=0, nms_kernel=7
    )
    for num_centers, keep_k in ((6, 20), (28, 20)):  # a real load, then a worst case
        logits, heatmap, offsets = benchmark.make_inputs(2, 65, 97, num_centers, 19, seed=1)
        out = panoptic_merge.panoptic_merge(
            logits, heatmap, offsets, keep_k_centers=keep_k, **settings
        )
        found = (np.asarray(out[common.CENTER_SCORES]) > 0).sum(axis=1)
        np.testing.assert_array_equal(found, [min(num_centers, keep_k)] * 2)
        # Offsets send thing pixels to their own peak: one instance per center.
        instances = [len(np.unique(p[p % 1000 > 0])) for p in np.asarray(out[common.PANOPTIC])]
        assert instances == [min(num_centers, keep_k)] * 2


def test_script_prints_a_row_per_mode():
    env = dict(os.environ, PYTHONPATH=str(_SCRIPT.parents[1]))
    result = subprocess.run(
        [
            sys.executable,
            str(_SCRIPT),
            "--sizes=33x41",
            "--batches=2",
            "--loads=real",
            "--modes=function,xla",
            "--real_centers=3",
            "--repeats=1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split() for line in result.stdout.splitlines() if line.strip().startswith("33x41")]
    assert [row[4] for row in rows] == ["function", "xla"]
