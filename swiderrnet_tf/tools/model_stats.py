"""Parameter and multiply-add counts of SWideRNet / Panoptic-DeepLab models.

Usage:
  python -m swiderrnet_tf.tools.model_stats --backbone swidernet_1_1_1 \\
      --num_classes 133 --height 641 --width 641 --regime strong
  python -m swiderrnet_tf.tools.model_stats --backbone wide_resnet41 --override sac=false \\
      --num_classes 133 --height 641 --width 641 --json
  python -m swiderrnet_tf.tools.model_stats --all --num_classes 19 --height 1025 \\
      --width 2049 --output_dir stats/

The counting rule and the functions are in `tools.counting`;
`--atrous_counting=dense` counts atrous convolutions at their real output size.
"""

import csv
import json
import pathlib
import sys

from absl import app
from absl import flags

from swiderrnet_tf import cli
from swiderrnet_tf.tools import counting
from swiderrnet_tf.tools import overrides as overrides_lib

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (only when run as a program)."""
    flags.DEFINE_string(
        "backbone", None, "Backbone name (see swiderrnet_tf.backbones.list_backbones)."
    )
    flags.DEFINE_integer("num_classes", 19, "Semantic classes of the Panoptic-DeepLab head.")
    flags.DEFINE_integer("height", 1025, "Input height.")
    flags.DEFINE_integer("width", 2049, "Input width.")
    flags.DEFINE_enum("regime", None, ["fast", "strong"], "Decoder regime (--all: per variant).")
    flags.DEFINE_enum("layout", None, ["paper", "deeplab2"], "Backbone layout (default paper).")
    flags.DEFINE_multi_string("override", [], "Backbone option KEY=VALUE, e.g. sac=false.")
    flags.DEFINE_bool("backbone_only", False, "Count the backbone alone.")
    flags.DEFINE_bool("json", False, "Print one JSON object with keys params and madds.")
    flags.DEFINE_bool("all", False, "Sweep the registry (see --pattern) into a table.")
    flags.DEFINE_string("pattern", "*", "With --all: glob over backbone names.")
    flags.DEFINE_string(
        "output_dir", None, "With --all: write model_stats.md and model_stats.csv here."
    )
    flags.DEFINE_enum(
        "atrous_counting", "graph", list(counting.ATROUS_COUNTING), "How atrous convs count."
    )


def main(argv):
    del argv
    if not FLAGS.all and not FLAGS.backbone:
        raise app.UsageError("give --backbone NAME or --all")
    return cli.run_main(_stats_from_flags)


def _stats_from_flags() -> None:
    backbone_overrides = overrides_lib.parse_overrides(FLAGS.override)
    if FLAGS.layout:
        backbone_overrides["layout"] = FLAGS.layout
    if FLAGS.all:
        rows = counting.sweep(
            pattern=FLAGS.pattern,
            num_classes=FLAGS.num_classes,
            height=FLAGS.height,
            width=FLAGS.width,
            regime=FLAGS.regime,
            backbone_overrides=backbone_overrides,
            backbone_only=FLAGS.backbone_only,
            atrous_counting=FLAGS.atrous_counting,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
        table = counting.markdown_table(rows)
        print(table)
        if FLAGS.output_dir:
            out = pathlib.Path(FLAGS.output_dir)
            out.mkdir(parents=True, exist_ok=True)
            (out / "model_stats.md").write_text(table + "\n")
            with open(out / "model_stats.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        return
    regime = FLAGS.regime or "strong"
    stats = counting.model_stats(
        FLAGS.backbone,
        num_classes=FLAGS.num_classes,
        height=FLAGS.height,
        width=FLAGS.width,
        regime=regime,
        backbone_overrides=backbone_overrides,
        backbone_only=FLAGS.backbone_only,
        atrous_counting=FLAGS.atrous_counting,
    )
    if FLAGS.json:
        print(json.dumps(stats))
    else:
        what = "backbone" if FLAGS.backbone_only else f"Panoptic-DeepLab ({regime})"
        print(
            f"| model | input | params (M) | M-Adds (B) |\n|---|---|---:|---:|\n"
            f"| {FLAGS.backbone} {what} | {FLAGS.height}x{FLAGS.width} | "
            f"{stats['params'] / 1e6:.2f} | {stats['madds'] / 1e9:.2f} |"
        )


if __name__ == "__main__":
    define_flags()
    app.run(main)
