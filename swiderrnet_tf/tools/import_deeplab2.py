"""Imports a deeplab2 SWideRNet checkpoint into our model.

Usage:
  # A whole Panoptic-DeepLab model, configured from its deeplab2 config:
  python -m swiderrnet_tf.tools.import_deeplab2 --checkpoint ckpt/ckpt-1000 \\
      --config config.textproto --output imported/
  # A backbone (e.g. the released ImageNet-pretrained SWideRNets):
  python -m swiderrnet_tf.tools.import_deeplab2 --checkpoint PATH \\
      --backbone swidernet_1_1_1 --override squeeze_excite=false --backbone_only \\
      --output imported/

deeplab2 saves `tf.train.Checkpoint` objects whose keys follow Python attribute
paths (`encoder/_stage5/_block1/_conv2_bn_act/_conv/_switch/kernel/...`). Each key
is rewritten to one of our variable paths (`stage5_block1/conv2_bn_act/conv/
switch/kernel`) by `checkpoint_key_to_path`. The model is always built in the
`deeplab2` layout, which is the one deeplab2 trains. A checkpoint variable that
maps to nothing, a shape that disagrees, or a model variable left without a value
is an error that names it; optimizer state and counters are skipped and listed.
Optimizer slots are skipped wherever they are saved: under `optimizer/` (TF >=
2.11 Keras optimizers) or attached to each variable as `<variable>/
.OPTIMIZER_SLOT/optimizer/{m,v}/...` (TF <= 2.10 and `tf.keras.optimizers.
legacy`, the format of deeplab2's released checkpoints).

The output directory receives `model.weights.h5` (or `backbone.weights.h5`), the
Keras config of the built model (`model_config.json` / `backbone_config.json`)
and `import_report.txt`. `load_imported(directory)` rebuilds the model from them.
"""

import json
import os
import pathlib
import re

import keras
import numpy as np
from absl import app
from absl import flags

from swiderrnet_tf import cli
from swiderrnet_tf.backbones import registry
from swiderrnet_tf.meta_arch import panoptic_deeplab
from swiderrnet_tf.tools import deeplab2_config
from swiderrnet_tf.tools import overrides as overrides_lib

_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
# A slot variable saved under the variable it belongs to (TF <= 2.10 optimizers).
_SLOT = "/.OPTIMIZER_SLOT/"
# Checkpoint objects that are not model weights.
_NON_MODEL = re.compile(r"^(global_step|save_counter|optimizer|_CHECKPOINTABLE_OBJECT_GRAPH)(/|$)")
_TOP_LEVEL = {
    "encoder": "",
    "semantic_decoder": "semantic_decoder/",
    "instance_decoder": "instance_decoder/",
    "semantic_head_without_last_layer": "semantic_head/conv_block/",
    "semantic_last_layer": "semantic_head/final_conv/",
    "instance_center_head_without_last_layer": "center_head/conv_block/",
    "instance_center_head_last_layer": "center_head/final_conv/",
    "instance_regression_head_without_last_layer": "offset_head/conv_block/",
    "instance_regression_head_last_layer": "offset_head/final_conv/",
}
# Rewrites of deeplab2 attribute paths into our layer paths, applied in order.
_REWRITES = (
    (r"_stage(\d)/_block(\d+)/", r"stage\1_block\2/"),
    (r"_squeeze_and_excite/_se_conv/", "squeeze_excite/conv/"),
    (r"_(pre|post)_global_context/convolution/", r"\1_global_context/conv/"),
    (r"_aspp/_aspp_(conv\d|pool)/_conv_bn_act/", r"aspp/aspp_\1/"),
    (r"_fusion_conv(\d)/_conv1_bn_act/", r"fusion_conv\1/"),
    (r"^_conv1_bn_act/", ""),  # a head's conv_block holds one conv1_bn_act
    (r"_depthwise/_depthwise_conv/depthwise_kernel$", "depthwise_conv/kernel"),
    (r"_depthwise/_batch_norm/", "depthwise_batch_norm/"),
    (r"(^|/)_", r"\1"),
)


def checkpoint_key_to_path(key: str) -> str | None:
    """Our variable path for a deeplab2 checkpoint key, or None if it is not a weight."""
    if not key.endswith(_SUFFIX) or _NON_MODEL.match(key) or _SLOT in key:
        return None
    key = key[: -len(_SUFFIX)]
    top, _, rest = key.partition("/")
    if top not in _TOP_LEVEL:
        raise ValueError(f"checkpoint variable {key!r}: unknown top-level object {top!r}")
    for pattern, replacement in _REWRITES:
        rest = re.sub(pattern, replacement, rest)
    return _TOP_LEVEL[top] + rest


def _resolve_checkpoint(path: str) -> str:
    import tensorflow as tf

    if os.path.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(f"{path}: no checkpoint in this directory")
        return latest
    if not tf.io.gfile.exists(path + ".index"):
        raise FileNotFoundError(f"{path}: no checkpoint here (expected {path}.index)")
    return path


def assign_from_checkpoint(model: keras.Model, checkpoint: str, *, backbone_only: bool = False):
    """Assigns every weight of `model` from a deeplab2 checkpoint.

    Args:
      model: Our model (PanopticDeepLab or, with `backbone_only`, a SWideRNet).
      checkpoint: A checkpoint prefix or a directory holding checkpoints.
      backbone_only: Read only the `encoder` objects.

    Returns:
      A report dict: `assigned` (count), `optimizer_slots` (keys of
      per-variable optimizer slots), `skipped` (the other checkpoint keys that
      are not model weights, or not backbone weights with `backbone_only`).

    Raises:
      ValueError: A checkpoint weight that maps to no model variable, a shape
        mismatch, or a model variable with no checkpoint value (names it).
    """
    import tensorflow as tf

    prefix = _resolve_checkpoint(checkpoint)
    reader = tf.train.load_checkpoint(prefix)
    variables = {w.path: w for w in model.weights if "seed_generator" not in w.path}
    assigned, skipped, slots = set(), [], []
    for key in sorted(reader.get_variable_to_shape_map()):
        if _SLOT in key:
            slots.append(key)
            continue
        if backbone_only and not key.startswith("encoder/"):
            skipped.append(key)
            continue
        path = checkpoint_key_to_path(key)
        if path is None:
            skipped.append(key)
            continue
        if path not in variables:
            raise ValueError(
                f"{prefix}: checkpoint variable {key!r} (our path {path!r}) has no counterpart "
                "in the model; check the backbone factors, SE/SAC flags and head widths"
            )
        value = reader.get_tensor(key)
        variable = variables[path]
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"{prefix}: checkpoint variable {key!r} has shape {list(value.shape)} but "
                f"model variable {path!r} has shape {list(variable.shape)}"
            )
        variable.assign(value.astype(np.dtype(variable.dtype)))
        assigned.add(path)
    missing = sorted(set(variables) - assigned)
    if missing:
        raise ValueError(
            f"{prefix}: {len(missing)} model variable(s) have no value in the checkpoint, "
            f"e.g. {missing[:5]}"
        )
    return {
        "checkpoint": prefix,
        "assigned": len(assigned),
        "skipped": skipped,
        "optimizer_slots": slots,
    }


def build_from_config(config_path: str) -> keras.Model:
    """Builds our Panoptic-DeepLab from a deeplab2 config text proto."""
    text = pathlib.Path(config_path).read_text()
    try:
        arguments = deeplab2_config.model_arguments(deeplab2_config.parse_text_proto(text))
    except ValueError as error:
        raise ValueError(f"{config_path}: {error}") from error
    backbone_args = dict(arguments["backbone_args"])
    w1, w2, l = backbone_args.pop("w1"), backbone_args.pop("w2"), backbone_args.pop("l")
    name = registry.variant_name(w1, w2, l)
    backbone = registry.create_backbone(name, **backbone_args)
    return panoptic_deeplab.PanopticDeepLab(
        backbone, arguments["num_classes"], **arguments["head_args"]
    )


def load_imported(directory: str) -> keras.Model:
    """Rebuilds an imported model (or backbone) and loads its weights."""
    directory = pathlib.Path(directory)
    for stem in ("model", "backbone"):
        config_path = directory / f"{stem}_config.json"
        if config_path.exists():
            model = keras.saving.deserialize_keras_object(json.loads(config_path.read_text()))
            model.load_weights(directory / f"{stem}.weights.h5")
            return model
    raise FileNotFoundError(f"{directory}: no model_config.json or backbone_config.json")


def import_checkpoint(
    *,
    checkpoint: str,
    output: str,
    config: str | None = None,
    backbone: str | None = None,
    backbone_overrides: dict | None = None,
    num_classes: int | None = None,
    head_overrides: dict | None = None,
    backbone_only: bool = False,
) -> dict:
    """Builds the model, assigns the checkpoint, writes weights, config and report."""
    if config:
        model = build_from_config(config)
        if backbone_only:
            model = model.backbone
    elif backbone:
        options = {**(backbone_overrides or {}), "layout": "deeplab2"}
        if backbone_only:
            model = registry.create_backbone(backbone, **options)
        elif num_classes is None:
            raise ValueError("--num_classes is needed to import a whole model without --config")
        else:
            model = panoptic_deeplab.build_panoptic_deeplab(
                backbone,
                num_classes,
                output_stride=options.pop("output_stride", 16),
                backbone_options=options,
                **(head_overrides or {}),
            )
    else:
        raise ValueError("give --config (a deeplab2 config) or --backbone")
    report = assign_from_checkpoint(model, checkpoint, backbone_only=backbone_only)
    stem = "backbone" if backbone_only else "model"
    out = pathlib.Path(output)
    out.mkdir(parents=True, exist_ok=True)
    model.save_weights(out / f"{stem}.weights.h5")
    (out / f"{stem}_config.json").write_text(
        json.dumps(keras.saving.serialize_keras_object(model), indent=1)
    )
    lines = [
        f"checkpoint: {report['checkpoint']}",
        f"model: {model.name} ({model.count_params():,} parameters)",
        f"assigned variables: {report['assigned']}",
        f"skipped checkpoint entries (not model weights): {len(report['skipped'])}",
        *(f"  {key}" for key in report["skipped"]),
        f"skipped per-variable optimizer slots ({_SLOT.strip('/')}): "
        f"{len(report['optimizer_slots'])}",
    ]
    (out / "import_report.txt").write_text("\n".join(lines) + "\n")
    report["output"] = str(out)
    return report


FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (only when run as a program)."""
    flags.DEFINE_string("checkpoint", None, "deeplab2 checkpoint prefix or directory.")
    flags.DEFINE_string("output", None, "Directory for the imported weights.")
    flags.DEFINE_string("config", None, "deeplab2 ExperimentOptions text proto of the checkpoint.")
    flags.DEFINE_string("backbone", None, "Backbone name, e.g. swidernet_1_1_1 (without --config).")
    flags.DEFINE_multi_string("override", [], "Backbone option KEY=VALUE, e.g. sac=false.")
    flags.DEFINE_integer("num_classes", None, "Semantic classes (whole model without --config).")
    flags.DEFINE_multi_string("head_override", [], "Panoptic-DeepLab option KEY=VALUE.")
    flags.DEFINE_bool("backbone_only", False, "Import only the backbone (encoder) weights.")


def main(argv):
    del argv
    if not FLAGS.checkpoint or not FLAGS.output:
        raise app.UsageError("--checkpoint and --output are required")
    return cli.run_main(_import_from_flags)


def _import_from_flags() -> None:
    report = import_checkpoint(
        checkpoint=FLAGS.checkpoint,
        output=FLAGS.output,
        config=FLAGS.config,
        backbone=FLAGS.backbone,
        backbone_overrides=overrides_lib.parse_overrides(FLAGS.override),
        num_classes=FLAGS.num_classes,
        head_overrides=overrides_lib.parse_overrides(FLAGS.head_override),
        backbone_only=FLAGS.backbone_only,
    )
    slots = len(report["optimizer_slots"])
    print(
        f"imported {report['assigned']} variables from {report['checkpoint']} into "
        f"{report['output']} ({len(report['skipped'])} non-model entries"
        + (f" and {slots} per-variable optimizer slots" if slots else "")
        + " skipped)"
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
