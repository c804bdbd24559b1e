"""Initialises the backbone from a pretrained checkpoint, with a report.

Accepted sources:
  * a `.weights.h5` file, or a folder holding `backbone.weights.h5` or
    `model.weights.h5`, as written by `swiderrnet_tf.tools.import_deeplab2`
    (for instance from the released ImageNet-pretrained SWideRNets); the
    `*_config.json` beside it rebuilds the network the weights belong to;
    without it the weights are loaded into a copy of our backbone;
  * a training checkpoint of this project (a `ckpt-<step>` prefix or a
    `model_dir`), whose `model.backbone` is read.

The source network is built on the host, outside the strategy, and its
weights are copied into our backbone by variable path (`stem/conv/kernel`,
`stage3_block2/conv1_bn_act/...`), so the report can list what matched, what
our backbone lacked a value for, and what the source had that we do not use
(e.g. the ImageNet classifier).
"""

import json
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from swiderrnet_tf.training import checkpointing


def _weights(model) -> dict:
    return {w.path: w for w in model.weights if "seed_generator" not in w.path}


def _copy_of(backbone):
    return type(backbone).from_config(backbone.get_config())


def _from_h5(path: str, backbone):
    directory, name = os.path.split(path)
    stem = name.removesuffix(".weights.h5").removesuffix(".h5")
    config_path = os.path.join(directory, f"{stem}_config.json")
    if tf.io.gfile.exists(config_path):
        with tf.io.gfile.GFile(config_path) as f:
            source = keras.saving.deserialize_keras_object(json.load(f))
        source.load_weights(path)
        # A whole imported Panoptic-DeepLab: its backbone is what we want.
        return getattr(source, "backbone", source)
    source = _copy_of(backbone)
    source.load_weights(path)
    return source


def _from_training_checkpoint(path: str, backbone):
    prefix = path
    if tf.io.gfile.isdir(path):
        prefix = checkpointing.latest_checkpoint(path)
        if prefix is None:
            raise FileNotFoundError(f"{path}: no complete training checkpoint in this folder")
    if not checkpointing.is_complete(prefix):
        raise FileNotFoundError(f"{prefix}: no checkpoint here (expected {prefix}.index)")
    source = _copy_of(backbone)
    reader = tf.train.load_checkpoint(prefix)
    if not any(k.startswith("model/backbone/") for k in reader.get_variable_to_shape_map()):
        raise ValueError(f"{prefix}: this checkpoint holds no model/backbone variables")
    status = tf.train.Checkpoint(model=tf.train.Checkpoint(backbone=source)).restore(prefix)
    status.expect_partial()
    try:
        status.assert_existing_objects_matched()
    except AssertionError as e:
        raise ValueError(
            f"{prefix}: its backbone does not match ours (another variant, layout or SE/SAC "
            f"setting?): {str(e)[:1500]}"
        ) from e
    return source


def load_source(path: str, backbone) -> keras.Model:
    """Builds the network a checkpoint holds and loads it (see the module docstring)."""
    if tf.io.gfile.isdir(path):
        for stem in ("backbone", "model"):
            candidate = os.path.join(path, f"{stem}.weights.h5")
            if tf.io.gfile.exists(candidate):
                return _from_h5(candidate, backbone)
        return _from_training_checkpoint(path, backbone)
    if path.endswith(".h5"):
        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(f"{path}: no such weights file")
        return _from_h5(path, backbone)
    return _from_training_checkpoint(path, backbone)


def initialize_backbone(backbone, path: str, *, strict: bool = True) -> dict:
    """Copies pretrained weights into `backbone` by variable path.

    Args:
      backbone: Our backbone (may hold distributed variables).
      path: See the module docstring.
      strict: Fail if some of our backbone's variables get no value.

    Returns:
      The report: `source`, `restored` (count), `not_restored` (our variable
      paths left at their initial value), `unused` (source paths we do not have).

    Raises:
      ValueError: On a shape mismatch, when nothing matches, or (strict) when
        some variables get no value; each names the variables.
    """
    source = _weights(load_source(path, backbone))
    target = _weights(backbone)
    mismatched = [
        f"{p}: checkpoint {list(source[p].shape)} vs ours {list(target[p].shape)}"
        for p in sorted(set(source) & set(target))
        if tuple(source[p].shape) != tuple(target[p].shape)
    ]
    if mismatched:
        raise ValueError(
            f"{path}: shapes differ for {len(mismatched)} variable(s): {mismatched[:5]}"
        )
    common_paths = sorted(set(source) & set(target))
    if not common_paths:
        raise ValueError(
            f"{path}: none of its {len(source)} variables matches our backbone "
            f"(e.g. {sorted(source)[:3]} vs {sorted(target)[:3]})"
        )
    report = {
        "source": path,
        "restored": len(common_paths),
        "not_restored": sorted(set(target) - set(source)),
        "unused": sorted(set(source) - set(target)),
    }
    if strict and report["not_restored"]:
        raise ValueError(
            f"{path}: {len(report['not_restored'])} backbone variable(s) have no value in it, "
            f"e.g. {report['not_restored'][:5]}; check the backbone name, layout and SE/SAC "
            "settings, or set train.init_checkpoint_strict = False"
        )
    for p in common_paths:
        target[p].assign(np.asarray(source[p].numpy(), dtype=target[p].dtype))
    return report


def format_report(report: dict) -> str:
    """The report as log lines."""
    lines = [
        f"Backbone initialised from {report['source']}: {report['restored']} variables restored",
        f"  not restored (left at their initial value): {len(report['not_restored'])}",
        *(f"    {p}" for p in report["not_restored"][:50]),
        f"  in the checkpoint but unused: {len(report['unused'])}",
        *(f"    {p}" for p in report["unused"][:50]),
    ]
    return "\n".join(lines)


def log_report(report: dict) -> None:
    logging.info("%s", format_report(report))
