"""Shared pieces of the training tests: the tiny config, data, subprocess runs."""

import os
import pathlib
import subprocess
import sys

import gin
import numpy as np
import tensorflow as tf

from swiderrnet_tf import common
from swiderrnet_tf.data import pipeline
from swiderrnet_tf.data import synthetic
from swiderrnet_tf.losses import panoptic_losses
from swiderrnet_tf.training import gin_registry  # noqa: F401  (registers gin names)

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY_GIN = "tests/training/tiny.gin"
# Must equal the ensure_dataset bindings of tiny.gin, so the data is reused.
TINY_DATA = dict(num_train=12, num_val=4, height=41, width=41)
# Bindings of runs compared number for number: the same batch at every step,
# and an Adam epsilon large enough that the update is linear in the gradient.
# With the default epsilon Adam's first steps are about lr * sign(gradient),
# so float noise in a near-zero gradient can move a weight by up to 2 * lr.
# Gradient clipping is on (the tiny model's gradient norm is well above 1) so
# that comparisons cover it too.
COMPARABLE = (
    "train.dataset_fn = @fixed_batch_dataset",
    "build_optimizer.epsilon = 1.0",
    "train.clip_gradient_norm = 1.0",
)


def make_tiny_data(directory) -> str:
    return synthetic.ensure_dataset(str(directory), **TINY_DATA)


@gin.configurable(denylist=["dataset_info", "file_pattern", "mode", "crop_size", "batch_size"])
def fixed_batch_dataset(
    *, dataset_info, file_pattern, mode, crop_size, batch_size, input_context=None, seed=None
):
    """The first `batch_size` evaluation examples, repeated forever.

    The same global batch reaches every step, whatever the number of replicas
    (each gets its consecutive share) and wherever a run resumed, so runs can
    be compared number for number.
    """
    del mode, seed
    per_replica = batch_size
    if input_context is not None:
        per_replica = input_context.get_per_replica_batch_size(batch_size)
    examples = pipeline.build_dataset(
        dataset_info=dataset_info,
        file_pattern=file_pattern,
        mode="eval",
        crop_size=crop_size,
        batch_size=1,
    ).take(batch_size)
    return examples.unbatch().cache().repeat().batch(per_replica, drop_remainder=True)


@gin.configurable(denylist=["ignore_label"])
def loss_with_nan_at_step(*, ignore_label, step):
    """The panoptic loss, whose total is NaN at the `step`-th training step (1-based).

    Fault injection for the tests: it counts its own calls (one per step).
    """
    loss = panoptic_losses.PanopticLoss(ignore_label=ignore_label)
    calls = tf.Variable(0, trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    def poisoned(features, outputs):
        losses = dict(loss(features, outputs))
        calls.assign_add(1)
        total = losses[common.TOTAL_LOSS]
        losses[common.TOTAL_LOSS] = tf.where(tf.equal(calls, step), float("nan"), total)
        return losses

    return poisoned


def subprocess_env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def train_command(model_dir, data_dir, *bindings, mode="train"):
    """The CLI command of a tiny run (relative gin path: must work from any cwd)."""
    command = [
        sys.executable,
        "-m",
        "swiderrnet_tf.train",
        f"--gin_file={TINY_GIN}",
        f"--model_dir={model_dir}",
        f"--mode={mode}",
        f"--gin_bindings=DATA_DIR = '{data_dir}'",
    ]
    return command + [f"--gin_bindings={b}" for b in bindings]


def run_cli(command, cwd, timeout=240, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        command,
        cwd=cwd,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def checkpoint_values(prefix: str) -> dict[str, np.ndarray]:
    """Every saved value of a checkpoint, by key (the object graph left out)."""
    reader = tf.train.load_checkpoint(prefix)
    return {
        key: reader.get_tensor(key)
        for key in reader.get_variable_to_shape_map()
        if key != "_CHECKPOINTABLE_OBJECT_GRAPH"
    }


def scalar_events(directory: str, tag: str) -> list[tuple[int, float]]:
    """`(step, value)` of a scalar summary in the event files of `directory`."""
    values = []
    for path in sorted(tf.io.gfile.glob(os.path.join(directory, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == tag:
                    values.append((event.step, float(tf.make_ndarray(value.tensor))))
    return values
