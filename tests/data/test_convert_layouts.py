"""Converters of the Cityscapes, Mapillary Vistas and ADE20K layouts.

The fixtures in tests/testdata/panoptic_layouts follow each dataset's public
tools (see its README.md); expected labels come from their PNG + JSON via
`panoptic_reference`.
"""

import json
import pathlib
import shutil

import numpy as np
import pytest

from swiderrnet_tf.data import convert
from swiderrnet_tf.data.converters import layouts
from tests.data import panoptic_reference

LAYOUTS = pathlib.Path(__file__).parents[1] / "testdata" / "panoptic_layouts"


def check_records(records, json_path, png_dir, record_class_of, divisor, void_class, names):
    """Every record's label equals the reference computed from its PNG + JSON."""
    data = json.loads(pathlib.Path(json_path).read_text())
    things = {c["id"] for c in data["categories"] if c["isthing"]}
    assert sorted(records) == sorted(names)
    for annotation, name in zip(data["annotations"], names, strict=True):
        expected, crowd = panoptic_reference.expected_label(
            png_dir / annotation["file_name"],
            annotation["segments_info"],
            record_class_of,
            things,
            divisor,
            void_class,
        )
        np.testing.assert_array_equal(records[name]["label"], expected)
        assert records[name]["image"].shape == (*expected.shape, 3)
    return expected, crowd


def test_cityscapes(tmp_path):
    root = LAYOUTS / "cityscapes"
    paths = convert.convert_split("cityscapes", str(root), str(tmp_path), "val", 1)
    records = panoptic_reference.read_records(paths)
    gt = root / "gtFine"
    names = ["frankfurt_000000_000294", "lindau_000001_000019"]
    # Train ids are the record classes; void is 255.
    check_records(
        records,
        gt / "cityscapes_panoptic_val_trainId.json",
        gt / "cityscapes_panoptic_val_trainId",
        {i: i for i in range(19)},
        1000,
        255,
        names,
    )
    first = records["frankfurt_000000_000294"]["label"]
    # Hand-checked pixels: road, car 1, car 2, person 1, person crowd, void.
    assert [first[7, 0], first[4, 0], first[4, 10], first[3, 5], first[3, 7], first[9, 15]] == [
        0,
        13001,
        13002,
        11001,
        11000,
        255000,
    ]
    # PNG images are stored as they are.
    image = root / "leftImg8bit" / "val" / "frankfurt" / f"{names[0]}_leftImg8bit.png"
    assert image.read_bytes() in records[names[0]]["serialized"]


def test_mapillary_vistas_v1_2_and_v2_archive_layouts(tmp_path):
    root = LAYOUTS / "mapillary_vistas"
    key = "_1Gn_xkw7sa_i9GU4mkxxQ"
    panoptic = root / "validation" / "panoptic"
    paths = convert.convert_split("mapillary_vistas", str(root), str(tmp_path / "a"), "val", 1)
    records = panoptic_reference.read_records(paths)
    # Category ids 1..65 are the record classes; void is 0.
    identity = {i: i for i in range(1, 66)}
    _, crowd = check_records(
        records, panoptic / "panoptic_2018.json", panoptic, identity, 1000, 0, [key]
    )
    assert crowd.any() and np.all(records[key]["label"][crowd] == 20000)

    # The v2.0 archive keeps the v1.2 labels under validation/v1.2/panoptic.
    copy = tmp_path / "v2" / "validation"
    shutil.copytree(root / "validation" / "images", copy / "images")
    shutil.copytree(panoptic, copy / "v1.2" / "panoptic")
    paths = convert.convert_split(
        "mapillary_vistas", str(tmp_path / "v2"), str(tmp_path / "b"), "val", 1
    )
    again = panoptic_reference.read_records(paths)
    np.testing.assert_array_equal(again[key]["label"], records[key]["label"])


def test_mapillary_vistas_resized_to_max_size(tmp_path):
    root = LAYOUTS / "mapillary_vistas"
    key = "_1Gn_xkw7sa_i9GU4mkxxQ"
    full = convert.convert_split("mapillary_vistas", str(root), str(tmp_path / "a"), "val", 1)
    small = convert.convert_split(
        "mapillary_vistas", str(root), str(tmp_path / "b"), "val", 1, max_size=18
    )
    label = panoptic_reference.read_records(full)[key]["label"]  # [24, 36]
    record = panoptic_reference.read_records(small)[key]
    # Longest side 36 -> 18: nearest neighbour picks the source pixel under
    # each output pixel's centre.
    rows = np.floor((np.arange(12) + 0.5) * 24 / 12).astype(int)
    cols = np.floor((np.arange(18) + 0.5) * 36 / 18).astype(int)
    np.testing.assert_array_equal(record["label"], label[rows][:, cols])
    assert record["image"].shape == (12, 18, 3)
    assert record["height"] == 12 and record["width"] == 18
    assert b"jpeg" in record["serialized"]


def test_ade20k(tmp_path):
    root = LAYOUTS / "ade20k"
    paths = convert.convert_split("ade20k", str(root), str(tmp_path), "train", 1)
    records = panoptic_reference.read_records(paths)
    # JSON ids 0..149 are stored as 1..150 (deeplab2); void is 0.
    shifted = {i: i + 1 for i in range(150)}
    check_records(
        records,
        root / "ade20k_panoptic_train.json",
        root / "ade20k_panoptic_train",
        shifted,
        1000,
        0,
        ["ADE_train_00000001"],
    )
    label = records["ADE_train_00000001"]["label"]
    # Hand-checked: void corner, wall, floor, person 1, chairs 1 and 2.
    assert [label[0, 0], label[3, 8], label[11, 0], label[5, 3], label[8, 8], label[8, 11]] == [
        0,
        1000,
        4000,
        13001,
        20001,
        20002,
    ]


@pytest.mark.parametrize("dataset", sorted(layouts.LAYOUTS))
def test_help_documents_every_layout_path(dataset):
    layout = layouts.LAYOUTS[dataset]
    doc = convert.__doc__
    assert f"\n{dataset} -- " in doc
    for json_template, label_template in layout.annotations:
        assert json_template in doc
        assert label_template in doc
    assert layout.image in doc
