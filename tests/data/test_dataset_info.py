"""Tests for the dataset registry."""

import dataclasses
import json
import pathlib
import re

import gin
import pytest

from swiderrnet_tf.data import dataset_info


def test_cityscapes_facts():
    info = dataset_info.get_dataset_info("cityscapes")
    assert info.num_classes == 19
    assert info.thing_classes == tuple(range(11, 19))
    assert info.label_divisor == 1000
    assert info.stuff_area_limit == 2048
    assert info.eval_scales == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
    assert info.void_panoptic_id == 255 * 1000
    assert info.stuff_classes == tuple(range(11))


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown dataset 'nope'.*cityscapes"):
        dataset_info.get_dataset_info("nope")


def test_inconsistent_info_is_rejected():
    info = dataset_info.get_dataset_info("cityscapes")
    with pytest.raises(ValueError, match="class_names has 2 entries"):
        dataclasses.replace(info, name="bad", class_names=("a", "b"))
    with pytest.raises(ValueError, match=r"thing_classes \[19\]"):
        dataclasses.replace(info, name="bad", thing_classes=(19,))


COCO_CATEGORIES = (
    pathlib.Path(__file__).parents[1] / "testdata" / "coco_panoptic_sample"
) / "panoptic_coco_categories.json"


def test_coco_facts_match_panopticapi_categories():
    info = dataset_info.get_dataset_info("coco")
    categories = sorted(json.loads(COCO_CATEGORIES.read_text()), key=lambda c: c["id"])
    assert info.num_classes == len(categories) == 133
    assert info.class_names == tuple(c["name"] for c in categories)
    assert info.colors == tuple(tuple(c["color"]) for c in categories)
    assert info.thing_classes == tuple(i for i, c in enumerate(categories) if c["isthing"])
    assert info.thing_classes == tuple(range(80))
    assert info.label_divisor == 256
    assert info.stuff_area_limit == 4096
    assert info.eval_scales == (0.5, 0.75, 1.0, 1.25, 1.5)
    # deeplab2 records: 0 = void, person (model 0) stored as 1, void pixels 0.
    assert (info.record_class_offset, info.record_ignore_label) == (1, 0)
    assert info.record_void_panoptic_id == 0


def test_mapillary_vistas_facts():
    info = dataset_info.get_dataset_info("mapillary_vistas")
    assert info.num_classes == 65
    assert len(info.thing_classes) == 37 and len(info.stuff_classes) == 28
    assert info.stuff_area_limit == 4096
    assert info.eval_scales == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
    # Spot checks against the dataset's config_v1.2.json (ids are 1-based there).
    assert info.class_names[0] == "Bird" and info.is_thing[0]
    assert info.class_names[13] == "Road" and not info.is_thing[13]
    assert info.class_names[55] == "Car" and info.colors[55] == (0, 0, 142)
    assert info.class_names[64] == "Ego Vehicle" and not info.is_thing[64]
    assert (info.record_class_offset, info.record_ignore_label) == (1, 0)


def test_ade20k_facts():
    info = dataset_info.get_dataset_info("ade20k")
    assert info.num_classes == 150
    assert len(info.thing_classes) == 100 and len(info.stuff_classes) == 50
    assert info.label_divisor == 1000
    assert info.stuff_area_limit == 4096
    assert info.eval_scales == (0.5, 0.75, 1.0, 1.25, 1.5)
    # deeplab2 ade20k_constants: id 1 wall (stuff), 13 person (thing), 150 flag.
    assert info.class_names[0] == "wall" and not info.is_thing[0]
    assert info.class_names[12] == "person" and info.is_thing[12]
    assert info.class_names[149] == "flag" and info.is_thing[149]
    assert (info.record_class_offset, info.record_ignore_label) == (1, 0)


DESCRIPTION = {
    "name": "orchard",
    "class_names": ["ground", "sky", "tree", "apple"],
    "thing_classes": [2, 3],
    "label_divisor": 1000,
    "stuff_area_limit": 512,
    "eval_scales": [0.5, 1, 1.5],
    "colors": [[10, 20, 30], [0, 0, 255], [0, 128, 0], [255, 0, 0]],
    "splits": {"train": "orchard-train-*.tfrecord"},
}


def test_description_files_json_and_yaml(tmp_path):
    json_path = tmp_path / "orchard.json"
    json_path.write_text(json.dumps(DESCRIPTION))
    yaml_path = tmp_path / "orchard.yaml"
    yaml_path.write_text(
        "name: orchard\n"
        "class_names: [ground, sky, tree, apple]\n"
        "thing_classes: [2, 3]\n"
        "label_divisor: 1000\n"
        "stuff_area_limit: 512\n"
        "eval_scales: [0.5, 1, 1.5]\n"
        "colors: [[10, 20, 30], [0, 0, 255], [0, 128, 0], [255, 0, 0]]\n"
        "splits:\n"
        "  train: orchard-train-*.tfrecord\n"
    )
    info = dataset_info.load_dataset_info(json_path)
    assert info == dataset_info.load_dataset_info(yaml_path)
    assert info.num_classes == 4
    assert info.thing_classes == (2, 3)
    assert info.stuff_classes == (0, 1)
    assert info.eval_scales == (0.5, 1.0, 1.5)
    assert info.colors[0] == (10, 20, 30)
    assert info.ignore_label == 255 and info.record_class_offset == 0
    assert info.split_pattern("train") == "orchard-train-*.tfrecord"

    assert dataset_info.register_dataset_file(str(yaml_path)) == "orchard"
    assert dataset_info.get_dataset_info("orchard") == info
    # Loading the same description again is harmless; different facts are not.
    dataset_info.register_dataset_file(str(json_path))
    json_path.write_text(json.dumps(DESCRIPTION | {"stuff_area_limit": 1}))
    with pytest.raises(ValueError, match="already registered with different facts"):
        dataset_info.register_dataset_file(str(json_path))


def test_default_colors_are_the_pascal_voc_map():
    info = dataset_info.make_dataset_info(**{k: v for k, v in DESCRIPTION.items() if k != "colors"})
    # The first classes of the PASCAL VOC colour map, as the VOC devkit lists it.
    assert info.colors == ((128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"thing_classes": [2, 7]}, r"thing_classes \[7\] are outside 0..3"),
        ({"label_divisor": "1000"}, r"field 'label_divisor' must be an integer >= 1, got '1000'"),
        ({"eval_scales": [0.5, "1e-3"]}, r"field 'eval_scales\[1\]' must be a positive number"),
        ({"colors": [[1, 2, 3]] * 3 + [[1, 2]]}, r"field 'colors\[3\]' must be \[r, g, b\]"),
        ({"class_names": "ground"}, r"field 'class_names' must be a list"),
        ({"divisor": 3}, r"unknown field\(s\) \['divisor'\]"),
        ({"splits": ["train"]}, r"field 'splits' must map split names"),
    ],
)
def test_description_errors_name_the_file_and_field(tmp_path, change, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(DESCRIPTION | change))
    with pytest.raises(ValueError, match=re.escape(str(path)) + ": .*" + message):
        dataset_info.load_dataset_info(path)


def test_description_missing_field_and_bad_syntax(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: orchard\nclass_names: [a]\n")
    with pytest.raises(ValueError, match=r"bad.yaml: missing required field\(s\) \['thing_"):
        dataset_info.load_dataset_info(path)
    path.write_text("name: [unclosed\n")
    with pytest.raises(ValueError, match="bad.yaml: not valid YAML"):
        dataset_info.load_dataset_info(path)
    with pytest.raises(ValueError, match="orchard.json: cannot read the dataset description"):
        dataset_info.load_dataset_info(tmp_path / "orchard.json")
    (tmp_path / "orchard.txt").write_text(json.dumps(DESCRIPTION))
    with pytest.raises(ValueError, match="orchard.txt: .*must end in .json, .yaml or .yml"):
        dataset_info.load_dataset_info(tmp_path / "orchard.txt")


def test_register_custom_dataset_from_gin():
    gin.clear_config()
    try:
        gin.parse_config(
            """
            register_custom_dataset.name = "vineyard"
            register_custom_dataset.class_names = ["soil", "vine", "grape"]
            register_custom_dataset.thing_classes = [2]
            register_custom_dataset.label_divisor = 256
            register_custom_dataset.stuff_area_limit = 100
            register_custom_dataset.eval_scales = [1.0]
            register_custom_dataset.record_class_offset = 1
            register_custom_dataset.record_ignore_label = 0
            uses_dataset.name = @register_custom_dataset()
            """
        )
        assert uses_dataset() == "vineyard"
    finally:
        gin.clear_config()
    info = dataset_info.get_dataset_info("vineyard")
    assert info.class_names == ("soil", "vine", "grape")
    assert info.thing_classes == (2,)
    assert info.record_void_panoptic_id == 0
    with pytest.raises(ValueError, match=r"register_custom_dataset: missing required field"):
        dataset_info.register_custom_dataset(name="x")


@gin.configurable
def uses_dataset(name):
    """Stands for any gin-configured function that takes a dataset name."""
    return name


def test_record_space_collisions_are_rejected():
    info = dataset_info.get_dataset_info("coco")
    with pytest.raises(ValueError, match=r"record classes 1..133 and record_ignore_label 7"):
        dataclasses.replace(info, name="bad", record_ignore_label=7)
    with pytest.raises(ValueError, match="overflows int32"):
        dataclasses.replace(info, name="bad", label_divisor=2**24)
