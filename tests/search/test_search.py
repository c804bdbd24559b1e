"""Tests for the grid search: spaces, the resumable table, Pareto fronts, the CLI."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import gin
import pytest

from swiderrnet_tf import grid_search
from swiderrnet_tf.backbones import registry
from swiderrnet_tf.search import pareto
from swiderrnet_tf.search import results
from swiderrnet_tf.search import spaces

ROOT = pathlib.Path(__file__).parents[2]


def test_paper_spaces():
    fast = spaces.candidates("fast")
    strong = spaces.candidates("strong")
    assert len(fast) == 45 and len(strong) == 21
    assert {c.regime for c in fast} == {"fast"} and {c.regime for c in strong} == {"strong"}
    # Eq. 3 and eq. 4, named as the registry names them.
    assert {c.name for c in fast} == {
        f"swidernet_{w1}_{w2}_{l}"
        for w1 in ("0.25", "0.5", "1")
        for w2 in ("0.25", "0.35", "0.5", "0.75", "1")
        for l in ("0.35", "0.75", "1")
    }
    assert {c.name for c in strong} == {
        f"swidernet_1_{w2}_{l}"
        for w2 in ("1", "1.5", "2")
        for l in ("1", "2", "3", "4", "5", "5.5", "6")
    }
    assert {c.name for c in fast + strong} <= set(registry.list_backbones())


def test_custom_space_from_gin():
    gin.clear_config()
    try:
        gin.parse_config(
            ["custom_space.w1 = [0.25]", "custom_space.w2 = [0.25, 0.5]", "custom_space.l = [1]"]
        )
        names = [c.name for c in spaces.candidates("custom")]
    finally:
        gin.clear_config()
    assert names == ["swidernet_0.25_0.25_1", "swidernet_0.25_0.5_1"]


def test_pareto_front_by_hand():
    rows = [
        {"name": "a", "latency_ms": 10, "pq": 30},
        {"name": "b", "latency_ms": 12, "pq": 35},
        {"name": "c", "latency_ms": 12, "pq": 33},  # b is as fast and better
        {"name": "d", "latency_ms": 20, "pq": 34},  # b is faster and better
        {"name": "e", "latency_ms": 25, "pq": 40},
    ]
    assert pareto.pareto_front(rows, "latency_ms", "pq") == {"a", "b", "e"}
    assert pareto.axes(["params_m", "madds_b", "latency_ms"]) == ("latency_ms", "madds_b")
    assert pareto.axes(["params_m", "madds_b"]) == ("params_m", "madds_b")


def test_results_table_resumes(tmp_path):
    path = str(tmp_path / "results.csv")
    table = results.ResultsTable(path, ["params_m"])
    key = {"name": "x", "w1": 0.25, "w2": 0.5, "l": 1.0, "regime": "fast"}
    table.update(key, {"params_m": 1.5})
    reopened = results.ResultsTable(path, ["params_m", "madds_b"])
    assert reopened.missing("x", ["params_m", "madds_b"]) == ["madds_b"]
    assert reopened.rows["x"]["params_m"] == 1.5
    assert not (tmp_path / "results.csv.tmp").exists()


def _run(out, *extra):
    return [
        sys.executable,
        "-m",
        "swiderrnet_tf.grid_search",
        "--space=custom",
        "--gin_bindings=custom_space.w1 = [0.25, 0.5]",
        "--gin_bindings=custom_space.w2 = [0.25, 0.35]",
        "--gin_bindings=custom_space.l = [0.35]",
        "--dataset=synthetic",
        "--height=33",
        "--width=41",
        "--measure=params,madds,latency",
        "--repeats=2",
        f"--output_dir={out}",
        *extra,
    ]


def test_search_interrupted_then_resumed(tmp_path):
    out = tmp_path / "search"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(_run(out), env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    csv_path = out / "results.csv"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if csv_path.exists() and len(csv_path.read_text().splitlines()) >= 2:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    process.wait()
    before = csv_path.read_text().splitlines()
    assert 2 <= len(before) < 5  # header + the candidates finished before the kill
    result = subprocess.run(
        _run(out), env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    rows = csv_path.read_text().splitlines()
    assert len(rows) == 5
    assert rows[: len(before)] == before  # finished rows were kept, not remeasured
    measured_again = result.stderr.count("fast: params_m=")
    assert measured_again == 5 - len(before)
    header, *lines = [row.split(",") for row in rows]
    assert header == [
        "name", "w1", "w2", "l", "regime", "params_m", "madds_b",
        "latency_ms", "network_ms", "merge_ms",
    ]  # fmt: skip
    assert [line[0] for line in lines] == [
        "swidernet_0.25_0.25_0.35",
        "swidernet_0.25_0.35_0.35",
        "swidernet_0.5_0.25_0.35",
        "swidernet_0.5_0.35_0.35",
    ]
    for line in lines:
        params, madds, total, network, merge = (float(v) for v in line[5:])
        assert 0 < params < 10 and 0 < madds < 1
        # The end-to-end call holds the network and the merge (medians of
        # separate calls, so allow for timing noise).
        assert 0 < network < 1.5 * total and 0 < merge < 1.5 * total
    # Wider stages, more parameters (w2 scales conv4..conv5, w1 conv2..conv3).
    by_name = {line[0]: float(line[5]) for line in lines}
    assert by_name["swidernet_0.25_0.25_0.35"] < by_name["swidernet_0.25_0.35_0.35"]
    assert by_name["swidernet_0.25_0.25_0.35"] < by_name["swidernet_0.5_0.25_0.35"]
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # With latency measured, the front is drawn over latency (x) and M-Adds (y).
    markdown = (out / "results.md").read_text()
    assert "| swidernet_0.5_0.35_0.35 |" in markdown and "latency_ms" in markdown


def test_unknown_measure(tmp_path):
    with pytest.raises(ValueError, match=r"unknown measure\(s\) \['speed'\]"):
        grid_search.run(space="fast", measures=["speed"], output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="give --gin_file"):
        grid_search.run(space="fast", measures=["pq"], output_dir=str(tmp_path))


def test_pq_refuses_a_dataset_the_recipe_does_not_train_on(tmp_path):
    bindings = [f"DATA_DIR = '{tmp_path}'", "custom_space.w1 = [0.25]"]
    try:
        with pytest.raises(ValueError, match="--dataset=coco contradicts the recipe.*'synthetic'"):
            grid_search.run(
                space="custom",
                measures=["params", "pq"],
                output_dir=str(tmp_path / "search"),
                dataset="coco",
                gin_files=[str(ROOT / "tests/training/tiny.gin")],
                gin_bindings=bindings,
            )
    finally:
        gin.clear_config()
    assert not (tmp_path / "search").exists()  # refused before any work


def test_counting_defines_no_flag_of_its_own():
    # model_stats' --atrous_counting used to be defined on import, so that the
    # grid search listed (and ignored) it.
    code = (
        "from absl import flags; from swiderrnet_tf import grid_search;"
        "grid_search.define_flags(); print(sorted(flags.FLAGS))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "atrous_counting" not in done.stdout and "'measure'" in done.stdout


def test_pq_trains_and_evaluates_each_candidate(tmp_path):
    # One candidate of a custom grid, trained 6 steps with the training tests'
    # tiny recipe; the PQ comes from the evaluation the run wrote.
    gin.clear_config()
    out = tmp_path / "search"
    bindings = [
        f"DATA_DIR = '{tmp_path / 'data'}'",
        "custom_space.w1 = [0.25]",
        "custom_space.w2 = [0.25]",
        "custom_space.l = [0.35]",
        "custom_space.regime = 'strong'",
    ]
    try:
        gin.parse_config(bindings[1:])
        rows = grid_search.run(
            space="custom",
            measures=["params", "pq"],
            output_dir=str(out),
            gin_files=[str(ROOT / "tests/training/tiny.gin")],
            gin_bindings=bindings,
            log=lambda line: None,
        )
    finally:
        gin.clear_config()
    (row,) = rows
    run_dir = out / "runs" / "swidernet_0.25_0.25_0.35"
    (result,) = run_dir.glob("eval/results_step_6.json")
    assert row["pq"] == pytest.approx(100 * json.loads(result.read_text())["metrics"]["pq"])
    assert 0 <= row["pq"] <= 100
    assert (run_dir / grid_search.PQ_LOG).exists()


# Run as a program with TensorFlow made unimportable, as on a GPU machine that
# has JAX only.
_WITHOUT_TENSORFLOW = """
import importlib.abc, runpy, sys
class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError("no TensorFlow here")
sys.meta_path.insert(0, NoTensorFlow())
sys.argv = ["grid_search", *sys.argv[1:]]
runpy.run_module("swiderrnet_tf.grid_search", run_name="__main__")
"""


def test_params_and_latency_under_jax_without_tensorflow(tmp_path):
    out = tmp_path / "search"
    arguments = [
        "--space=custom",
        "--gin_bindings=custom_space.w1 = [0.25]",
        "--gin_bindings=custom_space.w2 = [0.25]",
        "--gin_bindings=custom_space.l = [0.35]",
        "--dataset=synthetic",
        "--height=33",
        "--width=41",
        "--measure=params,latency",
        "--repeats=1",
        f"--output_dir={out}",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": "jax"}
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TENSORFLOW, *arguments],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    header, row = (out / "results.csv").read_text().splitlines()
    assert header == "name,w1,w2,l,regime,params_m,latency_ms,network_ms,merge_ms"
    assert row.startswith("swidernet_0.25_0.25_0.35,0.25,0.25,0.35,fast,")
    assert all(float(v) > 0 for v in row.split(",")[5:])
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
