"""The training-memory benchmark: one tiny measured row, its table, its errors."""

import importlib.util
import json
import re
import subprocess
import sys

import pytest

from tests.training import helpers

_SCRIPT = helpers.ROOT / "scripts" / "benchmark_train_memory.py"
# Narrow heads, as tests/training/tiny.gin: a build of a few seconds.
_HEADS = {
    "aspp_channels": 8,
    "semantic_decoder_channels": 8,
    "semantic_low_level_channels": [8, 8],
    "semantic_head_channels": 8,
    "instance_decoder_channels": 8,
    "instance_low_level_channels": [8, 8],
    "center_head_channels": 8,
    "offset_head_channels": 8,
}


@pytest.fixture
def benchmark():
    spec = importlib.util.spec_from_file_location("benchmark_train_memory", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(*flags):
    return subprocess.run(
        [sys.executable, str(_SCRIPT), *flags],
        env=helpers.subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_one_tiny_row(benchmark):
    done = _run(
        "--variants=swidernet_0.25_0.25_0.35",
        "--crop=33x49",
        "--recompute=16",
        "--steps=1",
        f"--head_options={json.dumps(_HEADS)}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[1/1]" in done.stderr  # progress
    header, row = (line.split() for line in done.stdout.strip().splitlines())
    assert header == list(benchmark.COLUMNS)
    values = dict(zip(header, row, strict=True))
    assert values["variant"] == "swidernet_0.25_0.25_0.35" and values["crop"] == "33x49"
    assert values["precision"] == "float32" and values["recompute"] == "16"
    # (0.25, 0.25, 0.35): stage depths 3, 1, 2, 1, 1; from stride 16 on, the
    # blocks of stages 4 and 5.
    assert values["recomputed_blocks"] == "2/8"
    # Weights, gradients and two Adam slots: 16 bytes per float32 parameter;
    # the process holds them and more.
    params = float(values["params_m"]) * 1e6
    assert float(values["state_gib"]) == pytest.approx(16 * params / 2**30, abs=0.01)
    assert float(values["peak_gib"]) > float(values["state_gib"])
    assert float(values["step_s"]) > 0 and float(values["step_cpu_s"]) > 0


def test_markdown_table(benchmark):
    row = {column: 1.0 for column in benchmark.COLUMNS} | {"variant": "v", "recompute": "off"}
    header, rule, line = benchmark.table([row], markdown=True).splitlines()
    assert header.startswith("| variant | crop |") and rule.startswith("|---|---|")
    assert line.startswith("| v | 1.00 |")


def test_a_bad_flag_is_one_line_and_exit_status_2():
    done = _run("--recompute=off,sometimes")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "benchmark_train_memory: backbone option recompute='sometimes': expected one of "
        "['off', 'blocks'] or a stage stride in [2, 4, 8, 16, 32]"
    )


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("crop", "513", "--crop: expected HxW such as 513x1025, got '513'"),
        ("precisions", ["float16"], "--precisions: 'float16' is not one of"),
        ("variants", ["resnet50"], "unknown backbone 'resnet50'"),
    ],
)
def test_bad_settings_are_named(benchmark, name, value, message):
    settings = dict(variants=["swidernet_1_1_1"], crop="513x1025", batch=1)
    settings |= dict(precisions=["float32"], recompute=["off"])
    settings[name] = value
    with pytest.raises(ValueError, match=re.escape(message)):
        benchmark.configurations(**settings)
