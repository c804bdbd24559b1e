r"""Converts a panoptic dataset into sharded TFRecords in deeplab2's schema.

  python -m swiderrnet_tf.data.convert --dataset=coco --input_dir=/data/coco \
      --output_dir=/data/coco/tfrecord [--split=train,val] [--num_shards=N] \
      [--num_workers=N] [--max_size=2049]

Writes `{split}-{i:05d}-of-{n:05d}.tfrecord` shards into --output_dir (local or
gs://), each example holding the image as stored and a raw int32 panoptic
label `record class * label_divisor + instance id` in the schema and class
ids of deeplab2's `build_{cityscapes,coco,ade20k}_data.py` (see
`swiderrnet_tf.data.tfrecord` and `dataset_info`), except that crowd regions
keep their class with instance id 0 instead of becoming void.
Shards are written in parallel by --num_workers processes, each under a
temporary name renamed when complete: after an interruption, run the same
command again and it finishes the missing shards.

Expected input layouts, relative to --input_dir. In the paths, {split} is
`train` or `val`, {folder} is `training` or `validation` (the same split),
{file_name} is the `file_name` of an entry of the JSON's `images` list, {city}
is the part of that name before its first `_`, and each PNG is named by the
`file_name` of its entry in the JSON's `annotations` list.

cityscapes -- after cityscapesScripts' `createPanopticImgs.py --use-train-id`
(category ids are the 19 train ids):
  gtFine/cityscapes_panoptic_{split}_trainId.json
  gtFine/cityscapes_panoptic_{split}_trainId/   *_gtFine_panoptic.png
  leftImg8bit/{split}/{city}/{file_name}        *_leftImg8bit.png

coco -- the COCO 2017 panoptic release (133 categories, ids 1..200):
  annotations/panoptic_{split}2017.json
  annotations/panoptic_{split}2017/             *.png
  {split}2017/{file_name}                       *.jpg

mapillary_vistas -- Mapillary Vistas v1.2 (65 categories, ids 1..65):
  {folder}/panoptic/panoptic_2018.json
  {folder}/panoptic/                            *.png
  {folder}/images/{file_name}                   *.jpg
  or, as unpacked from the v2.0 archive, {folder}/v1.2/panoptic/panoptic_2018.json
  with its PNGs in {folder}/v1.2/panoptic. The paper trains on images resized
  so that the longest side is 2049 pixels: pass --max_size=2049 (images are
  resized bilinearly and stored as JPEG, labels by nearest neighbour).

ade20k -- ADEChallengeData2016/ after Mask2Former's
`datasets/prepare_ade20k_pan_seg.py` (150 categories, ids 0..149):
  ade20k_panoptic_{split}.json
  ade20k_panoptic_{split}/                      *.png
  images/{folder}/{file_name}                   *.jpg

A dataset of your own, in the same COCO panoptic format: describe it in a
JSON or YAML file (see `dataset_info.make_dataset_info`; the JSON's
`categories` must carry the class names of the description) and give the
paths of one split:
  python -m swiderrnet_tf.data.convert --dataset_file=/data/orchard.yaml \
      --panoptic_json=/data/orchard/val.json --panoptic_dir=/data/orchard/val_png \
      --image_dir=/data/orchard/val_images --split=val --output_dir=/data/orchard/tfrecord

Every panoptic PNG encodes segment ids as R + 256 * G + 256**2 * B, 0 for void.
The conversion stops with an error naming the file and the id on: an unknown
category id, a segment id in a PNG but not in the JSON or the reverse, a crowd
stuff segment, more instances of a class than the label divisor allows, an
image whose size differs from its PNG, or an unreadable image; on an output
that cannot be written (a full disk, permission denied, a parent that is a
file) with the path and the cause. Errors are one line on stderr, exit status 2.
"""

import functools
import math
import os
import time

from absl import app
from absl import flags
from absl import logging

from swiderrnet_tf import cli
from swiderrnet_tf.data import dataset_info
from swiderrnet_tf.data.converters import layouts
from swiderrnet_tf.data.converters import panoptic_json
from swiderrnet_tf.data.converters import shards

_TARGET_SHARD_BYTES = 256 * 2**20
# Raw int32 labels take 4 bytes per pixel; encoded images about one more.
_BYTES_PER_PIXEL = 5
_MIN_SHARDS = 16


def default_num_shards(samples: list[panoptic_json.Sample], max_size: int = 0) -> int:
    """About 256 MB per shard, at least 16 shards (or one per image)."""
    total = 0
    for sample in samples:
        pixels = sample.num_pixels or 2**20
        if max_size > 0:
            pixels = min(pixels, max_size * max_size)
        total += pixels * _BYTES_PER_PIXEL
    return max(1, min(len(samples), _MIN_SHARDS), math.ceil(total / _TARGET_SHARD_BYTES))


def convert_split(
    dataset: str | layouts.Layout,
    input_dir: str,
    output_dir: str,
    split: str,
    num_shards: int = 0,
    num_workers: int = 1,
    max_size: int = 0,
    jpeg_quality: int = 95,
) -> list[str]:
    """Converts one split; returns the paths of its shards.

    Args:
      dataset: A dataset with a layout in `layouts.LAYOUTS`, or a layout.
      input_dir: Root directory of the dataset (the layout's paths are
        relative to it).
      output_dir: Where the shards go.
      split: `train` or `val`.
      num_shards: Number of shards; 0 picks one (`default_num_shards`).
      num_workers: Processes writing shards.
      max_size: If positive, the longest image side after resizing.
      jpeg_quality: JPEG quality of resized images.

    Returns:
      The shard paths, in order.

    Raises:
      ValueError: on bad inputs (`panoptic_json.ConversionError`, naming the
        file and the id), an output directory holding another conversion, or
        one that cannot be written (`cli.FileAccessError`).
    """
    layout = layouts.get_layout(dataset) if isinstance(dataset, str) else dataset
    info = dataset_info.get_dataset_info(layout.dataset)
    samples = layout.read_samples(input_dir, split)
    if not samples:
        raise panoptic_json.ConversionError(f"{info.name} split {split!r} has no annotated images")
    num_shards = num_shards or default_num_shards(samples, max_size)
    logging.info("%s %s: %d images into %d shards", info.name, split, len(samples), num_shards)

    start = time.monotonic()
    paths = shards.write_sharded(
        items=samples,
        item_names=[s.name for s in samples],
        convert_fn=functools.partial(
            panoptic_json.build_example, info=info, max_size=max_size, jpeg_quality=jpeg_quality
        ),
        output_dir=output_dir,
        split=split,
        num_shards=num_shards,
        num_workers=num_workers,
        settings={"dataset": info.name, "max_size": max_size, "jpeg_quality": jpeg_quality},
    )
    logging.info(
        "%s %s: %d shards in %s (%.0f s)",
        info.name,
        split,
        num_shards,
        output_dir,
        time.monotonic() - start,
    )
    return paths


def _layouts_to_convert() -> list[tuple[layouts.Layout, str, str]]:
    """(layout, input_dir, split) for every split the flags ask for."""
    dataset = FLAGS.dataset
    if FLAGS.dataset_file:
        registered = dataset_info.register_dataset_file(FLAGS.dataset_file)
        if dataset not in (None, registered):
            raise ValueError(f"--dataset={dataset}, but {FLAGS.dataset_file} is {registered!r}")
        dataset = registered
    if dataset is None:
        raise ValueError("give --dataset or --dataset_file")
    own_paths = (FLAGS.panoptic_json, FLAGS.panoptic_dir, FLAGS.image_dir)
    if any(own_paths):
        if not all(own_paths) or len(FLAGS.split) != 1:
            raise ValueError(
                "your own dataset needs --panoptic_json, --panoptic_dir, --image_dir and "
                "a single --split"
            )
        split = FLAGS.split[0]
        return [(layouts.custom_layout(dataset, split, *own_paths), "", split)]
    if dataset not in layouts.LAYOUTS:
        raise ValueError(
            f"dataset {dataset!r} has no built-in layout ({sorted(layouts.LAYOUTS)}); give "
            f"--panoptic_json, --panoptic_dir and --image_dir"
        )
    if not FLAGS.input_dir:
        raise ValueError(f"--input_dir is required for {dataset!r}")
    return [(layouts.get_layout(dataset), FLAGS.input_dir, split) for split in FLAGS.split]


FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (only when run as a program)."""
    flags.DEFINE_string(
        "dataset", None, f"Dataset to convert: {', '.join(sorted(layouts.LAYOUTS))} or your own."
    )
    flags.DEFINE_string("input_dir", None, "Root directory of a built-in dataset.")
    flags.DEFINE_string(
        "dataset_file", None, "JSON or YAML description of your own dataset, registered first."
    )
    flags.DEFINE_string("panoptic_json", None, "Your dataset: the panoptic JSON.")
    flags.DEFINE_string("panoptic_dir", None, "Your dataset: the panoptic PNGs.")
    flags.DEFINE_string("image_dir", None, "Your dataset: the images.")
    flags.DEFINE_string("output_dir", None, "Where the TFRecord shards go.")
    flags.DEFINE_list("split", ["train", "val"], "Splits to convert.")
    flags.DEFINE_integer(
        "num_shards", 0, "Shards per split; 0 aims at 256 MB per shard and at least 16 shards."
    )
    flags.DEFINE_integer(
        "num_workers", os.cpu_count() or 1, "Processes writing shards in parallel."
    )
    flags.DEFINE_integer(
        "max_size", 0, "If positive, resize images whose longest side is longer to this size."
    )
    flags.DEFINE_integer("jpeg_quality", 95, "JPEG quality of resized images.")


def _convert_from_flags() -> None:
    for layout, input_dir, split in _layouts_to_convert():
        convert_split(
            layout,
            input_dir,
            FLAGS.output_dir,
            split,
            num_shards=FLAGS.num_shards,
            num_workers=FLAGS.num_workers,
            max_size=FLAGS.max_size,
            jpeg_quality=FLAGS.jpeg_quality,
        )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    return cli.run_main(_convert_from_flags)


if __name__ == "__main__":
    define_flags()
    flags.mark_flags_as_required(["output_dir"])
    app.run(main)
