"""Converting a dataset of one's own, described in a file, through the CLI flags."""

import json
import pathlib

import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver

from swiderrnet_tf.data import convert
from swiderrnet_tf.data import dataset_info
from swiderrnet_tf.data.converters import layouts
from swiderrnet_tf.data.converters import panoptic_json
from tests.data import panoptic_reference

SAMPLE = pathlib.Path(__file__).parents[1] / "testdata" / "coco_panoptic_sample"


def describe(tmp_path, name, class_names, things) -> pathlib.Path:
    path = tmp_path / f"{name}.json"
    description = {
        "name": name,
        "class_names": class_names,
        "thing_classes": [i for i, name in enumerate(class_names) if name in things],
        "label_divisor": 1000,
        "stuff_area_limit": 100,
        "eval_scales": [1.0],
    }
    path.write_text(json.dumps(description))
    return path


def run_cli(*argv):
    if "panoptic_json" not in flags.FLAGS:
        convert.define_flags()
    with flagsaver.flagsaver():
        flags.FLAGS(["convert", *argv])
        return convert.main(["convert"])


def test_own_dataset_from_a_description_file(tmp_path):
    # The COCO sample as someone's own dataset whose classes are in name order:
    # the JSON's categories are matched to them by name.
    categories = json.loads((SAMPLE / "panoptic_examples.json").read_text())["categories"]
    class_names = sorted(c["name"] for c in categories)
    things = {c["name"] for c in categories if c["isthing"]}
    description = describe(tmp_path, "coco_by_name", class_names, things)
    run_cli(
        f"--dataset_file={description}",
        f"--panoptic_json={SAMPLE / 'panoptic_examples.json'}",
        f"--panoptic_dir={SAMPLE / 'panoptic_examples'}",
        f"--image_dir={SAMPLE / 'input_images'}",
        "--split=val",
        "--num_shards=1",
        "--num_workers=1",
        f"--output_dir={tmp_path / 'out'}",
    )
    records = panoptic_reference.read_records([tmp_path / "out" / "val-00000-of-00001.tfrecord"])
    record_class = {c["id"]: class_names.index(c["name"]) for c in categories}
    thing_ids = {c["id"] for c in categories if c["isthing"]}
    annotations = panoptic_reference.annotations_by_png(SAMPLE / "panoptic_examples.json")
    assert len(records) == len(annotations) == 2
    for png_name, annotation in annotations.items():
        expected, _ = panoptic_reference.expected_label(
            SAMPLE / "panoptic_examples" / png_name,
            annotation["segments_info"],
            record_class,
            thing_ids,
            1000,
            255,
        )
        np.testing.assert_array_equal(records[png_name.removesuffix(".png")]["label"], expected)


def test_own_dataset_with_a_class_missing_from_the_json(tmp_path):
    description = describe(tmp_path, "coco_and_unicorns", ["person", "unicorn"], {"unicorn"})
    dataset_info.register_dataset_file(str(description))
    json_path = str(SAMPLE / "panoptic_examples.json")
    with pytest.raises(panoptic_json.ConversionError, match=r"no category named \['unicorn'\]"):
        layouts.custom_layout("coco_and_unicorns", "val", json_path, "png", "images")


def test_cli_errors_exit_with_the_message(tmp_path, capsys):
    assert run_cli("--dataset=synthetic", f"--output_dir={tmp_path}") == 2
    assert capsys.readouterr().err.startswith("error: dataset 'synthetic' has no built-in layout")
    assert run_cli("--dataset=synthetic", "--image_dir=x", f"--output_dir={tmp_path}") == 2
    assert capsys.readouterr().err.startswith("error: your own dataset needs --panoptic_json")
