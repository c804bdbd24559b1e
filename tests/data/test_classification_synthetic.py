"""The built-in synthetic classification set: files, determinism, content, reading back."""

import colorsys
import io
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from swiderrnet_tf import common
from swiderrnet_tf.data import classification_info
from swiderrnet_tf.data import classification_synthetic
from swiderrnet_tf.data import imagenet

INFO = classification_info.SYNTHETIC_CLASSIFICATION
PARAMS = dict(num_train=40, num_val=10, min_size=32, max_size=48, seed=5, num_train_shards=3)


def _records(pattern):
    for path in sorted(tf.io.gfile.glob(pattern)):
        for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
            yield tf.train.Example.FromString(raw).features.feature


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("synthetic_classification"))
    return classification_synthetic.ensure_dataset(directory, **PARAMS)


def test_files_manifest_and_reuse(data_dir, tmp_path):
    names = sorted(os.listdir(data_dir))
    assert names == [
        "synthetic_classification.json",
        "train-00000-of-00003",
        "train-00001-of-00003",
        "train-00002-of-00003",
        "validation-00000-of-00002",
        "validation-00001-of-00002",
    ]
    mtime = os.path.getmtime(os.path.join(data_dir, "train-00000-of-00003"))
    classification_synthetic.ensure_dataset(data_dir, **PARAMS)
    assert os.path.getmtime(os.path.join(data_dir, "train-00000-of-00003")) == mtime
    with open(os.path.join(data_dir, classification_synthetic.MANIFEST)) as f:
        assert json.load(f)["num_train"] == 40
    # Same seed, other folder: byte-identical shards.
    other = classification_synthetic.ensure_dataset(str(tmp_path / "again"), **PARAMS)
    for name in names[1:]:
        with (
            open(os.path.join(data_dir, name), "rb") as a,
            open(os.path.join(other, name), "rb") as b,
        ):
            assert a.read() == b.read(), name
    with pytest.raises(ValueError, match="unknown synthetic classification parameters"):
        classification_synthetic.ensure_dataset(data_dir, height=3)


def test_records_are_of_the_reference_layout(data_dir):
    features = list(_records(os.path.join(data_dir, INFO.split_pattern("train"))))
    assert len(features) == 40
    labels = [f["image/class/label"].int64_list.value[0] for f in features]
    assert labels == [i % 10 + 1 for i in range(40)]
    synsets = [f["image/class/synset"].bytes_list.value[0].decode() for f in features]
    assert synsets[:3] == ["synthetic_00", "synthetic_01", "synthetic_02"]
    for feature in features:
        image = Image.open(io.BytesIO(feature["image/encoded"].bytes_list.value[0]))
        assert image.format == "JPEG"
        assert min(image.size) >= 32 and max(image.size) <= 48
        assert (image.height, image.width) == (
            feature["image/height"].int64_list.value[0],
            feature["image/width"].int64_list.value[0],
        )


def test_colour_family_gives_the_class_of_colour_images():
    """The claim the docstring makes: hue alone tells the colour images apart."""
    rng = np.random.default_rng(0)
    grayscale = 0
    for index in range(200):
        raw = classification_synthetic.encode_example(
            "train", index, min_size=32, max_size=48, seed=1
        )
        feature = tf.train.Example.FromString(raw).features.feature
        image = Image.open(io.BytesIO(feature["image/encoded"].bytes_list.value[0]))
        if image.mode == "L":
            grayscale += 1
            continue
        pixels = np.asarray(image, np.float64).reshape(-1, 3) / 255
        pixels = pixels[rng.choice(len(pixels), 200)]
        hues = [colorsys.rgb_to_hsv(*p)[0] * 360 for p in pixels]
        # Circular mean of the hue.
        angle = np.angle(np.mean(np.exp(1j * np.deg2rad(hues))), deg=True) % 360
        assert round(angle / 36) % 10 == index % 10, (index, angle)
    assert 3 <= grayscale <= 20  # about one in twenty


def test_reads_back_through_the_pipeline(data_dir):
    dataset = imagenet.build_classification_dataset(
        dataset_info=INFO,
        file_pattern=os.path.join(data_dir, INFO.split_pattern("val")),
        mode="eval",
        image_size=32,
        batch_size=6,
    )
    batches = list(dataset)
    labels = np.concatenate([b[common.LABEL].numpy() for b in batches])
    assert labels.tolist() == list(range(10))
    assert batches[0][common.IMAGE].shape == (6, 32, 32, 3)
