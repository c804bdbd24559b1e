"""Reading training checkpoints: find the newest complete one, fill a model from it.

A run folder holds `ckpt-<step>` checkpoints written by the trainer
(`training.checkpointing`) and the `checkpoint` state file naming them.
`latest_checkpoint` finds the newest one whose files are all there;
`restore_model` fills a built model from a checkpoint prefix, a run folder or
a Keras `.weights.h5` file and, when the checkpoint does not fit the model,
says which variable differs and which settings of the folder's `config.gin`
differ from the parsed config.
"""

import os
import re

import tensorflow as tf
from absl import logging

from swiderrnet_tf import gin_config

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
    # TensorFlow has joined relative entries with `model_dir` already.
    paths = list(state.all_model_checkpoint_paths)
    if state.model_checkpoint_path and state.model_checkpoint_path not in paths:
        paths.append(state.model_checkpoint_path)
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


def restore_model(model, checkpoint: str) -> int | None:
    """Loads model weights from a training checkpoint or a `.weights.h5` file.

    Args:
      model: The built model.
      checkpoint: A `ckpt-<step>` prefix, a `model_dir` (newest complete
        checkpoint) or a Keras `.weights.h5` file.

    Returns:
      The checkpoint's step, or None for a weights file.
    """
    if checkpoint.endswith(".h5"):
        model.load_weights(checkpoint)
        return None
    prefix = checkpoint
    if tf.io.gfile.isdir(checkpoint):
        prefix = latest_checkpoint(checkpoint)
        if prefix is None:
            raise FileNotFoundError(f"{checkpoint}: no complete training checkpoint here")
    if not is_complete(prefix):
        raise FileNotFoundError(f"{prefix}: no complete checkpoint (expected {prefix}.index)")
    try:
        status = tf.train.Checkpoint(model=model).read(prefix)
        status.expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        message = explain_mismatch(prefix, e, os.path.dirname(prefix))
        raise ValueError(message) from e
    logging.info("Restored the model from %s", prefix)
    return checkpoint_step(prefix)
