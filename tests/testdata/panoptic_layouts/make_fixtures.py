"""Writes the tiny Cityscapes, Mapillary Vistas and ADE20K panoptic fixtures.

Run from the repository root: `python tests/testdata/panoptic_layouts/make_fixtures.py`.
Each fixture follows the layout and JSON format of its dataset's public tools
(see README.md here): segment ids drawn by hand on a few rows, written as
panopticapi's RGB encoding (R + 256 * G + 256**2 * B, 0 = void), and random
images of the same size.
"""

import json
import pathlib

import numpy as np
from PIL import Image

ROOT = pathlib.Path(__file__).parent
RNG = np.random.default_rng(0)


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)


def segments_info(ids, category_of, crowd=()):
    info = []
    for segment_id in np.unique(ids):
        if segment_id == 0:
            continue
        ys, xs = np.nonzero(ids == segment_id)
        info.append(
            {
                "id": int(segment_id),
                "category_id": category_of[int(segment_id)],
                "area": len(ys),
                "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs) + 1), int(np.ptp(ys) + 1)],
                "iscrowd": int(segment_id in crowd),
            }
        )
    return info


def write_image(path: pathlib.Path, height: int, width: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def write_fixture(json_path, png_dir, entries, categories) -> None:
    """entries: (image_id, image file name, png name, image path, ids, category_of, crowd)."""
    png_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id, image_name, png_name, image_path, ids, category_of, crowd in entries:
        height, width = ids.shape
        images.append({"id": image_id, "file_name": image_name, "height": height, "width": width})
        annotations.append(
            {
                "image_id": image_id,
                "file_name": png_name,
                "segments_info": segments_info(ids, category_of, crowd),
            }
        )
        Image.fromarray(id_to_rgb(ids)).save(png_dir / png_name)
        write_image(image_path, height, width)
    data = {"images": images, "annotations": annotations, "categories": categories}
    json_path.write_text(json.dumps(data, indent=1))


def rows(height, width, spec):
    """A [height, width] id map from (row0, row1, col0, col1, id) boxes, later wins."""
    ids = np.zeros((height, width), np.int64)
    for r0, r1, c0, c1, segment_id in spec:
        ids[r0:r1, c0:c1] = segment_id
    return ids


def cityscapes() -> None:
    # createPanopticImgs.py keeps cityscapes' own ids as segment ids (stuff: the
    # label id, e.g. road 7; things: label id * 1000 + instance, crowd: the
    # label id alone) and writes train ids as category ids.
    root = ROOT / "cityscapes"
    categories = [
        {"id": 0, "name": "road", "isthing": 0},
        {"id": 2, "name": "building", "isthing": 0},
        {"id": 10, "name": "sky", "isthing": 0},
        {"id": 11, "name": "person", "isthing": 1},
        {"id": 12, "name": "rider", "isthing": 1},
        {"id": 13, "name": "car", "isthing": 1},
        {"id": 18, "name": "bicycle", "isthing": 1},
    ]
    first = rows(
        10,
        16,
        [
            (0, 3, 0, 16, 23),  # sky
            (6, 10, 0, 16, 7),  # road
            (3, 6, 0, 5, 26000),  # car 0
            (3, 6, 9, 14, 26001),  # car 1
            (2, 8, 5, 7, 24000),  # person 0
            (2, 8, 7, 9, 24),  # person crowd
            (9, 10, 12, 16, 0),  # void (ego vehicle)
        ],
    )
    second = rows(
        10,
        16,
        [
            (0, 10, 0, 16, 11),  # building
            (2, 6, 3, 8, 25000),  # rider 0
            (6, 9, 3, 9, 33000),  # bicycle 0
            (1, 4, 10, 12, 24001),  # person 1
        ],
    )
    category = {23: 10, 7: 0, 26000: 13, 26001: 13, 24000: 11, 24: 11, 24001: 11, 11: 2}
    category.update({25000: 12, 33000: 18})
    gt = root / "gtFine"
    gt.mkdir(parents=True, exist_ok=True)
    entries = []
    for prefix, ids, crowd in (
        ("frankfurt_000000_000294", first, {24}),
        ("lindau_000001_000019", second, set()),
    ):
        city = prefix.split("_")[0]
        image_path = root / "leftImg8bit" / "val" / city / f"{prefix}_leftImg8bit.png"
        entries.append(
            (
                prefix,
                f"{prefix}_leftImg8bit.png",
                f"{prefix}_gtFine_panoptic.png",
                image_path,
                ids,
                category,
                crowd,
            )
        )
    write_fixture(
        gt / "cityscapes_panoptic_val_trainId.json",
        gt / "cityscapes_panoptic_val_trainId",
        entries,
        categories,
    )


def mapillary_vistas() -> None:
    # panoptic_2018.json: COCO format, category ids 1..65, image ids are the
    # 22-character image keys.
    root = ROOT / "mapillary_vistas" / "validation"
    categories = [
        {"id": 14, "name": "Road", "supercategory": "construction--flat--road", "isthing": 0},
        {"id": 20, "name": "Person", "supercategory": "human--person", "isthing": 1},
        {"id": 28, "name": "Sky", "supercategory": "nature--sky", "isthing": 0},
        {"id": 56, "name": "Car", "supercategory": "object--vehicle--car", "isthing": 1},
    ]
    ids = rows(
        24,
        36,
        [
            (0, 10, 0, 36, 5126412),  # sky
            (14, 24, 0, 36, 2231),  # road
            (10, 18, 2, 11, 700001),  # car
            (9, 19, 20, 23, 700002),  # person
            (9, 19, 23, 27, 912),  # person crowd
            (11, 16, 28, 36, 700003),  # car
        ],
    )
    category = {5126412: 28, 2231: 14, 700001: 56, 700002: 20, 912: 20, 700003: 56}
    key = "_1Gn_xkw7sa_i9GU4mkxxQ"
    panoptic = root / "panoptic"
    entries = [
        (key, f"{key}.jpg", f"{key}.png", root / "images" / f"{key}.jpg", ids, category, {912})
    ]
    write_fixture(panoptic / "panoptic_2018.json", panoptic, entries, categories)


def ade20k() -> None:
    # Mask2Former's prepare_ade20k_pan_seg.py: category ids 0..149, image ids
    # are file stems.
    root = ROOT / "ade20k"
    categories = [
        {"id": 0, "name": "wall", "isthing": 0},
        {"id": 3, "name": "floor", "isthing": 0},
        {"id": 12, "name": "person", "isthing": 1},
        {"id": 19, "name": "chair", "isthing": 1},
    ]
    ids = rows(
        12,
        14,
        [
            (0, 7, 0, 14, 1001),  # wall
            (7, 12, 0, 14, 2002),  # floor
            (3, 11, 2, 5, 3003),  # person
            (6, 11, 7, 10, 4004),  # chair
            (6, 11, 10, 13, 5005),  # chair
            (0, 2, 0, 3, 0),  # void
        ],
    )
    category = {1001: 0, 2002: 3, 3003: 12, 4004: 19, 5005: 19}
    name = "ADE_train_00000001"
    entries = [
        (
            name,
            f"{name}.jpg",
            f"{name}.png",
            root / "images" / "training" / f"{name}.jpg",
            ids,
            category,
            set(),
        )
    ]
    write_fixture(
        root / "ade20k_panoptic_train.json", root / "ade20k_panoptic_train", entries, categories
    )


if __name__ == "__main__":
    cityscapes()
    mapillary_vistas()
    ade20k()
