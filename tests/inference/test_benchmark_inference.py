"""The inference benchmark script: variant selection and one tiny measured row."""

import importlib.util
import pathlib

import pytest

_SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "benchmark_inference.py"


@pytest.fixture
def benchmark():
    spec = importlib.util.spec_from_file_location("benchmark_inference", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_variant_names(benchmark):
    variants = benchmark.expand_variants(["fast", "strong"], "swidernet_1_1_1")
    assert variants == [
        ("swidernet_0.25_0.25_0.75", "fast"),
        ("swidernet_0.25_0.35_0.75", "fast"),
        ("swidernet_0.25_0.35_1", "fast"),
        ("swidernet_0.25_0.5_1", "fast"),
        ("swidernet_0.25_0.75_1", "fast"),
        ("swidernet_1_1_1", "strong"),
    ]
    with pytest.raises(ValueError, match="unknown backbone"):
        benchmark.expand_variants(["resnet50"], "swidernet_1_1_1")


def test_one_tiny_row(benchmark, monkeypatch):
    monkeypatch.setitem(benchmark.DATASETS, "tiny", ("synthetic", (33, 45)))
    rows = benchmark.run(
        [("swidernet_0.25_0.25_0.35", "fast")], ["tiny"], [2], 2, 3, 0, print_rows=False
    )
    (row,) = rows
    assert row["variant"] == "swidernet_0.25_0.25_0.35" and row["batch"] == 2
    assert row["merge_share"] > 0 and row["end_to_end"] > 0
    assert "swidernet_0.25_0.25_0.35" in benchmark.format_row(row)
