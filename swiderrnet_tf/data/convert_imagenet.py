r"""Converts ILSVRC2012 (ImageNet-1k) folders into TFRecords of the TPU reference layout.

  python -m swiderrnet_tf.data.convert_imagenet --input_dir=/data/ILSVRC2012 \
      --output_dir=gs://bucket/imagenet [--split=train,validation] \
      [--val_labels=/data/LOC_val_solution.csv] [--num_workers=N]

Expected input, relative to --input_dir (see `converters.ilsvrc`):
  train/n01440764/*.JPEG ...                one folder per synset
  val/ (or validation/) either with synset folders like train/, or flat
    (ILSVRC2012_val_00000001.JPEG ...) with a ground-truth file: the devkit's
    ILSVRC2012_validation_ground_truth.txt beside its meta.mat (here, in
    ILSVRC2012_devkit_t12/data/, or given with --val_labels), Kaggle's
    LOC_val_solution.csv or the TPU reference's synset_labels.txt.

Writes, as tensorflow/tpu `tools/datasets/imagenet_to_gcs.py` does, the
records of `classification_info.TPU_REFERENCE` (labels 1..N in sorted-synset
order) into `train-00000-of-01024` ... and `validation-00000-of-00128` ...
(read them as dataset `imagenet2012`), plus `synsets.txt` (line i: the synset
of label i). Training images are shuffled (seeded) across the shards, which
the reference meant to do and does not; validation images stay in file
order. Shards are written in parallel by --num_workers processes, each under
a temporary name renamed when complete: after an interruption, run the same
command again and it finishes the missing shards.

The conversion stops with an error naming the file on: a folder of train/
not named like a synset, a synset folder without images, an image that
cannot be decoded, a validation image without ground truth or with a synset
not in train/, a ground-truth entry whose image is missing, or an output
folder holding another conversion.

Deviations from `imagenet_to_gcs.py`:
  1. Training images are shuffled across shards (seed 0); the reference
     shuffles a copy of its index list and so writes them in glob order.
  2. CMYK and non-JPEG images are found by decoding them, not from a list of
     file names, and re-encoded with Pillow (quality 100) instead of TF.
  3. Validation labels also come from the devkit, Kaggle's CSV or synset
     folders, and `synsets.txt` records the label of each synset.
"""

import os
import sys
import time

import numpy as np
import tensorflow as tf
from absl import app
from absl import flags
from absl import logging

from swiderrnet_tf.data import classification_info
from swiderrnet_tf.data.converters import ilsvrc
from swiderrnet_tf.data.converters import shards

# The TPU reference's shard counts.
TRAIN_SHARDS = 1024
VALIDATION_SHARDS = 128
SPLITS = {"train": "train", "val": "validation", "validation": "validation"}
LABEL_MAP_FILE = "synsets.txt"
_SHUFFLE_SEED = 0


def _check_label_map(output_dir: str, synsets: list[str]) -> None:
    """Writes `synsets.txt`, or checks that an earlier conversion used the same synsets."""
    path = os.path.join(output_dir, LABEL_MAP_FILE)
    text = "".join(f"{s}\n" for s in synsets)
    tf.io.gfile.makedirs(output_dir)
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            if f.read() != text:
                raise ilsvrc.ConversionError(
                    f"{path}: {output_dir} holds a conversion with other synsets; remove it "
                    "or choose another output directory"
                )
        return
    with tf.io.gfile.GFile(path + ".tmp", "w") as f:
        f.write(text)
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)


def convert_split(
    input_dir: str,
    output_dir: str,
    split: str,
    *,
    num_shards: int = 0,
    num_workers: int = 1,
    val_labels: str | None = None,
    meta_path: str | None = None,
) -> list[str]:
    """Converts one split; returns the paths of its shards.

    Args:
      input_dir: The ILSVRC2012 folder (`train/`, `val/`).
      output_dir: Where the shards go (local or gs://).
      split: `train`, or `val` / `validation`.
      num_shards: Shards (at most one per image); 0 takes the reference's
        1024 (train) or 128 (validation).
      num_workers: Processes writing shards.
      val_labels: Ground-truth file of a flat validation folder; None looks
        for one in `input_dir`.
      meta_path: The devkit's meta.mat, when not beside the ground truth.

    Returns:
      The shard paths, in order.

    Raises:
      ValueError: on bad inputs (`ilsvrc.ConversionError`, naming the file).
    """
    if split not in SPLITS:
        raise ilsvrc.ConversionError(f"--split: unknown split {split!r}; known: {sorted(SPLITS)}")
    prefix = SPLITS[split]
    has_train = tf.io.gfile.isdir(os.path.join(input_dir, "train"))
    if prefix == "train":
        if not has_train:
            raise ilsvrc.ConversionError(f"{input_dir}: no train/ folder")
        items, synsets = ilsvrc.train_items(input_dir)
        order = np.random.default_rng(_SHUFFLE_SEED).permutation(len(items))
        items = [items[i] for i in order]
    else:
        synsets = ilsvrc.synset_folders(os.path.join(input_dir, "train")) if has_train else None
        items, synsets = ilsvrc.validation_items(input_dir, synsets or None, val_labels, meta_path)
    if not items:
        raise ilsvrc.ConversionError(f"{input_dir}: split {split!r} has no images")
    if len(synsets) != classification_info.IMAGENET2012.num_classes:
        logging.warning(
            "%d synsets, not ImageNet-1k's 1000: register the records as a dataset of "
            "their own (classification_info.register_classification_dataset)",
            len(synsets),
        )
    _check_label_map(output_dir, synsets)
    default = TRAIN_SHARDS if prefix == "train" else VALIDATION_SHARDS
    num_shards = min(num_shards or default, len(items))
    logging.info(
        "%s: %d images of %d synsets into %d shards", prefix, len(items), len(synsets), num_shards
    )
    start = time.monotonic()
    paths = shards.write_sharded(
        items=items,
        item_names=[os.path.relpath(item.path, input_dir) for item in items],
        convert_fn=ilsvrc.build_example,
        output_dir=output_dir,
        split=prefix,
        num_shards=num_shards,
        num_workers=num_workers,
        settings={"layout": classification_info.TPU_REFERENCE.name, "labels": synsets},
        suffix="",
    )
    logging.info(
        "%s: %d shards in %s (%.0f s)", prefix, num_shards, output_dir, time.monotonic() - start
    )
    return paths


FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (only when run as a program)."""
    flags.DEFINE_string("input_dir", None, "The ILSVRC2012 folder, holding train/ and val/.")
    flags.DEFINE_string("output_dir", None, "Where the TFRecord shards go (local or gs://).")
    flags.DEFINE_list("split", ["train", "validation"], "Splits to convert: train, validation.")
    flags.DEFINE_string(
        "val_labels",
        None,
        "Ground truth of a flat val/ folder: ILSVRC2012_validation_ground_truth.txt (with "
        "meta.mat beside it), LOC_val_solution.csv or synset_labels.txt; default: looked for "
        "in --input_dir and its ILSVRC2012_devkit_t12/data.",
    )
    flags.DEFINE_string("meta_mat", None, "The devkit's meta.mat, if not beside the ground truth.")
    flags.DEFINE_integer(
        "train_shards", TRAIN_SHARDS, "Shards of the training split (at most one per image)."
    )
    flags.DEFINE_integer(
        "validation_shards",
        VALIDATION_SHARDS,
        "Shards of the validation split (at most one per image).",
    )
    flags.DEFINE_integer(
        "num_workers", os.cpu_count() or 1, "Processes writing shards in parallel."
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    missing = [name for name in ("input_dir", "output_dir") if not getattr(FLAGS, name)]
    if missing:
        print(f"error: --{missing[0]} is required", file=sys.stderr)
        return 2
    try:
        for split in FLAGS.split:
            shards_of_split = FLAGS.train_shards if split == "train" else FLAGS.validation_shards
            if shards_of_split < 1:
                raise ilsvrc.ConversionError(f"shard counts must be >= 1, got {shards_of_split}")
            convert_split(
                FLAGS.input_dir,
                FLAGS.output_dir,
                split,
                num_shards=shards_of_split,
                num_workers=FLAGS.num_workers,
                val_labels=FLAGS.val_labels,
                meta_path=FLAGS.meta_mat,
            )
    except ValueError as e:
        logging.debug("conversion failed", exc_info=True)
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
