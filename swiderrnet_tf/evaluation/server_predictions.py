"""Predictions in the files the benchmarks' test servers take.

`PredictionWriter` receives each evaluated image's panoptic map and instance
scores and writes, into one folder:

  * `panoptic/<name>.png` and `panoptic.json`: COCO panoptic format
    (panopticapi's, which the COCO test-dev server and cityscapesScripts'
    `evalPanopticSemanticLabeling.py` read). The PNG encodes a segment id per
    pixel as `id = R + 256 G + 256^2 B` (0 = void); the JSON's `annotations`
    give per image its `image_id`, the PNG's `file_name` and `segments_info`
    (`id`, `category_id`, `iscrowd`, `area`, `bbox`), one entry per segment
    id in the PNG. Category ids are `DatasetInfo.server_category_ids`: COCO's
    sparse 1..200, Cityscapes' label ids 7..33. Segment ids are `panoptic id
    + 1` (`coco_format`).
  * for Cityscapes also the instance-level format of cityscapesScripts'
    `evalInstanceLevelSemanticLabeling.py`: `instances/<name>_pred.txt` with
    one line `masks/<name>_<k>.png <label id> <score>` per thing instance,
    and the binary mask PNGs (0 and 255) under `instances/masks/`.

`<name>` is the record's file name without extension (and, for Cityscapes,
without `_leftImg8bit`), so `image_id` is COCO's integer id for numeric names
(`000000000139` -> 139) and the Cityscapes `city_seq_frame` id otherwise.

Every file is written under a temporary name and renamed when complete; the
JSON is written last, by `close`, so a folder without `panoptic.json` is an
interrupted one.

Deliberate deviations from the servers' own tools:
  1. An image that the evaluation resized to fit `evaluate.crop_size` is
     predicted at the reduced size and its maps are scaled back to the stored
     size by nearest neighbour (logged): the servers need every image at full
     resolution. Set the crop to hold the largest image to avoid it.
"""

import json
import os
import pathlib

import numpy as np
from absl import logging
from PIL import Image

from swiderrnet_tf import fileio
from swiderrnet_tf.inference import coco_format

PANOPTIC_DIR = "panoptic"
PANOPTIC_JSON = "panoptic.json"
INSTANCES_DIR = "instances"
MASKS_DIR = "masks"
# The datasets whose server also takes the instance-level format.
_INSTANCE_LEVEL = ("cityscapes",)


def image_name(file_name: str, info) -> str:
    """The name of an image's prediction files: file stem, Cityscapes suffix dropped."""
    stem = pathlib.PurePath(file_name).stem
    if info.name in _INSTANCE_LEVEL:
        stem = stem.removesuffix("_leftImg8bit")
    return stem


def resize_nearest(array: np.ndarray, size) -> np.ndarray:
    """`[h, w]` -> `[size[0], size[1]]` by nearest neighbour (pixel centres)."""
    height, width = array.shape[:2]
    rows = ((np.arange(size[0]) + 0.5) * height / size[0]).astype(np.int64)
    cols = ((np.arange(size[1]) + 0.5) * width / size[1]).astype(np.int64)
    return array[np.minimum(rows, height - 1)][:, np.minimum(cols, width - 1)]


def _write_png(path: str, array: np.ndarray) -> None:
    with fileio.atomic_write(path, "wb") as f:
        Image.fromarray(array).save(f, format="PNG")


class PredictionWriter:
    """Writes test-server files for one evaluated split.

    Args:
      output_dir: The folder (created).
      info: The `DatasetInfo`: classes, things, label divisor, server
        category ids.
      description: Goes into the JSON's `info`.
    """

    def __init__(self, output_dir: str, info, description: str = "swiderrnet_tf predictions"):
        self.output_dir = output_dir
        self.info = info
        self.instance_level = info.name in _INSTANCE_LEVEL
        folders = [PANOPTIC_DIR]
        if self.instance_level:
            folders.append(os.path.join(INSTANCES_DIR, MASKS_DIR))
        for folder in folders:
            fileio.make_dirs(os.path.join(output_dir, folder), "predictions folder")
        self._json = {
            "info": {"description": description},
            "images": [],
            "annotations": [],
            "categories": coco_format.categories(info, info.server_category_ids),
        }
        self._resized = 0

    @property
    def num_images(self) -> int:
        return len(self._json["images"])

    def add(self, file_name: str, panoptic: np.ndarray, instance_scores: np.ndarray, size=None):
        """Writes one image's files.

        Args:
          file_name: The record's `image/filename`.
          panoptic: `[h, w]` panoptic ids (model classes), cropped to the
            image (no padding).
          instance_scores: `[h, w]` score of each thing pixel's instance.
          size: `(height, width)` of the stored image, when the maps are of a
            resized copy (see the module's deviation 1).
        """
        panoptic = np.asarray(panoptic)
        instance_scores = np.asarray(instance_scores)
        if size is not None and tuple(size) != panoptic.shape:
            if not self._resized:
                logging.warning(
                    "%s was resized to fit evaluate.crop_size; its predictions are scaled back "
                    "to %s by nearest neighbour (a crop that holds every image avoids it)",
                    file_name,
                    tuple(size),
                )
            self._resized += 1
            panoptic = resize_nearest(panoptic, size)
            instance_scores = resize_nearest(instance_scores, size)
        name = image_name(file_name, self.info)
        ids = coco_format.segment_ids(panoptic, self.info)
        png_name = f"{name}.png"
        png_path = os.path.join(self.output_dir, PANOPTIC_DIR, png_name)
        _write_png(png_path, coco_format.id_to_rgb(ids))
        if self.instance_level:
            self._write_instances(name, panoptic, instance_scores)
        image_id = coco_format.image_id(name)
        height, width = panoptic.shape
        self._json["images"].append(
            {"id": image_id, "file_name": file_name, "height": height, "width": width}
        )
        self._json["annotations"].append(
            {
                "image_id": image_id,
                "file_name": png_name,
                "segments_info": coco_format.segments_info(
                    ids, self.info, self.info.server_category_ids
                ),
            }
        )

    def _write_instances(self, name: str, panoptic: np.ndarray, scores: np.ndarray) -> None:
        divisor = self.info.label_divisor
        lines = []
        for panoptic_id in np.unique(panoptic):
            model_class, instance = divmod(int(panoptic_id), divisor)
            # Instance 0 of a thing class is no instance (a crowd-like region).
            if instance == 0 or model_class not in self.info.thing_classes:
                continue
            mask = panoptic == panoptic_id
            mask_name = f"{MASKS_DIR}/{name}_{len(lines)}.png"
            _write_png(
                os.path.join(self.output_dir, INSTANCES_DIR, mask_name),
                np.where(mask, 255, 0).astype(np.uint8),
            )
            label_id = self.info.server_category_ids[model_class]
            lines.append(f"{mask_name} {label_id} {float(scores[mask].max()):.6f}\n")
        path = os.path.join(self.output_dir, INSTANCES_DIR, f"{name}_pred.txt")
        with fileio.atomic_write(path) as f:
            f.write("".join(lines))

    def close(self) -> str:
        """Writes `panoptic.json`; returns its path."""
        if self._resized:
            logging.warning("%d image(s) were predicted at a reduced size", self._resized)
        path = os.path.join(self.output_dir, PANOPTIC_JSON)
        with fileio.atomic_write(path) as f:
            json.dump(self._json, f)
        logging.info("Wrote the predictions of %d images to %s", self.num_images, self.output_dir)
        return path
