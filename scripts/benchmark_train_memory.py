r"""Peak memory and step time of one Panoptic-DeepLab training step.

Each configuration (variant x precision x recompute setting) runs in its own
process, which builds the model and the Adam optimizer, then runs training
steps as one `tf.function`: forward, the Panoptic-DeepLab losses on random
targets of the right shapes, backward, Adam update. The table gives, per
configuration:
  * `peak_gib`: the process's peak resident set size (`ru_maxrss` from
    `wait4`, what `/usr/bin/time -v` reports as "Maximum resident set size"),
    over building, the first step (tracing) and `--steps` more steps;
  * `state_gib`: weights, gradients and Adam's two slots (16 bytes per
    float32 parameter), the part of the peak no recomputation can save;
  * `first_s`: the first step, tracing included;
  * `step_s` / `step_cpu_s`: median wall and process CPU time (all threads)
    of the following steps.

The defaults are the measurement of the deeplab2 comparison (DESIGN 9):
Panoptic-DeepLab strong, SE + SAC, deeplab2 layout, crop 513x1025, batch 1,
float32, on CPU.

  python scripts/benchmark_train_memory.py                  # (1,1,1), (1,1,4.5); off, blocks
  python scripts/benchmark_train_memory.py --variants=swidernet_1_1_1 --recompute=off,blocks,8
  python scripts/benchmark_train_memory.py --variants=swidernet_0.25_0.25_0.35 --crop=65x65 \
      --precisions=float32,mixed_bfloat16 --markdown

`--recompute` takes the backbone's settings (`off`, `blocks`, or a stage
stride such as 8). RAM is not reserved: run a large configuration alone.
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

FLAGS = flags.FLAGS
PRECISIONS = ("float32", "mixed_bfloat16")
COLUMNS = (
    "variant",
    "crop",
    "batch",
    "precision",
    "recompute",
    "recomputed_blocks",
    "params_m",
    "state_gib",
    "built_gib",
    "peak_gib",
    "first_s",
    "step_s",
    "step_cpu_s",
)
_KIB_PER_GIB = 1024**2


def define_flags():
    flags.DEFINE_list("variants", ["swidernet_1_1_1", "swidernet_1_1_4.5"], "Registry names.")
    flags.DEFINE_string("crop", "513x1025", "Crop HxW.")
    flags.DEFINE_integer("batch", 1, "Batch size.")
    flags.DEFINE_list("precisions", ["float32"], f"Any of {list(PRECISIONS)}.")
    flags.DEFINE_list("recompute", ["off", "blocks"], "Backbone recompute settings.")
    flags.DEFINE_enum("regime", "strong", ["strong", "fast"], "Panoptic-DeepLab regime.")
    flags.DEFINE_enum("layout", "deeplab2", ["deeplab2", "paper"], "Backbone layout.")
    flags.DEFINE_integer("num_classes", 19, "Semantic classes (Cityscapes: 19).")
    flags.DEFINE_string(
        "head_options", "{}", "JSON dict of Panoptic-DeepLab head options, e.g. narrower heads."
    )
    flags.DEFINE_integer("steps", 2, "Timed steps after the first.", lower_bound=1)
    flags.DEFINE_boolean("markdown", False, "Print a markdown table.")
    flags.DEFINE_string("worker", None, "Internal: run one configuration (JSON) in-process.")
    flags.DEFINE_string("worker_output", None, "Internal: where the worker writes its result.")


def parse_recompute(value: str):
    """`8` -> 8; `off`, `blocks` stay strings."""
    return int(value) if value.isdigit() else value


def _targets(batch, height, width, num_classes):
    import numpy as np
    import tensorflow as tf

    from swiderrnet_tf import common

    rng = np.random.default_rng(0)
    shape = (batch, height, width)
    values = {
        common.SEMANTIC_LABEL: rng.integers(0, num_classes, shape).astype(np.int32),
        common.SEMANTIC_WEIGHTS: np.ones(shape, np.float32),
        common.CENTER_TARGET: rng.uniform(0.0, 1.0, shape).astype(np.float32),
        common.CENTER_WEIGHTS: np.ones(shape, np.float32),
        common.OFFSET_TARGET: rng.normal(0.0, 20.0, shape + (2,)).astype(np.float32),
        common.OFFSET_WEIGHTS: rng.integers(0, 2, shape).astype(np.float32),
    }
    images = rng.uniform(0.0, 255.0, shape + (3,)).astype(np.float32)
    return tf.constant(images), {k: tf.constant(v) for k, v in values.items()}


def measure_in_process(config: dict) -> dict:
    """Builds the model and runs `1 + steps` training steps; returns the timings."""
    import keras
    import tensorflow as tf

    from swiderrnet_tf import common
    from swiderrnet_tf.losses import panoptic_losses
    from swiderrnet_tf.meta_arch import panoptic_deeplab
    from swiderrnet_tf.training import train_loop

    keras.mixed_precision.set_global_policy(config["precision"])
    keras.utils.set_random_seed(0)
    height, width = config["crop"]
    model = panoptic_deeplab.build_panoptic_deeplab(
        config["variant"],
        num_classes=config["num_classes"],
        regime=config["regime"],
        backbone_options={"layout": config["layout"], "recompute": config["recompute"]},
        **config["head_options"],
    )
    optimizer = train_loop.build_optimizer(1e-4)
    optimizer.build(model.trainable_variables)
    loss_fn = panoptic_losses.PanopticLoss()
    images, targets = _targets(config["batch"], height, width, config["num_classes"])
    variables = model.trainable_variables
    built_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            losses = loss_fn(targets, model(images, training=True))
        grads = tape.gradient(losses[common.TOTAL_LOSS], variables)
        optimizer.apply(grads, variables)
        return losses[common.TOTAL_LOSS]

    walls, cpus = [], []
    for _ in range(1 + config["steps"]):
        wall, cpu = time.perf_counter(), time.process_time()
        step().numpy()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    params = sum(int(v.numpy().size) for v in variables)
    blocks = [layer for layer in model.backbone.layers if hasattr(layer, "recompute")]
    return {
        "recomputed_blocks": f"{sum(b.recompute for b in blocks)}/{len(blocks)}",
        "params_m": params / 1e6,
        "state_gib": 16 * params / 1024**3,
        "built_gib": built_kib / _KIB_PER_GIB,
        "first_s": walls[0],
        "step_s": statistics.median(walls[1:]),
        "step_cpu_s": statistics.median(cpus[1:]),
    }


def measure(config: dict) -> dict:
    """Runs one configuration in a fresh process; returns its table row.

    Raises:
      RuntimeError: If the process fails (its last output lines attached).
    """
    with tempfile.TemporaryDirectory() as tmp:
        output = os.path.join(tmp, "row.json")
        command = [sys.executable, os.path.abspath(__file__)]
        command += [f"--worker={json.dumps(config)}", f"--worker_output={output}"]
        with tempfile.TemporaryFile("w+") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            if process.returncode != 0:
                log.seek(0)
                tail = "".join(log.readlines()[-20:])
                raise RuntimeError(f"configuration {config} failed:\n{tail}")
        with open(output) as f:
            result = json.load(f)
    height, width = config["crop"]
    return {
        **config,
        **result,
        "crop": f"{height}x{width}",
        "peak_gib": usage.ru_maxrss / _KIB_PER_GIB,  # Linux reports KiB
    }


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def table(rows, markdown: bool = False) -> str:
    """The rows as an aligned text table, or a markdown table."""
    cells = [list(COLUMNS)] + [[format_value(row[c]) for c in COLUMNS] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(line) + " |" for line in cells]
        lines.insert(1, "|" + "|".join("---" for _ in COLUMNS) + "|")
        return "\n".join(lines)
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(v.rjust(w) for v, w in zip(line, widths, strict=True)) for line in cells
    )


def configurations(variants, crop, batch, precisions, recompute, **common) -> list[dict]:
    """One configuration per variant x precision x recompute setting.

    Raises:
      ValueError: On an unknown precision or recompute setting, or a bad crop.
    """
    from swiderrnet_tf.backbones import registry
    from swiderrnet_tf.backbones import swidernet

    try:
        height, width = (int(v) for v in crop.lower().split("x"))
    except ValueError:
        raise ValueError(f"--crop: expected HxW such as 513x1025, got {crop!r}") from None
    for precision in precisions:
        if precision not in PRECISIONS:
            raise ValueError(f"--precisions: {precision!r} is not one of {list(PRECISIONS)}")
    settings = [parse_recompute(r) for r in recompute]
    for setting in settings:
        swidernet.recompute_from_stride(setting)
    for variant in variants:
        registry.backbone_args(variant)
    return [
        {
            "variant": variant,
            "crop": (height, width),
            "batch": batch,
            "precision": precision,
            "recompute": setting,
            **common,
        }
        for variant in variants
        for precision in precisions
        for setting in settings
    ]


def main(argv):
    del argv
    if FLAGS.worker:
        result = measure_in_process(json.loads(FLAGS.worker))
        with open(FLAGS.worker_output, "w") as f:
            json.dump(result, f)
        return
    try:
        try:
            head_options = json.loads(FLAGS.head_options)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"--head_options: not JSON ({error}): {FLAGS.head_options!r}"
            ) from None
        if not isinstance(head_options, dict):
            raise ValueError(f"--head_options: expected a JSON object, got {FLAGS.head_options!r}")
        configs = configurations(
            FLAGS.variants,
            FLAGS.crop,
            FLAGS.batch,
            FLAGS.precisions,
            FLAGS.recompute,
            regime=FLAGS.regime,
            layout=FLAGS.layout,
            num_classes=FLAGS.num_classes,
            head_options=head_options,
            steps=FLAGS.steps,
        )
    except ValueError as error:
        print(f"benchmark_train_memory: {error}", file=sys.stderr)
        sys.exit(2)
    rows = []
    for i, config in enumerate(configs):
        print(f"[{i + 1}/{len(configs)}] {config}", file=sys.stderr, flush=True)
        rows.append(measure(config))
    print(table(rows, markdown=FLAGS.markdown))


if __name__ == "__main__":
    define_flags()
    app.run(main)
