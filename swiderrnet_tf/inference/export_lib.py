"""Writes a Panoptic-DeepLab SavedModel with the merge inside, and reads its metadata.

`export_saved_model(model, dataset_info, output_dir)` saves the signatures of
`serving.PanopticServingModule` (uint8 images and encoded bytes in, panoptic
maps out) and, as the asset `assets/panoptic_metadata.json`, what a reader
needs without this package: class names, colours, thing flags, the category
id of each class in COCO panoptic files, the label divisor and void, the merge
settings and the scales. `read_metadata` reads it back. Without gin or a
training checkpoint:

  model = panoptic_deeplab.build_panoptic_deeplab("swidernet_0.25_0.5_1", 19, "fast")
  model.load_weights("cityscapes.weights.h5")
  export_lib.export_saved_model(model, dataset_info.CITYSCAPES, "exported/cityscapes",
                                nms_kernel=13, keep_k_centers=400)

The SavedModel holds only TensorFlow ops: it loads with
`tf.saved_model.load(output_dir)` in a process that has never imported
swiderrnet_tf (or in TF Serving) and runs on any TensorFlow with XLA (the
merge of each canvas is compiled by XLA unless exported with
`jit_compile_merge=False`).

Deviation from deeplab2's `export_model.py`:
  1. deeplab2 resizes or pads every image to the training crop, runs batch 1
     and merges at that size; here the network runs at the image's own size,
     any batch size, and the merge is exact on a fitting canvas
     (`canvas_merge`).
"""

import json
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from swiderrnet_tf import cli
from swiderrnet_tf import common
from swiderrnet_tf.data import dataset_info as dataset_info_lib
from swiderrnet_tf.inference import canvas_merge
from swiderrnet_tf.inference import panoptic_predictor
from swiderrnet_tf.inference import precision as precision_lib
from swiderrnet_tf.inference import serving

METADATA_FILE = "panoptic_metadata.json"
METADATA_VERSION = 1


def build_metadata(
    info, *, merge, scales, flip, category_ids, model_name, num_parameters, precision="float32"
):
    """The metadata dict stored beside the SavedModel (see `read_metadata`)."""
    metadata = {
        "version": METADATA_VERSION,
        "dataset": info.name,
        "num_classes": info.num_classes,
        "class_names": list(info.class_names),
        "colors": [list(c) for c in info.colors],
        "is_thing": list(info.is_thing),
        "category_ids": list(category_ids),
        "label_divisor": info.label_divisor,
        "ignore_label": info.ignore_label,
        "void_panoptic_id": info.void_panoptic_id,
        "merge": {**merge.settings, "thing_classes": list(merge.settings["thing_classes"])},
        "canvas_sides": list(merge.sides),
        "merge_xla": merge.jit_compile,
        "scales": list(scales),
        "flip": bool(flip),
        "signatures": {
            "images": serving.IMAGES_SIGNATURE,
            "bytes": serving.BYTES_SIGNATURE,
        },
        "outputs": list(serving.OUTPUT_KEYS),
        "model": {"name": model_name, "parameters": int(num_parameters)},
        "precision": precision,
    }
    if precision != "float32":
        metadata["float32_signatures"] = dict(serving.FLOAT32_SIGNATURES)
    return metadata


def signatures_for(metadata: dict, precision: str) -> dict:
    """`{"images": name, "bytes": name}` of the signatures that run in `precision`.

    Raises:
      ValueError: When the SavedModel has no signatures of that precision.
    """
    exported = metadata.get("precision", "float32")
    if precision == exported:
        return metadata["signatures"]
    if precision == "float32" and "float32_signatures" in metadata:
        return metadata["float32_signatures"]
    raise ValueError(
        f"the SavedModel was exported in {exported} and has no {precision} signatures; "
        f"export it again with --precision={precision}"
    )


def export_saved_model(
    model,
    dataset_info,
    output_dir: str,
    *,
    scales=(1.0,),
    flip: bool = False,
    center_threshold: float | None = None,
    nms_kernel: int | None = None,
    keep_k_centers: int | None = None,
    canvas_sides=canvas_merge.DEFAULT_CANVAS_SIDES,
    category_ids=None,
    jit_compile_merge: bool = True,
    overwrite: bool = False,
) -> str:
    """Saves `model` + merge as a SavedModel with image and bytes signatures.

    Args:
      model: A Panoptic-DeepLab Keras model (TensorFlow backend), weights loaded.
        Built under `precision.policy_scope("bfloat16")`, the SavedModel runs
        its network in bfloat16 and also has float32 signatures of the same
        weights (`serving.FLOAT32_SIGNATURES`); the metadata records which.
      dataset_info: The `DatasetInfo` it was trained on (classes, things,
        label divisor, stuff area limit, void, names, colours).
      output_dir: Where to write (local or gs://).
      scales: Input scales averaged inside the SavedModel (e.g. the dataset's
        `eval_scales`); `(1.0,)` for single-scale.
      flip: Also average left-right flipped inputs.
      center_threshold, nms_kernel, keep_k_centers: Merge settings that
        replace the dataset's (None: `dataset_info`'s).
      canvas_sides: Per-axis merge canvas lengths; the largest bounds the
        image size the SavedModel accepts (see `canvas_merge`).
      category_ids: Category id per model class for COCO panoptic output;
        default `dataset_info.category_ids`.
      jit_compile_merge: Compile the merge with XLA (needs a TensorFlow with
        XLA where the SavedModel runs).
      overwrite: Replace an existing non-empty `output_dir`.

    Returns:
      `output_dir`.

    Raises:
      ValueError: If the model's classes differ from the dataset's, the
        settings cannot work, or `output_dir` is not empty and `overwrite`
        is False.
      cli.FileAccessError: If `output_dir` cannot be written; what was
        written of it is removed.
    """
    num_classes = output_classes(model)
    if num_classes != dataset_info.num_classes:
        raise ValueError(
            f"the model predicts {num_classes} classes but dataset {dataset_info.name!r} "
            f"has {dataset_info.num_classes}"
        )
    model_precision = precision_lib.model_precision(model)
    category_ids = tuple(category_ids or dataset_info.category_ids)
    if len(category_ids) != num_classes:
        raise ValueError(f"category_ids has {len(category_ids)} entries, expected {num_classes}")
    if tf.io.gfile.exists(output_dir) and tf.io.gfile.listdir(output_dir) and not overwrite:
        raise ValueError(f"{output_dir} is not empty; pass overwrite=True to replace it")
    settings = panoptic_predictor.merge_settings(
        dataset_info,
        center_threshold=center_threshold,
        nms_kernel=nms_kernel,
        keep_k_centers=keep_k_centers,
    )
    merge = canvas_merge.CanvasMerge(
        num_classes, canvas_sides, jit_compile=jit_compile_merge, **settings
    )
    metadata = build_metadata(
        dataset_info,
        merge=merge,
        scales=scales,
        flip=flip,
        category_ids=category_ids,
        model_name=model.name,
        num_parameters=sum(int(np.prod(w.shape)) for w in model.weights),
        precision=model_precision,
    )
    with tempfile.TemporaryDirectory() as scratch:
        metadata_path = os.path.join(scratch, METADATA_FILE)
        with open(metadata_path, "w", encoding="utf-8") as f:
            json.dump(metadata, f, indent=1)
        module = serving.PanopticServingModule(
            model, merge, scales=scales, flip=flip, metadata_path=metadata_path
        )
        logging.info(
            "Tracing the %s signatures (%d merge canvases)", model_precision, len(merge.sides) ** 2
        )
        signatures = module.signatures()
        if model_precision != "float32":
            logging.info("Tracing the float32 signatures of the same weights")
            signatures.update(module.float32_signatures())
        try:
            with cli.file_access(output_dir, "write the SavedModel"):
                tf.saved_model.save(module, output_dir, signatures=signatures)
        except cli.FileAccessError:
            # A partial SavedModel would load as a broken one: leave none.
            _remove_tree_quietly(output_dir)
            raise
    logging.info("Wrote the SavedModel to %s", output_dir)
    return output_dir


def _remove_tree_quietly(path: str) -> None:
    try:
        if tf.io.gfile.exists(path):
            tf.io.gfile.rmtree(path)
    except cli.file_system_errors():
        logging.warning("Could not remove the partial SavedModel %s", path)


def output_classes(model) -> int:
    """Number of classes in the model's `semantic_logits` output."""
    spec = model.compute_output_spec(keras.KerasTensor((1, 33, 33, 3), "float32"))
    if not isinstance(spec, dict) or common.SEMANTIC_LOGITS not in spec:
        raise ValueError(f"the model does not return a dict with {common.SEMANTIC_LOGITS!r}")
    return int(spec[common.SEMANTIC_LOGITS].shape[-1])


def read_metadata(saved_model_dir: str) -> dict:
    """The metadata an exported SavedModel carries (plain JSON; no TensorFlow needed).

    Raises:
      ValueError: Naming the directory when the file is missing or unreadable.
    """
    path = os.path.join(saved_model_dir, "assets", METADATA_FILE)
    try:
        with tf.io.gfile.GFile(path, "r") as f:
            metadata = json.load(f)
    except (tf.errors.OpError, OSError) as e:
        raise ValueError(
            f"{saved_model_dir}: no {METADATA_FILE} in its assets; was it written by "
            f"swiderrnet_tf.export? ({e})"
        ) from e
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from e
    if metadata.get("version") != METADATA_VERSION:
        raise ValueError(
            f"{path}: metadata version {metadata.get('version')!r}, expected {METADATA_VERSION}"
        )
    return metadata


def dataset_info_from_metadata(metadata: dict):
    """The `DatasetInfo` a SavedModel was exported for, rebuilt from its metadata.

    Classes, things, names, colours, category ids, label divisor, void and the
    merge settings are those of the export; `eval_scales` are the scales the
    SavedModel averages. The dataset is not registered.
    """
    merge = metadata["merge"]
    return dataset_info_lib.DatasetInfo(
        name=metadata["dataset"],
        num_classes=metadata["num_classes"],
        thing_classes=tuple(merge["thing_classes"]),
        label_divisor=metadata["label_divisor"],
        stuff_area_limit=merge["stuff_area_limit"],
        eval_scales=tuple(metadata["scales"]),
        class_names=tuple(metadata["class_names"]),
        colors=tuple(tuple(c) for c in metadata["colors"]),
        ignore_label=metadata["ignore_label"],
        center_threshold=merge["center_threshold"],
        nms_kernel=merge["nms_kernel"],
        keep_k_centers=merge["keep_k_centers"],
        category_ids=tuple(metadata["category_ids"]),
    )
