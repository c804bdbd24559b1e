"""Bad inputs stop a conversion with an error naming the file and the id."""

import json
import os
import pathlib
import re
import subprocess

import numpy as np
import pytest
from PIL import Image

from swiderrnet_tf.data import convert
from swiderrnet_tf.data.converters import panoptic_json
from tests import file_size_limit
from tests.data import test_convert_coco

IMAGE = "000000142238"
REPO = pathlib.Path(__file__).parents[2]


@pytest.fixture
def coco_root(tmp_path) -> pathlib.Path:
    return test_convert_coco.make_coco_layout(tmp_path / "coco")


def edit_json(root: pathlib.Path, edit) -> pathlib.Path:
    path = root / "annotations" / "panoptic_val2017.json"
    data = json.loads(path.read_text())
    annotation = next(a for a in data["annotations"] if a["file_name"] == f"{IMAGE}.png")
    edit(annotation["segments_info"])
    path.write_text(json.dumps(data))
    return path


def convert_coco(root, tmp_path):
    return convert.convert_split("coco", str(root), str(tmp_path / "out"), "val", 1)


def expect_error(root, tmp_path, *fragments):
    with pytest.raises(panoptic_json.ConversionError) as error:
        convert_coco(root, tmp_path)
    for fragment in fragments:
        assert fragment in str(error.value), (fragment, str(error.value))
    # No half-written shard is left behind.
    output_dir = tmp_path / "out"
    leftovers = [p.name for p in output_dir.iterdir()] if output_dir.exists() else []
    assert set(leftovers) <= {"val-conversion.json"}, leftovers


def test_unknown_category_id(coco_root, tmp_path):
    def edit(segments):
        segments[3]["category_id"] = 91  # Not a COCO panoptic category.

    path = edit_json(coco_root, edit)
    segment_id = json.loads(path.read_text())["annotations"][0]["segments_info"][3]["id"]
    expect_error(coco_root, tmp_path, str(path), "unknown category id 91", str(segment_id))


def test_segment_in_png_missing_from_json(coco_root, tmp_path):
    removed = []
    edit_json(coco_root, lambda segments: removed.append(segments.pop(5)["id"]))
    png = coco_root / "annotations" / "panoptic_val2017" / f"{IMAGE}.png"
    expect_error(coco_root, tmp_path, str(png), f"[{removed[0]}] are in the PNG but not")


def test_segment_in_json_missing_from_png(coco_root, tmp_path):
    def edit(segments):
        segments.append({"id": 4242424, "category_id": 1, "iscrowd": 0, "area": 7})

    path = edit_json(coco_root, edit)
    expect_error(coco_root, tmp_path, str(path), "[4242424]", "are not in its PNG")


def test_crowd_stuff_segment(coco_root, tmp_path):
    crowd = []

    def edit(segments):
        stuff = next(s for s in segments if s["category_id"] > 90)  # COCO stuff ids: 92..200
        stuff["iscrowd"] = 1
        crowd.append(stuff["id"])

    path = edit_json(coco_root, edit)
    expect_error(coco_root, tmp_path, str(path), f"segment id {crowd[0]} is crowd but")


def test_image_and_label_size_mismatch(coco_root, tmp_path):
    image_path = coco_root / "val2017" / f"{IMAGE}.jpg"
    Image.open(image_path).resize((320, 200)).save(image_path)
    expect_error(coco_root, tmp_path, str(image_path), "320x200", "640x427")


def test_unreadable_image(coco_root, tmp_path):
    image_path = coco_root / "val2017" / f"{IMAGE}.jpg"
    image_path.write_bytes(image_path.read_bytes()[:300])
    expect_error(coco_root, tmp_path, str(image_path), "unreadable image for", IMAGE)


def test_missing_image(coco_root, tmp_path):
    image_path = coco_root / "val2017" / f"{IMAGE}.jpg"
    image_path.unlink()
    expect_error(coco_root, tmp_path, str(image_path), "unreadable image")


def test_not_an_image(coco_root, tmp_path):
    image_path = coco_root / "val2017" / f"{IMAGE}.jpg"
    image_path.write_text("not an image")
    expect_error(coco_root, tmp_path, str(image_path), "not an image format Pillow reads")


def test_more_instances_than_the_label_divisor_allows(tmp_path):
    # 256 persons in a 16 x 16 image; COCO's divisor 256 allows instance ids 1..255.
    root = tmp_path / "coco"
    (root / "annotations" / "panoptic_val2017").mkdir(parents=True)
    (root / "val2017").mkdir()
    ids = np.arange(1, 257).reshape(16, 16)
    rgb = np.stack([ids % 256, ids // 256, 0 * ids], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(root / "annotations" / "panoptic_val2017" / "crowded.png")
    Image.fromarray(rgb).save(root / "val2017" / "crowded.jpg")
    segments = [{"id": int(i), "category_id": 1, "iscrowd": 0} for i in range(1, 257)]
    data = {
        "images": [{"id": 1, "file_name": "crowded.jpg", "height": 16, "width": 16}],
        "annotations": [{"image_id": 1, "file_name": "crowded.png", "segments_info": segments}],
    }
    path = root / "annotations" / "panoptic_val2017.json"
    path.write_text(json.dumps(data))
    expect_error(root, tmp_path, str(path), "category id 1", "more than 255 instances", "256")
    # 255 are fine.
    data["annotations"][0]["segments_info"][-1]["category_id"] = 2
    path.write_text(json.dumps(data))
    convert_coco(root, tmp_path)


def test_output_directory_of_another_conversion(coco_root, tmp_path):
    convert_coco(coco_root, tmp_path)
    with pytest.raises(ValueError, match=re.escape("different ['num_shards']")):
        convert.convert_split("coco", str(coco_root), str(tmp_path / "out"), "val", 2)
    with pytest.raises(ValueError, match=re.escape("different ['max_size']")):
        convert.convert_split("coco", str(coco_root), str(tmp_path / "out"), "val", 1, max_size=9)


def test_output_folder_under_a_regular_file(coco_root, tmp_path):
    (tmp_path / "file").write_text("")
    output_dir = tmp_path / "file" / "out"
    with pytest.raises(ValueError) as error:
        convert.convert_split("coco", str(coco_root), str(output_dir), "val", 1)
    assert str(error.value).startswith(f"{output_dir}: cannot create the output folder: ")


def test_command_line_write_failure_is_one_line_with_status_2(coco_root, tmp_path):
    # Files limited to 20000 bytes: the shard writes fail half-way with EFBIG,
    # as they would on a full disk; the small manifest is written.
    output_dir = tmp_path / "out"
    command = file_size_limit.command("swiderrnet_tf.data.convert", 20000)
    command += ["--dataset=coco", f"--input_dir={coco_root}"]
    command += [f"--output_dir={output_dir}", "--split=val", "--num_shards=2", "--num_workers=1"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"error: {output_dir}/val-00000-of-00002.tfrecord: cannot write the shard: "
    )
    assert "File too large" in last
    assert os.listdir(output_dir) == ["val-conversion.json"]
