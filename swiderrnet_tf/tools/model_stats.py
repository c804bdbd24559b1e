"""Parameter and multiply-add counts of SWideRNet / Panoptic-DeepLab models.

Usage:
  python -m swiderrnet_tf.tools.model_stats --backbone swidernet_1_1_1 \\
      --num_classes 133 --height 641 --width 641 --regime strong
  python -m swiderrnet_tf.tools.model_stats --backbone wide_resnet41 --override sac=false \\
      --num_classes 133 --height 641 --width 641 --json
  python -m swiderrnet_tf.tools.model_stats --all --num_classes 19 --height 1025 \\
      --width 2049 --output_dir stats/

Counting rule. Parameters are the trainable weights (batch-norm moving
statistics excluded). M-Adds are the multiply-adds of the convolution and dense
ops in the inference graph (batch 1, `training=False`) that TensorFlow traces
for the model: for each `Conv2D` op, output elements x kernel height x kernel
width x input channels; for each `DepthwiseConv2dNative`, output elements x
kernel height x kernel width; for `MatMul`, M x K x N. Batch norm, activations,
pooling, resizing and additions are not counted. TensorFlow lowers an atrous
convolution to SpaceToBatchND -> Conv2D -> BatchToSpaceND, and the inner Conv2D
runs on an input padded to a multiple of the rate, so its counted output is
larger than the feature map (e.g. 3x3 rate 2 on 41x41 counts 4 x 21 x 21 = 1764
positions for 1681). This is how TensorFlow's profiler counted the paper's
figures; `--atrous_counting=dense` counts atrous convolutions at their real
output size instead. Models are built without allocating weights (Keras
`StatelessScope`), so even SWideRNet-(1, 2, 6) counts in seconds.
"""

import csv
import json
import pathlib
import sys
import time

import keras
import numpy as np
from absl import app
from absl import flags

from swiderrnet_tf import cli
from swiderrnet_tf.backbones import registry
from swiderrnet_tf.meta_arch import panoptic_deeplab
from swiderrnet_tf.tools import overrides as overrides_lib
from swiderrnet_tf.tools import paper_reference

ATROUS_COUNTING = ("graph", "dense")


def build_stateless(
    backbone: str,
    *,
    num_classes: int,
    regime: str,
    backbone_overrides: dict | None = None,
    backbone_only: bool = False,
) -> keras.Model:
    """Builds the model with uninitialised weights (no memory for their values).

    The model is the one `build_panoptic_deeplab` (or `create_backbone`) returns;
    only the variables' values are never allocated.
    """
    options = dict(backbone_overrides or {})
    with keras.StatelessScope(initialize_variables=False):
        if backbone_only:
            return registry.create_backbone(backbone, **options)
        output_stride = options.pop("output_stride", 16)
        return panoptic_deeplab.build_panoptic_deeplab(
            backbone,
            num_classes,
            regime,
            output_stride=output_stride,
            backbone_options=options,
        )


def count_parameters(model: keras.Model) -> int:
    """Trainable parameters, from the variables' shapes."""
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def _conv_output_elements(op, atrous_counting: str) -> int:
    output = op.outputs[0]
    if atrous_counting == "dense":
        # SpaceToBatchND -> Conv -> BatchToSpaceND: count the real output size.
        for consumer in output.consumers():
            if consumer.type == "BatchToSpaceND":
                output = consumer.outputs[0]
                break
    return int(np.prod(output.shape.as_list()))


def count_madds(model: keras.Model, height: int, width: int, atrous_counting: str = "graph") -> int:
    """Multiply-adds of one `height` x `width` image; see the module docstring."""
    import tensorflow as tf

    if atrous_counting not in ATROUS_COUNTING:
        raise ValueError(f"atrous_counting must be one of {ATROUS_COUNTING}")
    weights = model.weights

    @tf.function
    def forward(values, images):
        mapping = list(zip(weights, values, strict=True))
        with keras.StatelessScope(state_mapping=mapping, initialize_variables=False):
            return model(images, training=False)

    specs = [tf.TensorSpec(w.shape, w.dtype) for w in weights]
    graph = forward.get_concrete_function(specs, tf.TensorSpec([1, height, width, 3])).graph
    total = 0
    for op in graph.get_operations():
        if op.type == "Conv2D":
            kh, kw, cin, _ = op.inputs[1].shape.as_list()
            total += _conv_output_elements(op, atrous_counting) * kh * kw * cin
        elif op.type == "DepthwiseConv2dNative":
            kh, kw, _, _ = op.inputs[1].shape.as_list()
            total += _conv_output_elements(op, atrous_counting) * kh * kw
        elif op.type in ("MatMul", "BatchMatMulV2", "BatchMatMulV3"):
            a, b = op.inputs[0].shape.as_list(), op.inputs[1].shape.as_list()
            k = a[-2] if op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x") else a[-1]
            total += int(np.prod(op.outputs[0].shape.as_list())) * k
            del b
    return total


def model_stats(
    backbone: str,
    *,
    num_classes: int,
    height: int,
    width: int,
    regime: str,
    backbone_overrides: dict | None = None,
    backbone_only: bool = False,
    atrous_counting: str = "graph",
) -> dict:
    """Returns `{"params": int, "madds": int}` for one model."""
    model = build_stateless(
        backbone,
        num_classes=num_classes,
        regime=regime,
        backbone_overrides=backbone_overrides,
        backbone_only=backbone_only,
    )
    return {
        "params": count_parameters(model),
        "madds": count_madds(model, height, width, atrous_counting),
    }


def _default_regime(name: str) -> list[str]:
    if name == "wide_resnet41":
        return ["strong"]  # the Table 3 baseline
    args = registry.backbone_args(name)
    factors = (args["w1"], args["w2"], args["l"])
    regimes = []
    if factors in registry.FAST_SPACE:
        regimes.append("fast")
    if factors in registry.STRONG_SPACE or factors == (1, 1, 4.5):
        regimes.append("strong")
    return regimes


def sweep(
    *,
    pattern: str,
    num_classes: int,
    height: int,
    width: int,
    regime: str | None,
    backbone_overrides: dict,
    backbone_only: bool,
    atrous_counting: str,
    progress=None,
) -> list[dict]:
    """Counts every registered backbone matching `pattern` (each in its paper regime)."""
    rows = []
    names = registry.list_backbones(pattern)
    for index, name in enumerate(names):
        for row_regime in [regime] if regime else _default_regime(name):
            start = time.time()
            stats = model_stats(
                name,
                num_classes=num_classes,
                height=height,
                width=width,
                regime=row_regime,
                backbone_overrides=backbone_overrides,
                backbone_only=backbone_only,
                atrous_counting=atrous_counting,
            )
            paper = paper_reference.REFERENCE.get((name, row_regime, num_classes, height, width))
            rows.append(
                {
                    "backbone": name,
                    "regime": row_regime,
                    "params_m": stats["params"] / 1e6,
                    "madds_b": stats["madds"] / 1e9,
                    "paper_params_m": paper[0] if paper else None,
                    "paper_madds_b": paper[1] if paper else None,
                    "madds_ratio": stats["madds"] / 1e9 / paper[1] if paper else None,
                }
            )
            if progress:
                progress(
                    f"[{index + 1}/{len(names)}] {name} {row_regime} ({time.time() - start:.1f}s)"
                )
    return rows


def _fmt(value, digits=2):
    return "" if value is None else f"{value:.{digits}f}"


def markdown_table(rows: list[dict]) -> str:
    header = (
        "| backbone | regime | params (M) | M-Adds (B) | paper params (M) "
        "| paper M-Adds (B) | M-Adds ratio |"
    )
    lines = [header, "|---|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(
            f"| {row['backbone']} | {row['regime']} | {_fmt(row['params_m'])} | "
            f"{_fmt(row['madds_b'])} | {_fmt(row['paper_params_m'])} | "
            f"{_fmt(row['paper_madds_b'])} | {_fmt(row['madds_ratio'], 3)} |"
        )
    return "\n".join(lines)


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


flags.DEFINE_enum("atrous_counting", "graph", list(ATROUS_COUNTING), "How atrous convs count.")


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
        rows = sweep(
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
        table = markdown_table(rows)
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
    stats = model_stats(
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
