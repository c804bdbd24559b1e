"""Grid search over SWideRNet-(w1, w2, l) (paper section 3.2, Fig. 3, Tables 4-5).

Usage:
  python -m swiderrnet_tf.grid_search --space fast --measure params,madds,latency \\
      --output_dir search/fast
  python -m swiderrnet_tf.grid_search --space custom --gin_file my_grid.gin \\
      --measure params,madds --output_dir search/mine
  python -m swiderrnet_tf.grid_search --space custom --gin_file gin_configs/demo.gin \\
      --gin_bindings='custom_space.w1 = [0.25]' \\
      --gin_bindings='custom_space.w2 = [0.25, 0.5]' \\
      --gin_bindings='custom_space.l = [0.35]' \\
      --gin_bindings='DATA_DIR = "data/synthetic"' \\
      --dataset synthetic --height 129 --width 129 \\
      --measure params,latency,pq --output_dir search/demo

Enumerates the paper's S_fast (45 candidates) or S_strong (21), or a custom grid
from gin (`custom_space.w1/w2/l`), measures each candidate on the current device
and writes `results.csv`, `results.md` and `pareto.png` (the Pareto front marked)
into --output_dir. Interrupted searches resume: rerun the same command and only
missing measurements are taken. Measures:
  params   trainable parameters of the whole Panoptic-DeepLab (millions)
  madds    multiply-adds of one image (billions; see tools/model_stats.py;
           needs TensorFlow)
  latency  median end-to-end milliseconds of one batch: uint8 images in, panoptic
           map out (network, then the merge fed `--centers` instances), with
           the network's and the merge's share (`inference/latency.py`); on
           TensorFlow, or on JAX with KERAS_BACKEND=jax (where TensorFlow is
           not installed: `--measure=params,latency`)
  pq       PQ (%) after training the candidate with the gin recipe of
           --gin_file (e.g. gin_configs/demo.gin, or coco_fast.gin with fewer
           steps): `python -m swiderrnet_tf.train --mode=train_and_eval` in a
           child process per candidate, into <output_dir>/runs/<candidate>,
           which resumes from its checkpoints when the search is rerun
The dataset (`--dataset`, default COCO as the paper's Fig. 3) sets the number
of classes and the merge settings.
"""

import functools
import glob
import json
import os
import pathlib
import subprocess
import sys
import time

import gin
import keras
import numpy as np
from absl import app
from absl import flags

from swiderrnet_tf import cli
from swiderrnet_tf.data import dataset_info as dataset_info_lib
from swiderrnet_tf.search import pareto
from swiderrnet_tf.search import results as results_lib
from swiderrnet_tf.search import spaces
from swiderrnet_tf.tools import model_stats

# The pq measure's training log, in each candidate's run folder.
PQ_LOG = "search_train.log"


@functools.lru_cache(maxsize=1)
def _stateless_model(name: str, regime: str, num_classes: int):
    """The candidate's model without weight values, shared by params and madds."""
    return model_stats.build_stateless(name, num_classes=num_classes, regime=regime)


def _params(candidate, *, info, **unused):
    model = _stateless_model(candidate.name, candidate.regime, info.num_classes)
    return {"params_m": model_stats.count_parameters(model) / 1e6}


def _madds(candidate, *, info, height, width, **unused):
    # Counted in a traced TensorFlow graph; the other measures run on JAX alone too.
    model = _stateless_model(candidate.name, candidate.regime, info.num_classes)
    return {"madds_b": model_stats.count_madds(model, height, width) / 1e9}


def _latency(candidate, *, info, height, width, batch_size, repeats, centers, **unused):
    from swiderrnet_tf.inference import latency

    model = latency.build_random_model(candidate.name, candidate.regime, info.num_classes)
    settings = latency.MERGE_SETTINGS.get(info.name, {})
    network_fn, merge_fn = latency.build_pipeline(model, info, **settings)
    images = np.random.default_rng(0).integers(
        0, 256, (batch_size, height, width, 3), dtype=np.uint8
    )
    merge_inputs = None
    if centers:
        merge_inputs = latency.synthetic_outputs(
            batch_size, height, width, info, num_instances=centers
        )
    result = latency.measure(
        network_fn, merge_fn, images, repeats=repeats, merge_inputs=merge_inputs
    )
    del model, network_fn, merge_fn
    keras.backend.clear_session()
    _stateless_model.cache_clear()  # built before the session was cleared
    return {
        "latency_ms": 1000 * result.end_to_end,
        "network_ms": 1000 * result.network,
        "merge_ms": 1000 * result.merge,
    }


def _pq(candidate, *, output_dir, gin_files, gin_bindings, tpu, **unused):
    model_dir = os.path.join(output_dir, "runs", candidate.name)
    os.makedirs(model_dir, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "swiderrnet_tf.train",
        "--mode=train_and_eval",
        f"--model_dir={model_dir}",
        *([f"--tpu={tpu}"] if tpu else []),
        *(f"--gin_file={f}" for f in gin_files),
        *(f"--gin_bindings={b}" for b in gin_bindings),
        f"--gin_bindings=build_panoptic_deeplab.backbone = '{candidate.name}'",
        f"--gin_bindings=build_panoptic_deeplab.regime = '{candidate.regime}'",
    ]
    log_path = os.path.join(model_dir, PQ_LOG)
    with open(log_path, "a") as log:
        log.write(" ".join(command) + "\n")
        log.flush()
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        with open(log_path) as log:
            tail = "".join(log.readlines()[-15:])
        raise RuntimeError(
            f"training {candidate.name} exited with status {done.returncode}; "
            f"log {log_path}:\n{tail}"
        )
    found = glob.glob(os.path.join(model_dir, "eval", "results_step_*.json"))
    if not found:
        raise RuntimeError(f"training {candidate.name} wrote no evaluation; see {log_path}")
    newest = max(found, key=lambda p: int(p.rsplit("_", 1)[1].split(".")[0]))
    with open(newest) as f:
        metrics = json.load(f)["metrics"]
    return {"pq": 100.0 * metrics["pq"]}


# measure name -> (columns it fills, function of (candidate, **settings) -> values)
MEASURES = {
    "params": (("params_m",), _params),
    "madds": (("madds_b",), _madds),
    "latency": (("latency_ms", "network_ms", "merge_ms"), _latency),
    "pq": (("pq",), _pq),
}


def run(
    *,
    space: str,
    measures: list[str],
    output_dir: str,
    dataset: str = "coco",
    height: int = 641,
    width: int = 641,
    batch_size: int = 1,
    repeats: int = 5,
    centers: int = 20,
    gin_files=(),
    gin_bindings=(),
    tpu: str | None = None,
    max_candidates: int | None = None,
    log=print,
) -> list[dict]:
    """Measures every candidate of `space` that is missing a requested measure.

    Args:
      space: `fast`, `strong` or `custom` (gin's `custom_space`).
      measures: Keys of `MEASURES`.
      output_dir: Where results, the plot and the pq runs go.
      dataset: A registered dataset: classes and merge settings.
      height, width: Input size of params/madds/latency.
      batch_size, repeats, centers: Latency: images per call, timed calls per
        median, instances fed to the merge (0: the network's own outputs).
      gin_files, gin_bindings: The training recipe of the pq measure.
      tpu: The pq measure's `--tpu` for the training runs.
      max_candidates: Stop after measuring this many candidates.
      log: Called with one progress line per candidate.

    Returns:
      The rows of the results table, in search-space order.
    """
    unknown = sorted(set(measures) - set(MEASURES))
    if unknown:
        raise ValueError(f"unknown measure(s) {unknown}; available: {sorted(MEASURES)}")
    if not measures:
        raise ValueError(f"give at least one measure of {sorted(MEASURES)}")
    if "pq" in measures and not gin_files:
        raise ValueError(
            "--measure pq trains each candidate with a gin recipe: give --gin_file "
            "(e.g. gin_configs/demo.gin)"
        )
    info = dataset_info_lib.get_dataset_info(dataset)
    columns = [c for m in measures for c in MEASURES[m][0]]
    out = pathlib.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = results_lib.ResultsTable(str(out / "results.csv"), columns)
    settings = dict(
        info=info,
        height=height,
        width=width,
        batch_size=batch_size,
        repeats=repeats,
        centers=centers,
        output_dir=str(out),
        gin_files=list(gin_files),
        gin_bindings=list(gin_bindings),
        tpu=tpu,
    )
    todo = spaces.candidates(space)
    measured = 0
    for index, candidate in enumerate(todo):
        missing = table.missing(candidate.name, columns)
        if not missing:
            continue
        if max_candidates is not None and measured >= max_candidates:
            log(f"stopping after {measured} candidates (--max_candidates); rerun to continue")
            break
        start = time.time()
        values = {}
        for measure in measures:
            measure_columns, function = MEASURES[measure]
            if set(measure_columns) & set(missing):
                values.update(function(candidate, **settings))
        key = {
            "name": candidate.name,
            "w1": candidate.w1,
            "w2": candidate.w2,
            "l": candidate.l,
            "regime": candidate.regime,
        }
        table.update(key, {c: values[c] for c in columns if c in values})
        measured += 1
        shown = ", ".join(f"{c}={values[c]:.4g}" for c in columns if c in values)
        log(
            f"[{index + 1}/{len(todo)}] {candidate.name} {candidate.regime}: {shown} "
            f"({time.time() - start:.1f}s)"
        )
    names = [c.name for c in todo]
    rows = [table.rows[n] for n in names if n in table.rows]
    x, y = pareto.axes(columns)
    front = pareto.pareto_front(rows, x, y)
    (out / "results.md").write_text(pareto.markdown(rows, columns, front) + "\n")
    title = f"SWideRNet {space} search, {height}x{width}, {info.name}"
    if "latency" in measures:
        title += f", {keras.backend.backend()} batch {batch_size}"
    pareto.plot(rows, x, y, front, str(out / "pareto.png"), title)
    return rows


FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (only when run as a program)."""
    flags.DEFINE_enum("space", "fast", list(spaces.SPACES), "Search space.")
    flags.DEFINE_list("measure", ["params", "madds"], f"Measures: {sorted(MEASURES)}.")
    flags.DEFINE_string("output_dir", None, "Where results.csv/.md and pareto.png go.")
    flags.DEFINE_multi_string("gin_file", [], "Gin files (a custom grid, a training recipe).")
    flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings.")
    flags.DEFINE_string("tpu", None, "pq: --tpu of each training run (else GPUs or CPU).")
    flags.DEFINE_string("dataset", "coco", "Registered dataset: classes, merge settings.")
    flags.DEFINE_integer("height", 641, "Input height.")
    flags.DEFINE_integer("width", 641, "Input width.")
    flags.DEFINE_integer("batch_size", 1, "Latency: images per call.")
    flags.DEFINE_integer("repeats", 5, "Latency: timed calls per median.")
    flags.DEFINE_integer("centers", 20, "Latency: instances fed to the merge (0: network's).")
    flags.DEFINE_integer("max_candidates", None, "Stop after measuring this many candidates.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required")
    status = cli.run_main(_search_from_flags, user_errors=(KeyError, RuntimeError))
    if status == 0:
        print(f"results in {FLAGS.output_dir}/results.csv, results.md, pareto.png")
    return status


def _search_from_flags() -> None:
    if "pq" in FLAGS.measure:
        # Training needs TensorFlow and every gin name of the recipe.
        from swiderrnet_tf.training import gin_config
        from swiderrnet_tf.training import gin_registry  # noqa: F401

        files = gin_config.parse(FLAGS.gin_file, FLAGS.gin_bindings)
    else:
        # Only the grid is read; recipe bindings of a shared gin file are
        # skipped, so the search also runs where only JAX is installed.
        files = list(FLAGS.gin_file)
        gin.parse_config_files_and_bindings(files, FLAGS.gin_bindings, skip_unknown=True)
    run(
        space=FLAGS.space,
        measures=FLAGS.measure,
        output_dir=FLAGS.output_dir,
        dataset=FLAGS.dataset,
        height=FLAGS.height,
        width=FLAGS.width,
        batch_size=FLAGS.batch_size,
        repeats=FLAGS.repeats,
        centers=FLAGS.centers,
        gin_files=files,
        gin_bindings=FLAGS.gin_bindings,
        tpu=FLAGS.tpu,
        max_candidates=FLAGS.max_candidates,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
