"""The two real COCO panoptic images of `tests/testdata`, in model space.

COCO category ids become contiguous model classes in the order of the category
list (sorted by id), void (id 0) becomes `IGNORE * DIVISOR`, each non-crowd
thing segment gets instance ids 1, 2, ... within its class, and crowd regions
and stuff segments get instance id 0.
"""

import dataclasses
import json
import pathlib

import numpy as np
from PIL import Image

from swiderrnet_tf.data import dataset_info

SAMPLE = pathlib.Path(__file__).parents[1] / "testdata" / "coco_panoptic_sample"
DIVISOR = 256
IGNORE = 255


@dataclasses.dataclass
class SampleImage:
    name: str
    panoptic: np.ndarray  # [height, width] int64, model space
    # COCO segment id -> model-space panoptic id.
    segment_ids: dict[int, int]
    # COCO segment id -> area from the JSON (independent of the PNG decoding here).
    areas: dict[int, int]


def load() -> tuple[dataset_info.DatasetInfo, dict[int, int], list[SampleImage]]:
    """Returns the dataset facts, COCO category id -> model class, and the images."""
    document = json.loads((SAMPLE / "panoptic_examples.json").read_text())
    categories = sorted(document["categories"], key=lambda c: c["id"])
    model_class = {c["id"]: i for i, c in enumerate(categories)}
    info = dataset_info.DatasetInfo(
        name="coco_sample",
        num_classes=len(categories),
        thing_classes=tuple(i for i, c in enumerate(categories) if c["isthing"]),
        label_divisor=DIVISOR,
        stuff_area_limit=0,
        eval_scales=(1.0,),
        class_names=tuple(c["name"] for c in categories),
        colors=tuple(tuple(c["color"]) for c in categories),
    )
    images = []
    for annotation in document["annotations"]:
        rgb = np.asarray(Image.open(SAMPLE / "panoptic_examples" / annotation["file_name"]))
        rgb = rgb.astype(np.int64)
        coco_ids = rgb[..., 0] + 256 * rgb[..., 1] + 256**2 * rgb[..., 2]
        panoptic = np.full(coco_ids.shape, IGNORE * DIVISOR, np.int64)
        next_instance = {}
        segment_ids, areas = {}, {}
        for segment in annotation["segments_info"]:
            category = categories[model_class[segment["category_id"]]]
            instance = 0
            if category["isthing"] and not segment["iscrowd"]:
                instance = next_instance.get(category["id"], 1)
                next_instance[category["id"]] = instance + 1
            segment_ids[segment["id"]] = model_class[category["id"]] * DIVISOR + instance
            areas[segment["id"]] = segment["area"]
            panoptic[coco_ids == segment["id"]] = segment_ids[segment["id"]]
        images.append(SampleImage(annotation["file_name"], panoptic, segment_ids, areas))
    return info, model_class, images
