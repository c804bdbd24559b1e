"""The synthetic dataset: content, determinism, sharding, manifest and CLI."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from swiderrnet_tf.data import dataset_info
from swiderrnet_tf.data import synthetic

INFO = dataset_info.SYNTHETIC
REPO = pathlib.Path(__file__).resolve().parents[2]


def _read(path):
    """(name, image bytes, [h, w] int32 panoptic) per record, parsed with protobuf only."""
    records = []
    for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        features = tf.train.Example.FromString(raw).features.feature
        height = features["image/height"].int64_list.value[0]
        width = features["image/width"].int64_list.value[0]
        label = np.frombuffer(
            features["image/segmentation/class/encoded"].bytes_list.value[0], dtype="<i4"
        ).reshape(height, width)
        assert features["image/format"].bytes_list.value[0] == b"png"
        assert features["image/segmentation/class/format"].bytes_list.value[0] == b"raw"
        name = features["image/filename"].bytes_list.value[0].decode()
        records.append((name, features["image/encoded"].bytes_list.value[0], label))
    return records


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    directory = tmp_path_factory.mktemp("synthetic")
    synthetic.generate(str(directory), num_train=24, num_val=5, height=97, width=129, seed=4)
    return directory


def test_shard_names_and_counts(dataset):
    names = sorted(p.name for p in dataset.glob("*.tfrecord"))
    assert names == [f"train-{i:05d}-of-00004.tfrecord" for i in range(4)] + [
        f"val-{i:05d}-of-00004.tfrecord" for i in range(4)
    ]
    train = [r for p in sorted(dataset.glob("train-*")) for r in _read(p)]
    assert [r[0] for r in train] == [f"train_{i:06d}" for i in range(24)]
    assert sum(len(_read(p)) for p in dataset.glob("val-*")) == 5


def test_content_has_every_kind_of_region(dataset):
    labels = [r[2] for p in sorted(dataset.glob("train-*")) for r in _read(p)]
    areas, crowd, void = [], 0, 0
    classes = set()
    for label in labels:
        assert label.shape == (97, 129)
        cls, inst = label // 1000, label % 1000
        classes |= set(np.unique(cls).tolist())
        void += (cls == 255).sum()
        thing = np.isin(cls, INFO.thing_classes)
        crowd += (thing & (inst == 0)).sum()
        assert (inst[np.isin(cls, INFO.stuff_classes)] == 0).all()
        assert (inst[cls == 255] == 0).all()
        areas += [(label == i).sum() for i in np.unique(label[thing & (inst > 0)])]
    assert classes == {0, 1, 2, 3, 4, 5, 255}
    assert crowd > 0 and void > 0
    assert min(areas) < 4096 and len(areas) >= 2 * len(labels)


def test_stuff_and_things_have_distinct_colours():
    rng = np.random.default_rng([0, 1, 0])
    means = {c: [] for c in range(6)}
    for _ in range(6):
        image, semantic, _ = synthetic.render_scene(rng, 97, 129)
        for c in range(6):
            if (semantic == c).sum() > 50:
                means[c].append(image[semantic == c].mean(0))
    centroids = {c: np.mean(v, 0) for c, v in means.items() if v}
    assert len(centroids) == 6
    for a in centroids:
        for b in centroids:
            if a < b:
                assert np.linalg.norm(centroids[a] - centroids[b]) > 30, (a, b)


def test_same_seed_gives_identical_bytes_other_seed_differs(tmp_path, dataset):
    synthetic.generate(str(tmp_path / "a"), num_train=24, num_val=5, height=97, width=129, seed=4)
    synthetic.generate(str(tmp_path / "b"), num_train=24, num_val=5, height=97, width=129, seed=5)
    for path in sorted(dataset.glob("*.tfrecord")):
        assert (tmp_path / "a" / path.name).read_bytes() == path.read_bytes()
    assert (tmp_path / "b" / "train-00000-of-00004.tfrecord").read_bytes() != (
        dataset / "train-00000-of-00004.tfrecord"
    ).read_bytes()


def test_ensure_dataset_reuses_or_regenerates(tmp_path):
    directory = str(tmp_path / "d")
    synthetic.ensure_dataset(directory, num_train=3, num_val=1, height=33, width=41, seed=1)
    first = tmp_path / "d" / "train-00000-of-00003.tfrecord"
    stamp = first.stat().st_mtime_ns
    synthetic.ensure_dataset(directory, num_train=3, num_val=1, height=33, width=41, seed=1)
    assert first.stat().st_mtime_ns == stamp
    synthetic.ensure_dataset(directory, num_train=2, num_val=1, height=33, width=41, seed=1)
    assert not first.exists()
    assert sorted(p.name for p in (tmp_path / "d").glob("train-*")) == [
        "train-00000-of-00002.tfrecord",
        "train-00001-of-00002.tfrecord",
    ]
    with pytest.raises(ValueError, match="unknown synthetic dataset parameters \\['colour'\\]"):
        synthetic.ensure_dataset(directory, colour=3)


def test_command_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    command = [
        sys.executable, "-m", "swiderrnet_tf.data.synthetic", f"--output_dir={tmp_path}",
        "--num_train=2", "--num_val=1", "--height=33", "--width=49", "--seed=2",
    ]  # fmt: skip
    subprocess.run(command, check=True, env=env, cwd=tmp_path, capture_output=True)
    (name, _, label), *_ = _read(tmp_path / "train-00000-of-00002.tfrecord")
    assert name == "train_000000" and label.shape == (33, 49)
    expected = synthetic.encode_example("val", 0, height=33, width=49, seed=2)
    assert next(iter(tf.data.TFRecordDataset(str(tmp_path / "val-00000-of-00001.tfrecord")))) == (
        expected
    )


def test_output_that_cannot_be_written_leaves_no_manifest(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="file/d: cannot create the output folder: "):
        synthetic.generate(
            str(tmp_path / "file" / "d"), num_train=1, num_val=1, height=16, width=16
        )
    # The disk fills up while the val shard is written, after the train shard.
    encode = synthetic.encode_example

    def disk_full_at_val(split, index, **kwargs):
        if split == "val":
            raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")
        return encode(split, index, **kwargs)

    monkeypatch.setattr(synthetic, "encode_example", disk_full_at_val)
    directory = tmp_path / "d"
    val_shard = directory / "val-00000-of-00001.tfrecord"
    with pytest.raises(ValueError, match=f"{val_shard}: cannot write the shard: No space left"):
        synthetic.generate(str(directory), num_train=1, num_val=1, height=16, width=16)
    # No manifest, no temporary file: the dataset is generated again.
    assert os.listdir(directory) == ["train-00000-of-00001.tfrecord"]
    monkeypatch.setattr(synthetic, "encode_example", encode)
    synthetic.ensure_dataset(str(directory), num_train=1, num_val=1, height=16, width=16)
    assert (directory / synthetic.MANIFEST).exists() and val_shard.exists()
