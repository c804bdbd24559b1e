"""Trains and evaluates Panoptic-DeepLab with a SWideRNet backbone.

Flags say where (model_dir, TPU, mode); gin files say what (model, data,
schedule). The demo trains a small SWideRNet on generated data on a CPU:

    python -m swiderrnet_tf.train --gin_file=gin_configs/demo.gin

A paper experiment on a Cloud TPU, data and run folder in Cloud Storage:

    python -m swiderrnet_tf.train --gin_file=gin_configs/cityscapes_strong.gin \\
        --gin_bindings='DATA_DIR="gs://bucket/cityscapes"' \\
        --model_dir=gs://bucket/runs/cityscapes_strong --tpu=local

Modes: `train`, `train_and_eval` (default: evaluates at the end, and every
`train.eval_every_n_steps` if set), `eval` (the newest checkpoint of
model_dir) and `continuous_eval` (each new checkpoint until `train.num_steps`).
Running the same command again resumes from the newest checkpoint.

Exit status: 0 when done, 1 when a loss, weight or optimizer slot became
non-finite (the loop is discarded; the last checkpoint holds only finite
values), 2 on a configuration or data error, 143 when SIGTERM stopped the run
after saving a checkpoint.
"""

import functools
import sys

import gin
from absl import app
from absl import flags
from absl import logging

from swiderrnet_tf import cli
from swiderrnet_tf import distribution
from swiderrnet_tf import fileio
from swiderrnet_tf import gin_config
from swiderrnet_tf.evaluation import eval_loop
from swiderrnet_tf.training import errors
from swiderrnet_tf.training import gin_registry  # noqa: F401  (registers gin names)
from swiderrnet_tf.training import signals
from swiderrnet_tf.training import trainer

MODES = ("train", "train_and_eval", "eval", "continuous_eval")
FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (only when run as a program)."""
    flags.DEFINE_multi_string("gin_file", [], "Gin file(s), e.g. gin_configs/demo.gin.")
    flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. 'train.num_steps = 100'.")
    flags.DEFINE_string(
        "model_dir",
        None,
        "Checkpoints, summaries, configs (local or gs://); default runs/<gin file>.",
    )
    flags.DEFINE_string("tpu", None, "TPU name, grpc:// address, or `local` on a TPU VM.")
    flags.DEFINE_enum("mode", "train_and_eval", MODES, "What to run.")


def _entry_points(mode: str):
    train_fn = trainer.train.__wrapped__
    eval_fn = eval_loop.evaluate.__wrapped__
    points = []
    if mode in ("train", "train_and_eval"):
        points.append(("train", train_fn, ("strategy", "model_dir", "evaluate_fn")))
    if mode != "train":
        points.append(("evaluate", eval_fn, eval_loop.PASSED))
    return points


def run(*, gin_files, gin_bindings=(), model_dir=None, tpu=None, mode="train_and_eval") -> int:
    """Parses the config, checks it, and runs `mode`; returns the exit status."""
    try:
        gin_files = gin_config.parse(gin_files, gin_bindings)
        gin_config.check_config(_entry_points(mode))
        final_step = None
        if mode == "continuous_eval":
            final_step = gin.get_bindings("train").get("num_steps")
            if final_step is None:
                raise ValueError("continuous_eval needs train.num_steps (its last checkpoint)")
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    model_dir = model_dir or gin_config.default_model_dir(gin_files)
    logging.info("Mode %s, model_dir %s", mode, model_dir)
    strategy = distribution.create_strategy(tpu)
    try:
        if mode in ("train", "train_and_eval"):
            fileio.make_dirs(model_dir, "run folder")
            evaluate_fn = None
            if mode == "train_and_eval":
                evaluate_fn = functools.partial(
                    eval_loop.evaluate, strategy=strategy, model_dir=model_dir
                )
            trainer.train(strategy=strategy, model_dir=model_dir, evaluate_fn=evaluate_fn)
        elif mode == "eval":
            eval_loop.evaluate(strategy=strategy, model_dir=model_dir)
        else:
            eval_loop.evaluate(strategy=strategy, model_dir=model_dir, until_step=final_step)
    except errors.NonFiniteError as e:
        logging.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        return 1
    except errors.PreemptedError as e:
        logging.warning("%s", e)
        return signals.PREEMPTED_EXIT_CODE
    except (ValueError, *cli.file_system_errors()) as e:
        logging.debug("The run stopped on an error", exc_info=True)
        print(cli.error_line(e), file=sys.stderr)
        return cli.EXIT_USER_ERROR
    return 0


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    return run(
        gin_files=FLAGS.gin_file,
        gin_bindings=FLAGS.gin_bindings,
        model_dir=FLAGS.model_dir,
        tpu=FLAGS.tpu,
        mode=FLAGS.mode,
    )


def console_main():
    """The `swiderrnet-train` console script."""
    cli.console_main(__name__)


if __name__ == "__main__":
    define_flags()
    app.run(main)
