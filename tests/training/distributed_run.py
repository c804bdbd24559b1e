"""A few steps of the tiny config under a distribution strategy (run by test_distributed).

    python tests/training/distributed_run.py mirrored OUT DATA_DIR
        Splits the CPU into two logical devices and trains the comparable setup
        of the tests' one-device reference run (six steps, ckpt-3 and ckpt-6)
        under MirroredStrategy over both; the checkpoints land in OUT/mirrored.
    python tests/training/distributed_run.py mirrored_unsync OUT DATA_DIR
        The same over two devices for three steps, batch norm not synchronised
        (`train.sync_batch_norm = False`); ckpt-3 lands in OUT/mirrored_unsync.
    TF_CONFIG=... python tests/training/distributed_run.py worker OUT DATA_DIR
        One worker of a MultiWorkerMirroredStrategy run (the strategy comes from
        TF_CONFIG as in the trainer's CLI), in mixed_float16 with loss scaling
        and gradient clipping; its final weights go to OUT/<task>.npz.

TensorFlow must be configured (logical devices, cluster) before it runs an
op, hence a process per run.
"""

import os
import sys

import numpy as np
import tensorflow as tf
from absl import logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from swiderrnet_tf import distribution  # noqa: E402
from swiderrnet_tf import gin_config  # noqa: E402
from swiderrnet_tf.training import trainer  # noqa: E402
from tests.training import helpers  # noqa: E402

# Three steps with batch norm per replica (shared with the one-device run it
# is compared with, which accumulates two micro-batches instead).
SHORT = ("train.num_steps = 3", "train.checkpoint_every_n_steps = 3")
UNSYNC = (*SHORT, "train.sync_batch_norm = False")


def _parse(data_dir, *extra):
    gin_config.parse([helpers.TINY_GIN], [f"DATA_DIR = '{data_dir}'", *extra])


def main(kind: str, out: str, data_dir: str) -> None:
    logging.set_verbosity(logging.INFO)
    if kind in ("mirrored", "mirrored_unsync"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
        extra = UNSYNC if kind == "mirrored_unsync" else ()
        _parse(data_dir, *helpers.COMPARABLE, *extra)
        mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        trainer.train(strategy=mirrored, model_dir=os.path.join(out, kind))
    elif kind == "worker":
        strategy = distribution.create_strategy()
        _parse(
            data_dir,
            "train.num_steps = 3",
            "train.checkpoint_every_n_steps = 0",
            # Loss scaling with several replicas, and clipping of the global gradient.
            "train.mixed_precision = 'mixed_float16'",
            "train.clip_gradient_norm = 1.0",
        )
        result = trainer.train(strategy=strategy, model_dir=os.path.join(out, "multi_worker"))
        weights = {
            w.path: w.numpy() for w in result.model.weights if "seed_generator" not in w.path
        }
        np.savez(os.path.join(out, f"{distribution.task_name(strategy)}.npz"), **weights)
    else:
        raise SystemExit(f"unknown run {kind!r}")


if __name__ == "__main__":
    main(*sys.argv[1:])
