"""Evaluates a checkpoint: panoptic quality, mIoU and instance AP on a split.

    python -m swiderrnet_tf.evaluate --gin_file=gin_configs/demo.gin \\
        --checkpoint=runs/demo [--output_dir=runs/demo/eval_again]

`--checkpoint` is a training checkpoint prefix (`.../ckpt-4000`), a run folder
(its newest complete checkpoint) or a Keras `.weights.h5` file of the whole
model. The gin files are those of the training run (the model and the
`evaluate.*` settings); the results are printed and written as JSON into
`--output_dir` (default: `eval/` beside the checkpoint).

For a benchmark's test server (COCO test-dev, Cityscapes test), a split
converted without labels and `--write_predictions=DIR`:

    python -m swiderrnet_tf.evaluate --gin_file=gin_configs/coco_strong.gin \
        --checkpoint=runs/coco --gin_bindings='evaluate.split = "test"' \
        --write_predictions=runs/coco/test_dev

writes `DIR/panoptic.json` and `DIR/panoptic/*.png` (COCO panoptic format;
Cityscapes label ids for Cityscapes) and, for Cityscapes, also
`DIR/instances/*_pred.txt` with their masks (instance-level format); zip them
as the server asks. On a labeled split the metrics come as well.

`--precision=bfloat16` builds the network in bfloat16 (see
`swiderrnet_tf.inference.precision`); on hardware without bfloat16 it falls
back to float32 with a warning, unless `--allow_emulated_bfloat16`.

Exit status: 0 when done, 2 on a configuration, checkpoint, data or output
error (one line on stderr naming the file or setting).
"""

import functools
import os
import sys

import tensorflow as tf
from absl import app
from absl import flags
from absl import logging

from swiderrnet_tf import cli
from swiderrnet_tf import distribution
from swiderrnet_tf import gin_config
from swiderrnet_tf.evaluation import eval_loop
from swiderrnet_tf.inference import precision as precision_lib
from swiderrnet_tf.inference import run_config

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (only when run as a program)."""
    flags.DEFINE_multi_string("gin_file", [], "Gin file(s) of the run, e.g. gin_configs/demo.gin.")
    flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. 'evaluate.split = \"val\"'.")
    flags.DEFINE_string("checkpoint", None, "Checkpoint prefix, run folder, or .weights.h5 file.")
    flags.DEFINE_string("output_dir", None, "Folder for the results (default: <run folder>/eval).")
    flags.DEFINE_string("tpu", None, "TPU name, grpc:// address, or `local` on a TPU VM.")
    flags.DEFINE_string(
        "write_predictions",
        None,
        "Also write every image's prediction here in the test servers' formats (COCO "
        "panoptic PNG + JSON; Cityscapes also instance-level); the split may be unlabeled.",
    )
    flags.DEFINE_string(
        "precision",
        "float32",
        f"One of {precision_lib.PRECISIONS}: the network's compute precision (bfloat16 falls "
        "back to float32 where the hardware lacks it).",
    )
    flags.DEFINE_boolean(
        "allow_emulated_bfloat16",
        False,
        "Run bfloat16 even where the hardware lacks it (slower; to check its accuracy).",
    )


def run(
    *,
    gin_files,
    checkpoint,
    gin_bindings=(),
    output_dir=None,
    tpu=None,
    write_predictions=None,
    precision="float32",
    allow_emulated_bfloat16=False,
) -> int:
    """Evaluates `checkpoint`; returns the exit status."""
    try:
        if not checkpoint:
            raise ValueError("--checkpoint is required")
        precision = precision_lib.resolve_precision(
            precision, allow_emulated=allow_emulated_bfloat16
        )
        run_config.parse(gin_files, gin_bindings)
        gin_config.check_config([("evaluate", eval_loop.evaluate.__wrapped__, eval_loop.PASSED)])
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    model_dir = checkpoint if tf.io.gfile.isdir(checkpoint) else os.path.dirname(checkpoint)
    strategy = distribution.create_strategy(tpu)
    evaluation = functools.partial(
        eval_loop.evaluate,
        strategy=strategy,
        model_dir=model_dir,
        checkpoint=checkpoint,
        output_dir=output_dir,
        write_predictions=write_predictions,
    )
    return cli.run_main(functools.partial(_in_precision, precision, evaluation))


def _in_precision(precision: str, work):
    """Runs `work()` with models built in `precision`."""
    logging.info("Evaluating with the network in %s", precision)
    with precision_lib.policy_scope(precision):
        return work()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    return run(
        gin_files=FLAGS.gin_file,
        checkpoint=FLAGS.checkpoint,
        gin_bindings=FLAGS.gin_bindings,
        output_dir=FLAGS.output_dir,
        tpu=FLAGS.tpu,
        write_predictions=FLAGS.write_predictions,
        precision=FLAGS.precision,
        allow_emulated_bfloat16=FLAGS.allow_emulated_bfloat16,
    )


def console_main():
    """The `swiderrnet-evaluate` console script."""
    cli.console_main(__name__)


if __name__ == "__main__":
    define_flags()
    app.run(main)
