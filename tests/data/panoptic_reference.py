"""Expected record labels worked out from a panoptic PNG and its JSON with numpy.

Independent of the converters: a plain loop over the JSON segments, following
deeplab2's record convention (class * divisor + instance, instances from 1 per
class in segment order, crowd and stuff 0, void at void_class * divisor).
"""

import json
import pathlib

import numpy as np
import tensorflow as tf
from PIL import Image


def segment_ids(png_path: pathlib.Path) -> np.ndarray:
    rgb = np.asarray(Image.open(png_path).convert("RGB")).astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def expected_label(png_path, segments, record_class_of, thing_ids, divisor, void_class):
    """Returns ([h, w] expected record ids, [h, w] bool crowd mask).

    Args:
      png_path: The panoptic PNG.
      segments: The annotation's `segments_info`.
      record_class_of: JSON category id -> record class.
      thing_ids: JSON category ids of thing classes.
      divisor: Label divisor.
      void_class: Record class of void.
    """
    ids = segment_ids(png_path)
    label = np.full(ids.shape, void_class * divisor, np.int64)
    crowd = np.zeros(ids.shape, bool)
    count = {}
    for segment in segments:
        mask = ids == segment["id"]
        category = segment["category_id"]
        instance = 0
        if category in thing_ids and not segment["iscrowd"]:
            count[category] = count.get(category, 0) + 1
            instance = count[category]
        label[mask] = record_class_of[category] * divisor + instance
        crowd |= mask & bool(segment["iscrowd"])
    return label, crowd


def annotations_by_png(json_path):
    data = json.loads(pathlib.Path(json_path).read_text())
    return {a["file_name"]: a for a in data["annotations"]}


def read_records(paths) -> dict[str, dict]:
    """Decodes every record of the given shards (deeplab2 schema) by filename."""
    from swiderrnet_tf.data import tfrecord

    records = {}
    for serialized in tf.data.TFRecordDataset([str(p) for p in paths]):
        example = tfrecord.decode_example(serialized)
        name = example["filename"].numpy().decode()
        records[name] = {k: v.numpy() for k, v in example.items() if k != "filename"} | {
            "serialized": serialized.numpy()
        }
    return records
