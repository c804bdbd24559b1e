"""Reads the weights of an initial checkpoint, whichever run or tool wrote it.

What a path holds decides how it is read:
  * a training checkpoint of this project: a `ckpt-<step>` prefix, or a run
    folder (its newest complete checkpoint, see `checkpointing`). The run may
    be a panoptic one (`tf.train.Checkpoint(model=PanopticDeepLab, ...)`) or
    an ImageNet pre-training (`model` = the SWideRNet with its `classifier`);
  * a Keras weights file `*.weights.h5`, or a folder holding
    `model.weights.h5` or `backbone.weights.h5`, as written by
    `tools/import_deeplab2` (whole model or `--backbone_only`). The
    `<stem>_config.json` beside it rebuilds the network the weights belong
    to; without it they are loaded into a copy of our model or backbone.

A training checkpoint is read without building its network: the object graph
TensorFlow stores with it gives every variable of `model` under its Keras path
(`stem/conv/kernel`, `semantic_head/final_conv/bias`), whatever network wrote
it, so panoptic and ImageNet checkpoints read alike and each value is read only
when it is copied.
"""

import dataclasses
import json
import os
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

from swiderrnet_tf.training import checkpointing
from swiderrnet_tf.training import init_explain

KIND_CHECKPOINT = "training checkpoint"
KIND_WEIGHTS = "weights file"
WEIGHT_STEMS = ("model", "backbone")
_OBJECT_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"
_CONFIG_FILES = ("operative_config.gin", "config.gin")


@dataclasses.dataclass
class Source:
    """The weights of a source, by Keras variable path.

    Attributes:
      path: What was read: a checkpoint prefix or a weights file.
      kind: `KIND_CHECKPOINT` or `KIND_WEIGHTS`.
      shapes: Variable path -> shape, for every weight of the source.
      read: `read(path)` -> the value of that weight, as a numpy array.
      config: Backbone settings of the source network when a config says them
        (`init_explain.BACKBONE_KEYS`), else None.
      config_origin: The file those settings come from.
    """

    path: str
    kind: str
    shapes: dict[str, tuple[int, ...]]
    read: Callable[[str], np.ndarray]
    config: dict | None = None
    config_origin: str | None = None


def is_model_weight(path: str) -> bool:
    """Whether a variable is a weight (random-generator states are not)."""
    return "seed_generator" not in path


def resolve(path: str) -> tuple[str, str]:
    """`(kind, file or prefix)` that `path` stands for.

    Raises:
      FileNotFoundError: Nothing readable there, naming the path.
    """
    if tf.io.gfile.isdir(path):
        for stem in WEIGHT_STEMS:
            candidate = os.path.join(path, f"{stem}.weights.h5")
            if tf.io.gfile.exists(candidate):
                return KIND_WEIGHTS, candidate
        prefix = checkpointing.latest_checkpoint(path)
        if prefix is None:
            raise FileNotFoundError(
                f"{path}: no complete training checkpoint (ckpt-<step>) and no "
                "model.weights.h5 or backbone.weights.h5 in this folder"
            )
        return KIND_CHECKPOINT, prefix
    if path.endswith(".h5"):
        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(f"{path}: no such weights file")
        return KIND_WEIGHTS, path
    if not checkpointing.is_complete(path):
        raise FileNotFoundError(
            f"{path}: no checkpoint here (expected {path}.index and its data files)"
        )
    return KIND_CHECKPOINT, path


def _model_variables(prefix: str, reader) -> dict[str, str]:
    """Keras path -> checkpoint key of every variable under the root's `model`."""
    keys = reader.get_variable_to_shape_map()
    if _OBJECT_GRAPH not in keys:
        raise ValueError(f"{prefix}: the checkpoint has no object graph (written by TF1?)")
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor(_OBJECT_GRAPH))
    roots = {child.local_name: child.node_id for child in graph.nodes[0].children}
    if "model" not in roots:
        if any(key.startswith("encoder/") for key in keys):
            raise ValueError(
                f"{prefix}: a deeplab2 checkpoint; import it first with python -m "
                "swiderrnet_tf.tools.import_deeplab2 and start from the folder it writes"
            )
        raise ValueError(
            f"{prefix}: holds no 'model' object (it holds {sorted(roots)}); "
            "not a training checkpoint of this project"
        )
    variables, seen, queue = {}, {roots["model"]}, [roots["model"]]
    while queue:
        node = graph.nodes[queue.pop()]
        for attribute in node.attributes:
            if attribute.name != "VARIABLE_VALUE" or not is_model_weight(attribute.full_name):
                continue
            if attribute.full_name in variables:
                raise ValueError(f"{prefix}: two variables are named {attribute.full_name!r}")
            variables[attribute.full_name] = attribute.checkpoint_key
        for child in node.children:
            if child.node_id not in seen:
                seen.add(child.node_id)
                queue.append(child.node_id)
    return variables


def _run_config(directory: str):
    for name in _CONFIG_FILES:
        path = os.path.join(directory, name)
        if tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path) as f:
                return init_explain.backbone_config_from_gin(f.read()), path
    return None, None


def _read_checkpoint(prefix: str) -> Source:
    reader = tf.train.load_checkpoint(prefix)
    keys = _model_variables(prefix, reader)
    shapes_by_key = reader.get_variable_to_shape_map()
    config, origin = _run_config(os.path.dirname(prefix))
    return Source(
        path=prefix,
        kind=KIND_CHECKPOINT,
        shapes={path: tuple(shapes_by_key[key]) for path, key in keys.items()},
        read=lambda path: reader.get_tensor(keys[path]),
        config=config,
        config_origin=origin,
    )


def _one_line(error: Exception, limit: int = 300) -> str:
    # Keras' loading errors span lines; user errors are one line.
    return " ".join(str(error).split())[:limit]


def _copy_of(network):
    return type(network).from_config(network.get_config())


def _load_h5(path: str, model):
    """The network the weights file holds, loaded, and the config it was built from."""
    directory, name = os.path.split(path)
    stem = name.removesuffix(".h5").removesuffix(".weights")
    config_path = os.path.join(directory, f"{stem}_config.json")
    if tf.io.gfile.exists(config_path):
        with tf.io.gfile.GFile(config_path) as f:
            try:
                network = keras.saving.deserialize_keras_object(json.load(f))
            except (TypeError, ValueError, KeyError) as e:
                raise ValueError(
                    f"{config_path}: cannot rebuild the network: {_one_line(e)}"
                ) from e
        try:
            network.load_weights(path)
        except ValueError as e:
            raise ValueError(
                f"{path}: does not fit the network of {config_path}: {_one_line(e)}"
            ) from e
        return network, config_path
    errors = []
    backbone = getattr(model, "backbone", None)
    for candidate in (model, backbone):
        if candidate is None:
            continue
        network = _copy_of(candidate)
        try:
            network.load_weights(path)
            return network, None
        except ValueError as e:
            errors.append(f"{candidate.name}: {_one_line(e)}")
    raise ValueError(
        f"{path}: fits neither our model nor its backbone, and no {stem}_config.json beside "
        f"it rebuilds its network ({'; '.join(errors)})"
    )


def _read_weights_file(path: str, model) -> Source:
    network, config_path = _load_h5(path, model)
    weights = {w.path: w for w in network.weights if is_model_weight(w.path)}
    config = None
    if config_path is not None:
        config = init_explain.backbone_config_of(getattr(network, "backbone", network))
    return Source(
        path=path,
        kind=KIND_WEIGHTS,
        shapes={p: tuple(w.shape) for p, w in weights.items()},
        read=lambda p: np.asarray(weights[p].numpy()),
        config=config,
        config_origin=config_path,
    )


def read_source(path: str, model) -> Source:
    """Reads the source `path` (see the module docstring) for our `model`.

    Args:
      path: A run folder, checkpoint prefix, weights file or imported folder.
      model: Our model; a weights file without a config is read into a copy
        of it or of its backbone.

    Returns:
      The `Source`.

    Raises:
      FileNotFoundError: Nothing readable at `path`.
      ValueError: The path holds something else (a deeplab2 checkpoint, a
        weights file that fits no network), naming it.
    """
    kind, resolved = resolve(path)
    if kind == KIND_WEIGHTS:
        return _read_weights_file(resolved, model)
    return _read_checkpoint(resolved)
