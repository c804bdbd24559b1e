"""Converting the real COCO panoptic sample and decoding it back."""

import json
import pathlib
import shutil

import numpy as np
import pytest

from swiderrnet_tf.data import convert
from swiderrnet_tf.data.converters import panoptic_json
from tests.data import panoptic_reference

SAMPLE = pathlib.Path(__file__).parents[1] / "testdata" / "coco_panoptic_sample"


def make_coco_layout(root: pathlib.Path) -> pathlib.Path:
    """The sample arranged as the COCO 2017 release (val split)."""
    (root / "annotations").mkdir(parents=True)
    shutil.copy(SAMPLE / "panoptic_examples.json", root / "annotations" / "panoptic_val2017.json")
    shutil.copytree(SAMPLE / "panoptic_examples", root / "annotations" / "panoptic_val2017")
    shutil.copytree(SAMPLE / "input_images", root / "val2017")
    return root


@pytest.fixture
def coco_root(tmp_path) -> pathlib.Path:
    return make_coco_layout(tmp_path / "coco")


def coco_record_classes():
    """COCO category id -> deeplab2 record class (1-based rank of the id), thing ids."""
    categories = json.loads((SAMPLE / "panoptic_coco_categories.json").read_text())
    ids = sorted(c["id"] for c in categories)
    record_class = {category_id: rank + 1 for rank, category_id in enumerate(ids)}
    things = {c["id"] for c in categories if c["isthing"]}
    return record_class, things


def test_coco_sample_round_trip(coco_root, tmp_path):
    paths = convert.convert_split("coco", str(coco_root), str(tmp_path / "out"), "val", 2)
    assert [pathlib.Path(p).name for p in paths] == [
        "val-00000-of-00002.tfrecord",
        "val-00001-of-00002.tfrecord",
    ]
    records = panoptic_reference.read_records(paths)
    record_class, things = coco_record_classes()
    annotations = panoptic_reference.annotations_by_png(SAMPLE / "panoptic_examples.json")
    assert sorted(records) == ["000000142238", "000000439180"]
    total_crowd = 0
    for png_name, annotation in annotations.items():
        name = png_name.removesuffix(".png")
        record = records[name]
        png = SAMPLE / "panoptic_examples" / png_name
        expected, crowd = panoptic_reference.expected_label(
            png, annotation["segments_info"], record_class, things, 256, 0
        )
        np.testing.assert_array_equal(record["label"], expected)
        # The image is stored as it was: same JPEG bytes.
        jpeg = (SAMPLE / "input_images" / f"{name}.jpg").read_bytes()
        assert jpeg in record["serialized"]
        assert record["image"].shape == (*expected.shape, 3)
        assert record["has_label"]

        ids = panoptic_reference.segment_ids(png)
        for segment in annotation["segments_info"]:
            mask = ids == segment["id"]
            values = np.unique(record["label"][mask])
            assert len(values) == 1, segment
            assert values[0] // 256 == record_class[segment["category_id"]]
            if segment["iscrowd"]:
                assert values[0] % 256 == 0
            else:
                np.testing.assert_array_equal(record["label"] == values[0], mask)
        # Crowd regions keep their thing class with instance 0.
        labels_on_crowd = record["label"][crowd]
        assert np.all(labels_on_crowd % 256 == 0)
        assert np.all(np.isin(labels_on_crowd // 256, [record_class[t] for t in things]))
        total_crowd += crowd.sum()
        assert np.all(record["label"][ids == 0] == 0)
    assert total_crowd > 0


def test_default_num_shards():
    def samples(count, height, width):
        sample = panoptic_json.Sample("x", "x.jpg", "x.png", "x.json", (), height * width)
        return [sample] * count

    # Fewer than 16 images: one shard each.
    assert convert.default_num_shards(samples(3, 480, 640)) == 3
    # 100 Cityscapes-sized images of 10 MiB (5 bytes per pixel): 16 shards at least.
    assert convert.default_num_shards(samples(100, 1024, 2048)) == 16
    # 3000 of them, 30000 MiB: ceil(30000 / 256) = 118 shards.
    assert convert.default_num_shards(samples(3000, 1024, 2048)) == 118
    # 1000 images of 3000x4000 resized to at most 2049 pixels a side:
    # ceil(1000 * 2049**2 * 5 / 2**28) = 79.
    assert convert.default_num_shards(samples(1000, 3000, 4000), max_size=2049) == 79
