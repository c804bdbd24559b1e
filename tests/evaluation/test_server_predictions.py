"""Test-server files (COCO panoptic, Cityscapes panoptic and instance-level), by hand.

The checks follow the published formats, not this package's reader:
panopticapi's `pq_compute` (a segment id of the PNG, `R + 256 G + 256^2 B`,
must be in the image's `segments_info` and each listed segment in the PNG;
0 is void; category ids are those of the categories file; `file_name` names
the PNG; `image_id` that of the ground truth), and cityscapesScripts'
instance-level evaluation (`<mask png> <label id> <score>` lines, masks
non-zero on the instance, label ids of its `labels.py`).
"""

import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from swiderrnet_tf.data import dataset_info
from swiderrnet_tf.data import synthetic
from swiderrnet_tf.data import tfrecord
from swiderrnet_tf.data import validation
from swiderrnet_tf.evaluation import eval_loop
from swiderrnet_tf.evaluation import server_predictions
from tests.inference import helpers

ROOT = pathlib.Path(__file__).resolve().parents[2]
CATEGORIES = ROOT / "tests/testdata/coco_panoptic_sample/panoptic_coco_categories.json"


def _png_ids(path) -> np.ndarray:
    rgb = np.asarray(Image.open(path).convert("RGB"), np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256**2 * rgb[..., 2]


def _check_panoptic_files(folder, category_ids) -> dict:
    """panopticapi's rules for every annotation; returns {file_name: (ids, segments)}."""
    data = json.loads((folder / "panoptic.json").read_text())
    assert {c["id"] for c in data["categories"]} <= set(category_ids)
    assert [a["image_id"] for a in data["annotations"]] == [i["id"] for i in data["images"]]
    found = {}
    for annotation in data["annotations"]:
        ids = _png_ids(folder / "panoptic" / annotation["file_name"])
        segments = {s["id"]: s for s in annotation["segments_info"]}
        assert len(segments) == len(annotation["segments_info"])  # unique ids
        assert 0 not in segments
        assert set(np.unique(ids)) - {0} == set(segments)
        for segment_id, segment in segments.items():
            assert segment["category_id"] in category_ids
            assert segment["area"] == np.sum(ids == segment_id)
        found[annotation["file_name"]] = (ids, segments, annotation["image_id"])
    return found


def test_coco_files_by_hand(tmp_path):
    # Model class 0 (person, 2 instances), 80 (the first stuff class) and void.
    void = dataset_info.COCO.void_panoptic_id
    panoptic = np.array(
        [
            [80 * 256, 80 * 256, 1, 1],
            [80 * 256, void, 1, 2],
            [80 * 256, void, void, 2],
        ]
    )
    writer = server_predictions.PredictionWriter(str(tmp_path), dataset_info.COCO)
    writer.add("000000000139.jpg", panoptic, np.zeros(panoptic.shape))
    writer.close()
    coco_ids = [c["id"] for c in json.loads(CATEGORIES.read_text())]
    found = _check_panoptic_files(tmp_path, coco_ids)
    ids, segments, image_id = found["000000000139.png"]
    assert image_id == 139
    # panoptic_coco_categories.json: person is 1, banner (first stuff) 92.
    assert sorted((s["category_id"], s["area"]) for s in segments.values()) == [
        (1, 2),
        (1, 3),
        (92, 4),
    ]
    # Segment id = panoptic id + 1, in the PNG's bytes: person 1 -> (2, 0, 0),
    # banner 80 * 256 -> 20481 = 1 + 80 * 256 -> (1, 80, 0).
    rgb = np.asarray(Image.open(tmp_path / "panoptic/000000000139.png").convert("RGB"))
    np.testing.assert_array_equal(rgb[0, 2], [2, 0, 0])
    np.testing.assert_array_equal(rgb[0, 0], [1, 80, 0])
    np.testing.assert_array_equal(rgb[1, 1], [0, 0, 0])
    assert not (tmp_path / "instances").exists()


def test_cityscapes_files_by_hand(tmp_path):
    info = dataset_info.CITYSCAPES
    void = info.void_panoptic_id
    # Train ids: road 0, person 11 (one instance), car 13 (two), a car
    # region without instance (no instance-level entry).
    panoptic = np.array(
        [
            [0, 0, 11001, 11001],
            [0, 13001, 13001, void],
            [13002, 13002, 13000, void],
        ]
    )
    scores = np.array([[0, 0, 0.9, 0.9], [0, 0.5, 0.5, 0], [0.25, 0.25, 0, 0]])
    writer = server_predictions.PredictionWriter(str(tmp_path), info)
    writer.add("frankfurt_000000_000294_leftImg8bit.png", panoptic, scores)
    writer.close()
    # cityscapesScripts labels.py: road 7, person 24, car 26, ..., bicycle 33.
    label_ids = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]
    found = _check_panoptic_files(tmp_path, label_ids)
    ids, segments, image_id = found["frankfurt_000000_000294.png"]
    assert image_id == "frankfurt_000000_000294"
    assert sorted((s["category_id"], s["area"]) for s in segments.values()) == [
        (7, 3),
        (24, 2),
        (26, 1),
        (26, 2),
        (26, 2),
    ]
    lines = (tmp_path / "instances/frankfurt_000000_000294_pred.txt").read_text().splitlines()
    entries = [line.split() for line in lines]
    assert sorted((label, float(score)) for _, label, score in entries) == [
        ("24", 0.9),
        ("26", 0.25),
        ("26", 0.5),
    ]
    masks = {}
    for mask_path, _, score in entries:
        mask = np.asarray(Image.open(tmp_path / "instances" / mask_path))
        assert mask.shape == (3, 4) and set(np.unique(mask)) == {0, 255}
        masks[float(score)] = np.argwhere(mask == 255).tolist()
    assert masks[0.9] == [[0, 2], [0, 3]]
    assert masks[0.25] == [[2, 0], [2, 1]]


def test_resize_nearest_by_hand():
    # Pixel centres of 3 rows over 2: 0.33, 1.0, 1.67 -> rows 0, 1, 1; of 4
    # columns over 2: 0.25, 0.75, 1.25, 1.75 -> columns 0, 0, 1, 1.
    small = np.array([[1, 2], [3, 4]])
    np.testing.assert_array_equal(
        server_predictions.resize_nearest(small, (3, 4)),
        [[1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]],
    )


def _unlabeled_test_split(data_dir):
    """The val records without their labels, as deeplab2 converts a test split."""
    for path in sorted(data_dir.glob("val-*.tfrecord")):
        name = path.name.replace("val-", "test-")
        with tf.io.TFRecordWriter(str(data_dir / name)) as writer:
            for record in tf.data.TFRecordDataset(str(path)):
                example = tf.train.Example.FromString(record.numpy())
                del example.features.feature[tfrecord.LABEL_ENCODED]
                writer.write(example.SerializeToString())


def test_evaluate_writes_predictions_of_a_labeled_and_an_unlabeled_split(tmp_path, capsys):
    data_dir = tmp_path / "data"
    synthetic.generate(str(data_dir), num_train=0, num_val=3, height=41, width=41, num_shards=1)
    _unlabeled_test_split(data_dir)
    model = helpers.tiny_model()
    strategy = tf.distribute.get_strategy()

    def evaluate(split, predictions, crop):
        return eval_loop.evaluate(
            strategy=strategy,
            model_dir=str(tmp_path / "run"),
            model=model,
            step=0,
            write_predictions=str(predictions),
            dataset_name="synthetic",
            data_dir=str(data_dir),
            split=split,
            crop_size=crop,
            batch_size=2,
            compute_instance_ap=False,
        )

    labeled = evaluate("val", tmp_path / "val_predictions", (41, 41))
    assert "pq" in labeled and labeled["step"] == 0
    # A crop smaller than the 41x41 images: the files are still full size.
    unlabeled = evaluate("test", tmp_path / "test_predictions", (33, 33))
    assert unlabeled == {"step": 0, "num_predicted": 3}
    err = capsys.readouterr().err
    assert "evaluate synthetic val" in err and "ETA" in err and "3/3" in err
    # Without --write_predictions an unlabeled split is refused, naming the flag.
    with pytest.raises(validation.DataError, match="has no label.*--write_predictions"):
        validation.check_data_files(dataset_info.SYNTHETIC, str(data_dir), "test")
    for folder in ("val_predictions", "test_predictions"):
        found = _check_panoptic_files(tmp_path / folder, dataset_info.SYNTHETIC.category_ids)
        assert len(found) == 3
        for ids, _, _ in found.values():
            assert ids.shape == (41, 41)
    # The same images, named alike in both folders.
    assert sorted(_check_panoptic_files(tmp_path / "val_predictions", range(6))) == sorted(
        _check_panoptic_files(tmp_path / "test_predictions", range(6))
    )
