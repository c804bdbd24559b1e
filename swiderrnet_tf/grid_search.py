"""Grid search over SWideRNet-(w1, w2, l) (paper section 3.2, Fig. 3, Tables 4-5).

Usage:
  python -m swiderrnet_tf.grid_search --space fast --measure params,madds \\
      --output_dir search/fast
  python -m swiderrnet_tf.grid_search --space custom --gin_file my_grid.gin \\
      --measure params,madds --output_dir search/mine

Enumerates the paper's S_fast (45 candidates) or S_strong (21), or a custom grid
from gin (`custom_space.w1/w2/l`), measures each candidate on the current device
and writes `results.csv`, `results.md` and `pareto.png` (the Pareto front marked)
into --output_dir. Interrupted searches resume: rerun the same command and only
missing measurements are taken. Measures:
  params   trainable parameters of the whole Panoptic-DeepLab (millions)
  madds    multiply-adds of one image (billions; see tools/model_stats.py)
"""

import pathlib
import sys
import time

import gin
from absl import app
from absl import flags

from swiderrnet_tf.search import pareto
from swiderrnet_tf.search import results as results_lib
from swiderrnet_tf.search import spaces
from swiderrnet_tf.tools import model_stats


def _params_and_madds(candidate, *, num_classes, height, width, **unused):
    stats = model_stats.model_stats(
        candidate.name,
        num_classes=num_classes,
        height=height,
        width=width,
        regime=candidate.regime,
    )
    return {"params_m": stats["params"] / 1e6, "madds_b": stats["madds"] / 1e9}


# measure name -> (columns it fills, function of (candidate, **settings) -> values)
MEASURES = {
    "params": (("params_m",), _params_and_madds),
    "madds": (("madds_b",), _params_and_madds),
}


def run(
    *,
    space: str,
    measures: list[str],
    output_dir: str,
    num_classes: int,
    height: int,
    width: int,
    max_candidates: int | None = None,
    log=print,
) -> list[dict]:
    """Measures every candidate of `space` that is missing a requested measure.

    Returns:
      The rows of the results table, in search-space order.
    """
    unknown = sorted(set(measures) - set(MEASURES))
    if unknown:
        raise ValueError(f"unknown measure(s) {unknown}; available: {sorted(MEASURES)}")
    columns = [c for m in measures for c in MEASURES[m][0]]
    out = pathlib.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = results_lib.ResultsTable(str(out / "results.csv"), columns)
    settings = dict(num_classes=num_classes, height=height, width=width)
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
            if set(measure_columns) & set(missing) and not set(measure_columns) <= set(values):
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
    title = f"SWideRNet {space} search, {height}x{width}, {num_classes} classes"
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
    flags.DEFINE_integer("num_classes", 133, "Semantic classes (133: COCO, as the paper).")
    flags.DEFINE_integer("height", 641, "Input height.")
    flags.DEFINE_integer("width", 641, "Input width.")
    flags.DEFINE_integer("max_candidates", None, "Stop after measuring this many candidates.")


def main(argv):
    del argv
    if not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required")
    try:
        gin.parse_config_files_and_bindings(FLAGS.gin_file, FLAGS.gin_bindings)
        run(
            space=FLAGS.space,
            measures=FLAGS.measure,
            output_dir=FLAGS.output_dir,
            num_classes=FLAGS.num_classes,
            height=FLAGS.height,
            width=FLAGS.width,
            max_candidates=FLAGS.max_candidates,
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except (ValueError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"results in {FLAGS.output_dir}/results.csv, results.md, pareto.png")
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
