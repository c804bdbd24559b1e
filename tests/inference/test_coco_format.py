"""COCO panoptic encoding and segment tables on hand-made maps."""

import numpy as np
import pytest

from swiderrnet_tf.data import dataset_info
from swiderrnet_tf.inference import coco_format
from swiderrnet_tf.inference import visualization

METADATA = dataset_info.make_dataset_info(
    name="three",
    class_names=["road", "car", "person"],
    thing_classes=[1, 2],
    label_divisor=1000,
    stuff_area_limit=0,
    eval_scales=[1.0],
    colors=[[128, 64, 128], [0, 0, 142], [220, 20, 60]],
    category_ids=[7, 20, 33],
)
VOID = 255 * 1000


def test_id_to_rgb_is_panopticapis_encoding():
    ids = np.array([[0, 1, 256], [257, 65536, 256**3 - 1]])
    expected = np.array(
        [[[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[1, 1, 0], [0, 0, 1], [255, 255, 255]]], np.uint8
    )
    np.testing.assert_array_equal(coco_format.id_to_rgb(ids), expected)
    np.testing.assert_array_equal(coco_format.rgb_to_id(expected), ids)
    with pytest.raises(ValueError, match="segment ids"):
        coco_format.id_to_rgb(np.array([[256**3]]))


def test_segments_info_areas_and_boxes():
    # road (class 0) left, car 1001 top right, person 2001 and 2002, void.
    panoptic = np.array(
        [
            [0, 0, 1001, 1001, 1001],
            [0, 0, 1001, VOID, 2002],
            [0, 2001, 2001, VOID, 2002],
            [0, 2001, 0, 0, 2002],
        ]
    )
    ids = coco_format.segment_ids(panoptic, METADATA)
    assert ids[1, 3] == 0 and ids[0, 0] == 1 and ids[0, 2] == 1002
    info = coco_format.segments_info(ids, METADATA)
    # Worked out by hand: [x, y, width, height] and pixel counts.
    assert info == [
        {"id": 1, "category_id": 7, "iscrowd": 0, "area": 8, "bbox": [0, 0, 4, 4]},
        {"id": 1002, "category_id": 20, "iscrowd": 0, "area": 4, "bbox": [2, 0, 3, 2]},
        {"id": 2002, "category_id": 33, "iscrowd": 0, "area": 3, "bbox": [1, 2, 2, 2]},
        {"id": 2003, "category_id": 33, "iscrowd": 0, "area": 3, "bbox": [4, 1, 1, 3]},
    ]


def test_categories_and_image_ids():
    assert coco_format.categories(METADATA)[1] == {
        "id": 20,
        "name": "car",
        "isthing": 1,
        "color": [0, 0, 142],
    }
    assert coco_format.image_id("000000000139") == 139
    assert coco_format.image_id("frankfurt_000000") == "frankfurt_000000"


def test_overlay_colours_void_and_borders():
    panoptic = np.array([[0, 0, 1001], [0, 0, VOID]])
    image = np.full((2, 3, 3), 100, np.uint8)
    out = visualization.overlay(image, panoptic, METADATA, alpha=0.5)
    # Pixel (1, 0): inside road, no border: half image, half road colour.
    np.testing.assert_array_equal(out[1, 0], [114, 82, 114])
    np.testing.assert_array_equal(out[1, 2], [100, 100, 100])  # void: the image
    np.testing.assert_array_equal(out[0, 1], [255, 255, 255])  # border with the car
    colors = visualization.segment_colors(np.array([[1001, 1002]]), METADATA)
    assert not np.array_equal(colors[0, 0], colors[0, 1])  # instances differ
