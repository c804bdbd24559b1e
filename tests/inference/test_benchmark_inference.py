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


def test_one_tiny_row_per_precision(benchmark, monkeypatch):
    monkeypatch.setitem(benchmark.DATASETS, "tiny", ("synthetic", (33, 45)))
    peaks = benchmark.matmul_peaks(["float32", "bfloat16"], size=64, repeats=1)
    rows = benchmark.run(
        [("swidernet_0.25_0.25_0.35", "fast")],
        ["tiny"],
        [2],
        2,
        3,
        0,
        print_rows=False,
        precisions=("float32", "bfloat16"),
        peaks=peaks,
    )
    assert [row["precision"] for row in rows] == ["float32", "bfloat16"]
    for row in rows:
        assert row["variant"] == "swidernet_0.25_0.25_0.35" and row["batch"] == 2
        assert row["merge_share"] > 0 and row["end_to_end"] > 0
        # Same model, same M-Adds; the achieved rate is 2 x M-Adds x batch / network time.
        assert row["madds_b"] == rows[0]["madds_b"] > 0
        assert row["gflops"] * row["network"] == pytest.approx(4 * row["madds_b"])
        assert row["peak_share"] == pytest.approx(row["gflops"] / peaks[row["precision"]])
        assert "swidernet_0.25_0.25_0.35" in benchmark.format_row(row)


def test_markdown_puts_the_papers_runtime_beside_batch_1_rows(benchmark):
    row = dict(
        variant="swidernet_0.25_0.35_1",
        regime="fast",
        dataset="coco",
        height=641,
        width=641,
        batch=1,
        precision="float32",
        network=0.5,
        gflops=40.0,
        peak_share=0.5,
        merge=0.05,
        end_to_end=0.6,
        merge_share=0.05 / 0.6,
    )
    table = benchmark.markdown([row, {**row, "batch": 8}, {**row, "dataset": "cityscapes"}])
    _, _, first, eighth, cityscapes = table.splitlines()
    # Table 5: 35.96 ms on a V100, PQ 36.0 on COCO val.
    assert first.endswith("| float32 | 500 | 40.0 | 50% | 50 | 600 | 8.3% | 35.96 | 36.0 |")
    assert eighth.endswith("| 8.3% |  |  |")
    # The row says 641x641 but the Cityscapes key is 1025x2049: no paper figure.
    assert cityscapes.endswith("| 8.3% |  |  |")
