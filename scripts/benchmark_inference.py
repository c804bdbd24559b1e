r"""End-to-end inference latency of Panoptic-DeepLab variants: network, merge, total.

For each variant, dataset size and batch size, prints the median wall time of
  * `network`: images (a tensor) -> semantic, center and offset outputs;
  * `merge`: outputs -> panoptic map (numpy), fed `--centers` realistic
    instances (`latency.synthetic_outputs`; 0: the network's own outputs,
    which with random weights hold no center);
  * `end to end`: uint8 numpy images -> network -> merge -> numpy panoptic map;
and the merge's share of the end-to-end time, the end-to-end process CPU
time (all threads; on a shared machine less noisy than wall time) and the
first call (tracing and compilation). Weights are random (latency does
not depend on them). Two dataset sizes: `coco` (641 x 641, 133 classes, NMS
41, 200 center slots, as the label divisor 256 allows) and `cityscapes`
(1025 x 2049, 19 classes, NMS 13, 400 center slots), deeplab2's settings.

  python scripts/benchmark_inference.py                          # the full grid
  python scripts/benchmark_inference.py --variants=fast --batches=1 --repeats=3
  python scripts/benchmark_inference.py --variants=swidernet_0.25_0.25_0.75 \
      --datasets=cityscapes --batches=1 --json
  KERAS_BACKEND=jax python scripts/benchmark_inference.py --variants=fast --batches=1
  python scripts/benchmark_inference.py --variants=fast --batches=1 --markdown

`--precisions=float32,bfloat16` measures the network in both precisions
(bfloat16 falls back to float32 where the hardware lacks it, unless
`--allow_emulated_bfloat16`). Each row gives the network's achieved GFLOP/s,
2 x its M-Adds (`counting.count_madds`) per second, and its share of the
GFLOP/s of a `--matmul_size` square matmul in the same precision, measured at
the start of the same run.

`--markdown` prints a markdown table with the paper's Tesla V100 runtimes
(Table 5, batch 1) beside the rows they exist for (docs/latency.md).

`--variants` takes registry names, `fast` (the paper's five fast picks,
`registry.FAST_PICKS`, fast regime) and `strong` (`--strong_variant` in the
strong regime). Both regimes use the paper layout with SE and SAC. On
TensorFlow the network runs as a `tf.function` and the merge under XLA; on
JAX both under `jax.jit`, the model built without running its initializers
(each one would cost a JAX compilation).
"""

import itertools
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from swiderrnet_tf.backbones import registry  # noqa: E402
from swiderrnet_tf.data import dataset_info  # noqa: E402
from swiderrnet_tf.inference import latency  # noqa: E402
from swiderrnet_tf.inference import precision as precision_lib  # noqa: E402
from swiderrnet_tf.tools import counting  # noqa: E402
from swiderrnet_tf.tools import paper_reference  # noqa: E402

FLAGS = flags.FLAGS
# Dataset size -> (dataset, (height, width)); merge settings: the dataset's (DatasetInfo).
DATASETS = {"coco": ("coco", (641, 641)), "cityscapes": ("cityscapes", (1025, 2049))}


def define_flags():
    flags.DEFINE_list("variants", ["fast", "strong"], "Registry names, `fast` and/or `strong`.")
    flags.DEFINE_string("strong_variant", "swidernet_1_1_1", "The variant `strong` stands for.")
    flags.DEFINE_list("datasets", list(DATASETS), f"Sizes to run: {sorted(DATASETS)}.")
    flags.DEFINE_list("batches", ["1", "8"], "Batch sizes.")
    flags.DEFINE_integer("repeats", 5, "Timed calls per median.")
    flags.DEFINE_integer("centers", 20, "Instances per image fed to the merge (0: network's).")
    flags.DEFINE_boolean("json", False, "Print one JSON list instead of the table.")
    flags.DEFINE_boolean("markdown", False, "Print a markdown table with the paper's runtimes.")
    flags.DEFINE_integer("seed", 0, "Seed of the images and weights.")
    flags.DEFINE_list(
        "precisions", ["float32"], f"Network precisions, of {precision_lib.PRECISIONS}."
    )
    flags.DEFINE_boolean(
        "allow_emulated_bfloat16",
        False,
        "Measure bfloat16 even where the hardware lacks it (to see what it costs).",
    )
    flags.DEFINE_integer("matmul_size", 2048, "Side of the square matmul that sets the peak.")


def expand_variants(names, strong_variant: str) -> list[tuple[str, str]]:
    """(registry name, regime) pairs for the `--variants` entries."""
    result = []
    for name in names:
        if name == "fast":
            result += [(registry.variant_name(*f), "fast") for f in registry.FAST_PICKS]
        elif name == "strong":
            result.append((strong_variant, "strong"))
        else:
            registry.backbone_args(name)  # fails with the list of valid names
            result.append((name, "fast" if name.startswith("swidernet_0.25") else "strong"))
    return result


def matmul_peaks(precisions, size: int, repeats: int) -> dict:
    """GFLOP/s of a `size`-square matmul per precision (`latency.matmul_gflops`)."""
    return {p: latency.matmul_gflops(p, size=size, repeats=repeats) for p in precisions}


def run(
    variants,
    datasets,
    batches,
    repeats,
    centers,
    seed,
    print_rows=True,
    *,
    precisions=("float32",),
    peaks=None,
) -> list[dict]:
    """Measures every combination; returns one row dict per measurement.

    Args:
      variants: (registry name, regime) pairs, see `expand_variants`.
      datasets: Keys of `DATASETS`.
      batches: Batch sizes.
      repeats: Timed calls per median.
      centers: Instances per image fed to the merge; 0 for the network's outputs.
      seed: Seed of the images, weights and synthetic outputs.
      print_rows: Print each row of the table as it is measured.
      precisions: Network precisions (already resolved for this machine).
      peaks: Matmul GFLOP/s per precision (`matmul_peaks`); rows get the
        network's share of it.
    """
    rows = []
    for name in datasets:
        dataset, (height, width) = DATASETS[name]
        info = dataset_info.get_dataset_info(dataset)
        for (variant, regime), precision in itertools.product(variants, precisions):
            start = time.perf_counter()
            model = latency.build_random_model(
                variant, regime, info.num_classes, seed, precision=precision
            )
            network_fn, merge_fn = latency.build_pipeline(model, info)
            built = time.perf_counter() - start
            madds = counting.count_madds(model, height, width)
            for batch in batches:
                logging.info("Measuring %s %s batch %d", variant, name, batch)
                images = np.random.default_rng(seed).integers(
                    0, 256, (batch, height, width, 3), dtype=np.uint8
                )
                merge_inputs = None
                if centers:
                    merge_inputs = latency.synthetic_outputs(
                        batch, height, width, info, num_instances=centers, seed=seed
                    )
                result = latency.measure(
                    network_fn, merge_fn, images, repeats=repeats, merge_inputs=merge_inputs
                )
                rows.append(
                    {
                        "variant": variant,
                        "regime": regime,
                        "dataset": name,
                        "height": height,
                        "width": width,
                        "batch": batch,
                        "precision": precision,
                        "centers": centers,
                        "build_s": built,
                        "madds_b": madds / 1e9,
                        "gflops": 2 * madds * batch / result.network / 1e9,
                        "peak_gflops": (peaks or {}).get(precision, float("nan")),
                        **result.as_dict(),
                    }
                )
                rows[-1]["peak_share"] = rows[-1]["gflops"] / rows[-1]["peak_gflops"]
                if print_rows:
                    print(format_row(rows[-1]), flush=True)
            del model, network_fn, merge_fn
            keras.backend.clear_session()
    return rows


HEADER = (
    f"{'variant':<26} {'regime':<6} {'size':>9} {'batch':>5} {'prec':>8} {'network s':>10} "
    f"{'GFLOP/s':>8} {'% peak':>7} "
    f"{'merge s':>8} {'end2end s':>10} {'merge %':>8} {'s/image':>8} {'cpu s':>7} {'first s':>8}"
)


def format_row(row: dict) -> str:
    return (
        f"{row['variant']:<26} {row['regime']:<6} {row['height']:>4}x{row['width']:<4} "
        f"{row['batch']:>5} {row['precision']:>8} {row['network']:10.3f} "
        f"{row['gflops']:8.1f} {100 * row['peak_share']:6.1f}% {row['merge']:8.3f} "
        f"{row['end_to_end']:10.3f} {100 * row['merge_share']:7.1f}% "
        f"{row['end_to_end'] / row['batch']:8.3f} {row['end_to_end_cpu']:7.2f} "
        f"{row['first_call']:8.2f}"
    )


def markdown(rows: list[dict]) -> str:
    """Rows as a markdown table (milliseconds), with the paper's V100 runtime and PQ."""
    lines = [
        "| variant | regime | input | batch | precision | network ms | network GFLOP/s "
        "| of matmul peak | merge ms | end-to-end ms | merge share | paper V100 ms (batch 1) "
        "| paper PQ |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        info = dataset_info.get_dataset_info(DATASETS[row["dataset"]][0])
        key = (row["variant"], info.num_classes, row["height"], row["width"])
        paper_ms, paper_pq = paper_reference.RUNTIME_V100_MS.get(key, (None, None))
        if row["batch"] != 1:
            paper_ms = paper_pq = None
        lines.append(
            f"| {row['variant']} | {row['regime']} | {row['height']}x{row['width']} "
            f"| {row['batch']} | {row['precision']} | {1000 * row['network']:.0f} "
            f"| {row['gflops']:.1f} | {100 * row['peak_share']:.0f}% | {1000 * row['merge']:.0f} "
            f"| {1000 * row['end_to_end']:.0f} | {100 * row['merge_share']:.1f}% "
            f"| {'' if paper_ms is None else paper_ms} | {'' if paper_pq is None else paper_pq} |"
        )
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    unknown = sorted(set(FLAGS.datasets) - set(DATASETS))
    if unknown:
        raise app.UsageError(f"unknown --datasets {unknown}; known: {sorted(DATASETS)}")
    variants = expand_variants(FLAGS.variants, FLAGS.strong_variant)
    batches = [int(b) for b in FLAGS.batches]
    if FLAGS.json and FLAGS.markdown:
        raise app.UsageError("--json and --markdown exclude each other")
    try:
        precisions = [
            precision_lib.resolve_precision(p, allow_emulated=FLAGS.allow_emulated_bfloat16)
            for p in FLAGS.precisions
        ]
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    precisions = list(dict.fromkeys(precisions))  # a fallback may repeat float32
    load_before = os.getloadavg()[0]
    peaks = matmul_peaks(precisions, FLAGS.matmul_size, FLAGS.repeats)
    _, cpu_flags = precision_lib.bfloat16_supported()

    def preamble(load_after=None):
        load = f"{load_before:.2f}" + ("" if load_after is None else f" -> {load_after:.2f}")
        peak = ", ".join(f"{p} {g:.1f}" for p, g in peaks.items())
        return (
            f"backend {keras.backend.backend()}, {os.cpu_count()} CPUs ({cpu_flags}), load "
            f"average {load}, repeats {FLAGS.repeats}, merge fed "
            f"{FLAGS.centers or 'the network'}{' instances' if FLAGS.centers else ''}, "
            f"{FLAGS.matmul_size}-square matmul peak GFLOP/s: {peak}"
        )

    if not FLAGS.json and not FLAGS.markdown:
        print(preamble())
        print(HEADER, flush=True)
    rows = run(
        variants,
        FLAGS.datasets,
        batches,
        FLAGS.repeats,
        FLAGS.centers,
        FLAGS.seed,
        print_rows=not FLAGS.json and not FLAGS.markdown,
        precisions=precisions,
        peaks=peaks,
    )
    if FLAGS.markdown:
        print(preamble(os.getloadavg()[0]) + "\n")
        print(markdown(rows))
    if FLAGS.json:
        json.dump(
            {
                "backend": keras.backend.backend(),
                "load_average": os.getloadavg(),
                "matmul_gflops": peaks,
                "rows": rows,
            },
            sys.stdout,
            indent=1,
        )
        print()


if __name__ == "__main__":
    define_flags()
    app.run(main)
