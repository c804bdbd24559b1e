"""Training checkpoints: save, keep the last K, resume from the newest complete one.

A checkpoint is a `tf.train.Checkpoint(model, optimizer, step)` written by
`tf.train.CheckpointManager` as `model_dir/ckpt-<step>`. TensorFlow writes the
shards under `ckpt-<step>_temp/`, merges them into `ckpt-<step>.index` and
`.data-*`, and only then rewrites the `checkpoint` state file (through a
temporary file and a rename), so the newest checkpoint the state file names is
always complete. A run killed while saving leaves at most a stale `_temp`
folder, which the next run removes. Older entries of the state file may name a
checkpoint whose files are gone (the manager deletes the oldest one between
two rewrites of the state file, or someone deleted it by hand); resume skips
those with a warning and takes the newest complete checkpoint.

In a multi-worker run every worker takes part in a save (it is a collective);
the chief writes to `model_dir`, the others to a scratch folder deleted right
after.
"""

import contextlib
import os
import re

import tensorflow as tf
from absl import logging

from swiderrnet_tf.training import gin_config

CHECKPOINT_NAME = "ckpt"
_NUMBER = re.compile(r"-(\d+)$")


def checkpoint_step(path: str) -> int:
    """The step in a checkpoint prefix `.../ckpt-<step>`."""
    match = _NUMBER.search(path)
    if not match:
        raise ValueError(f"{path}: not a training checkpoint prefix (expected .../ckpt-<step>)")
    return int(match.group(1))


def is_complete(prefix: str) -> bool:
    """Whether the index and every data shard of a checkpoint exist."""
    if not tf.io.gfile.exists(prefix + ".index"):
        return False
    shards = tf.io.gfile.glob(prefix + ".data-*")
    if not shards:
        return False
    match = re.search(r"\.data-\d+-of-(\d+)$", shards[0])
    return match is None or len(shards) == int(match.group(1))


def complete_checkpoints(model_dir: str) -> list[str]:
    """Checkpoints the state file of `model_dir` names, newest first, complete only."""
    state = tf.train.get_checkpoint_state(model_dir)
    if state is None:
        return []
    paths = list(state.all_model_checkpoint_paths)
    if state.model_checkpoint_path and state.model_checkpoint_path not in paths:
        paths.append(state.model_checkpoint_path)
    paths = [p if os.path.isabs(p) or "://" in p else os.path.join(model_dir, p) for p in paths]
    result = []
    for path in sorted(paths, key=checkpoint_step, reverse=True):
        if is_complete(path):
            result.append(path)
        else:
            logging.warning(
                "Checkpoint %s is named in the state file but incomplete; skipped", path
            )
    return result


def latest_checkpoint(model_dir: str) -> str | None:
    """The newest complete checkpoint of `model_dir`, or None."""
    paths = complete_checkpoints(model_dir)
    return paths[0] if paths else None


def remove_stale_temp(model_dir: str) -> None:
    """Deletes `ckpt-*_temp` folders left by a save that was killed."""
    for path in tf.io.gfile.glob(os.path.join(model_dir, f"{CHECKPOINT_NAME}-*_temp")):
        logging.info("Removing %s, left by an interrupted save", path)
        tf.io.gfile.rmtree(path)


# TensorFlow's message for a shape mismatch during a restore.
_INCOMPATIBLE = re.compile(
    r"Received incompatible tensor with shape (\S+) when attempting to restore variable "
    r"with shape (\S+) and name (\S+?)\.?(?:\s|$)"
)


def explain_mismatch(prefix: str, error: Exception, model_dir: str | None) -> str:
    """A one-paragraph message for a checkpoint that does not fit the model.

    Args:
      prefix: The checkpoint.
      error: What TensorFlow raised while restoring it.
      model_dir: The run folder whose `config.gin` the checkpoint was trained
        with, or None.
    """
    text = str(error)
    match = _INCOMPATIBLE.search(text)
    if match:
        saved, ours, name = match.groups()
        first = f"{name.removesuffix('/.ATTRIBUTES/VARIABLE_VALUE')} is {saved} there, {ours} here"
    else:
        first = " ".join(text.split())[:600]
    message = f"{prefix} does not match the configured model and optimizer: {first}."
    differences = gin_config.config_differences(model_dir) if model_dir else []
    if differences:
        config = os.path.join(model_dir, gin_config.CONFIG_FILE)
        message += f" The config differs from {config}, which it was trained with: "
        message += "; ".join(differences) + ". Use another model_dir, or the settings of that run"
    else:
        message += " Was another configuration trained in this folder? Use another model_dir"
    return message + "."


class TrainCheckpoints:
    """Saves and restores the training state `(model, optimizer, step)`.

    Args:
      model, optimizer: Built inside the strategy's scope.
      step: The int64 step variable.
      model_dir: Where the chief keeps the checkpoints.
      max_to_keep: How many recent checkpoints to keep.
      chief: Whether this process owns `model_dir`.
      task: Name of this process (scratch folder of non-chief workers).
    """

    def __init__(self, *, model, optimizer, step, model_dir, max_to_keep, chief=True, task="chief"):
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
        self.step = step
        self.model_dir = model_dir
        self.chief = chief
        directory = model_dir if chief else os.path.join(model_dir, "worker_scratch", task)
        # Writes nothing: the folder is only changed once the restore succeeded.
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, directory, max_to_keep=max_to_keep, checkpoint_name=CHECKPOINT_NAME
        )
        self.last_saved = latest_checkpoint(model_dir)

    def restore_latest(self) -> str | None:
        """Restores the newest complete checkpoint of `model_dir`; returns it or None.

        Raises:
          ValueError: If the checkpoint does not hold the whole training state
            of this model (e.g. another width was trained in `model_dir`),
            naming the checkpoint, the first mismatching variable and the
            config values that differ from the folder's `config.gin`.
        """
        path = latest_checkpoint(self.model_dir)
        if path is None:
            return None
        try:
            status = self.checkpoint.restore(path)
            status.assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as e:
            raise ValueError(explain_mismatch(path, e, self.model_dir)) from e
        logging.info("Resumed from %s at step %d", path, int(self.step.numpy()))
        self.last_saved = path
        return path

    def prepare_folder(self) -> None:
        """Creates `model_dir` and removes what a killed save left (chief only)."""
        if self.chief:
            tf.io.gfile.makedirs(self.model_dir)
            remove_stale_temp(self.model_dir)

    def save(self) -> str:
        """Saves at the current step (every worker must call it); returns the chief's path."""
        step = int(self.step.numpy())
        path = self.manager.save(checkpoint_number=step)
        if not self.chief:
            tf.io.gfile.rmtree(self.manager.directory)
            scratch = os.path.dirname(self.manager.directory)
            if "://" not in scratch:  # object stores have no empty folders
                # rmdir fails while another worker's copy is still there.
                with contextlib.suppress(OSError):
                    os.rmdir(scratch)
            return os.path.join(self.model_dir, f"{CHECKPOINT_NAME}-{step}")
        self.last_saved = path
        logging.info("Saved checkpoint %s", path)
        return path

    @property
    def last_saved_step(self) -> int | None:
        return None if self.last_saved is None else checkpoint_step(self.last_saved)
