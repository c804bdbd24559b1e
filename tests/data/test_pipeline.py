"""The tf.data pipeline: static shapes, determinism, sharding, ground truth in eval."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from swiderrnet_tf import common
from swiderrnet_tf.data import dataset_info
from swiderrnet_tf.data import pipeline
from swiderrnet_tf.data import synthetic
from swiderrnet_tf.data import tfrecord

INFO = dataset_info.SYNTHETIC
CROP = (65, 81)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("records")
    synthetic.generate(str(directory), num_train=8, num_val=5, height=49, width=73, seed=1)
    return directory


def _train(data_dir, **kwargs):
    options = dict(
        dataset_info=INFO,
        file_pattern=str(data_dir / "train-*.tfrecord"),
        mode="train",
        crop_size=CROP,
        batch_size=2,
        shuffle_buffer=8,
        seed=7,
    )
    options.update(kwargs)
    return pipeline.build_dataset(**options)


def _eval(data_dir, **kwargs):
    return pipeline.build_dataset(
        dataset_info=INFO,
        file_pattern=str(data_dir / "val-*.tfrecord"),
        mode="eval",
        crop_size=CROP,
        batch_size=2,
        **kwargs,
    )


def _batches(dataset, count):
    return [{k: v.numpy() for k, v in b.items()} for b in dataset.take(count)]


def test_train_features_have_static_documented_shapes(data_dir):
    spec = _train(data_dir).element_spec
    h, w = CROP
    expected = {
        common.IMAGE: ((2, h, w, 3), tf.float32),
        common.SEMANTIC_LABEL: ((2, h, w), tf.int32),
        common.SEMANTIC_WEIGHTS: ((2, h, w), tf.float32),
        common.CENTER_TARGET: ((2, h, w), tf.float32),
        common.CENTER_WEIGHTS: ((2, h, w), tf.float32),
        common.OFFSET_TARGET: ((2, h, w, 2), tf.float32),
        common.OFFSET_WEIGHTS: ((2, h, w), tf.float32),
        common.PANOPTIC_LABEL: ((2, h, w), tf.int32),
        common.CROWD_MASK: ((2, h, w), tf.bool),
    }
    assert {k: (tuple(s.shape), s.dtype) for k, s in spec.items()} == expected
    (batch,) = _batches(_train(data_dir), 1)
    assert batch[common.IMAGE].min() >= 0.0 and batch[common.IMAGE].max() <= 255.0


def test_seeded_training_repeats_whatever_the_parallelism(data_dir):
    first = _batches(_train(data_dir, num_parallel_calls=1), 5)
    second = _batches(_train(data_dir, num_parallel_calls=tf.data.AUTOTUNE), 5)
    for a, b in zip(first, second, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    other = _batches(_train(data_dir, seed=8), 5)
    assert any(
        not np.array_equal(a[common.IMAGE], b[common.IMAGE])
        for a, b in zip(first, other, strict=True)
    )


def test_training_repeats_past_one_epoch(data_dir):
    assert len(_batches(_train(data_dir), 9)) == 9  # 18 images from 8 records


def test_autoaugment_changes_images_only(data_dir):
    plain = _batches(_train(data_dir, autoaugment=False), 8)
    augmented = _batches(_train(data_dir, autoaugment=True), 8)
    changed = 0
    for a, b in zip(plain, augmented, strict=True):
        for key in a:
            if key != common.IMAGE:
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        changed += not np.array_equal(a[common.IMAGE], b[common.IMAGE])
    assert changed > 0


def _val_records(data_dir):
    out = []
    for path in sorted(data_dir.glob("val-*.tfrecord")):
        for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            feature = tf.train.Example.FromString(raw).features.feature
            label = np.frombuffer(
                feature["image/segmentation/class/encoded"].bytes_list.value[0], "<i4"
            ).reshape(49, 73)
            image = np.asarray(Image.open(io.BytesIO(feature["image/encoded"].bytes_list.value[0])))
            out.append((feature["image/filename"].bytes_list.value[0], image, label))
    return out


def test_eval_carries_ground_truth_exactly(data_dir):
    batches = _batches(_eval(data_dir), 10)
    assert [len(b[common.IMAGE_NAME]) for b in batches] == [2, 2, 1]
    records = _val_records(data_dir)
    examples = [
        {k: v[i] for k, v in b.items()} for b in batches for i in range(len(b[common.IMAGE_NAME]))
    ]
    assert len(examples) == len(records) == 5
    for example, (name, image, label) in zip(examples, records, strict=True):
        assert example[common.IMAGE_NAME] == name
        assert example[common.ORIGINAL_SIZE].tolist() == [49, 73]
        # Synthetic records use model classes directly; void is 255 * 1000.
        np.testing.assert_array_equal(example[common.PANOPTIC_LABEL][:49, :73], label)
        assert (example[common.PANOPTIC_LABEL][49:] == 255000).all()
        assert (example[common.PANOPTIC_LABEL][:, 73:] == 255000).all()
        np.testing.assert_array_equal(example[common.IMAGE][:49, :73], image.astype(np.float32))
        assert (example[common.IMAGE][49:] == 127.5).all()
        thing = np.isin(label // 1000, INFO.thing_classes)
        np.testing.assert_array_equal(
            example[common.CROWD_MASK][:49, :73], thing & (label % 1000 == 0)
        )
        assert not example[common.CROWD_MASK][49:].any()


def test_hosts_read_disjoint_files_and_batch_per_replica(data_dir):
    names = []
    for index in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=index, num_replicas_in_sync=2
        )
        dataset = _eval(data_dir, input_context=context)
        batches = _batches(dataset.unbatch().batch(100), 1)
        names.append(set(batches[0][common.IMAGE_NAME].tolist()))
        # Global batch 8 over 2 replicas: 4 per replica.
        train = _train(data_dir, batch_size=8, input_context=context)
        assert train.element_spec[common.IMAGE].shape[0] == 4
    assert not names[0] & names[1]
    assert names[0] | names[1] == {f"val_{i:06d}".encode() for i in range(5)}


def test_semantic_only_records_are_rejected_by_name(tmp_path):
    image = io.BytesIO()
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(image, format="PNG")
    label = io.BytesIO()
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(label, format="PNG")
    raw = tf.train.Example.FromString(
        tfrecord.encode_panoptic_example(image.getvalue(), "png", "semantic_0", np.zeros((4, 5)))
    )
    feature = raw.features.feature
    feature[tfrecord.LABEL_ENCODED].bytes_list.value[0] = label.getvalue()
    feature[tfrecord.LABEL_FORMAT].bytes_list.value[0] = b"png"
    path = str(tmp_path / "val-00000-of-00001.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(raw.SerializeToString())
    dataset = pipeline.build_dataset(
        dataset_info=INFO, file_pattern=path, mode="eval", crop_size=(8, 8), batch_size=1
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="(?s)semantic_0.*png"):
        _batches(dataset, 1)


def test_bad_arguments_are_explained(data_dir):
    with pytest.raises(ValueError, match="no TFRecord files match '.*nothing-\\*'"):
        _train(data_dir, file_pattern=str(data_dir / "nothing-*"))
    with pytest.raises(ValueError, match="mode must be 'train' or 'eval', got 'test'"):
        _train(data_dir, mode="test")
    with pytest.raises(ValueError, match="crop_size"):
        _train(data_dir, crop_size=(0, 5))
