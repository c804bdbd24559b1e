"""The classification input: both record layouts, layout errors, crops, sharding, seeds."""

import io
import pathlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from swiderrnet_tf import common
from swiderrnet_tf.data import classification_info
from swiderrnet_tf.data import classification_preprocessing
from swiderrnet_tf.data import imagenet
from swiderrnet_tf.data import synthetic

TESTDATA = pathlib.Path(__file__).resolve().parents[1] / "testdata"
COCO_IMAGE = TESTDATA / "coco_panoptic_sample" / "input_images" / "000000142238.jpg"


def encode(image: np.ndarray, fmt: str = "JPEG", mode: str | None = None, **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image, mode).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def coco_image(height: int, width: int) -> np.ndarray:
    """The real COCO image, resized to `height` x `width`."""
    with Image.open(COCO_IMAGE) as image:
        return np.asarray(image.convert("RGB").resize((width, height), Image.BILINEAR))


def reference_example(image_bytes: bytes, label: int, name: str = "x.JPEG") -> bytes:
    return classification_info.encode_reference_example(
        image_bytes, label=label, synset=f"n{label:08d}", filename=name, height=1, width=1
    )


def tfds_example(image_bytes: bytes, label: int, name: str = "x.JPEG") -> bytes:
    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_bytes])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        "file_name": tf.train.Feature(bytes_list=tf.train.BytesList(value=[name.encode()])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write(path: pathlib.Path, records: list[bytes]) -> str:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    return str(path)


def eval_batches(info, pattern, image_size=32, batch_size=4, **kwargs):
    dataset = imagenet.build_classification_dataset(
        dataset_info=info,
        file_pattern=pattern,
        mode="eval",
        image_size=image_size,
        batch_size=batch_size,
        **kwargs,
    )
    return [{k: v.numpy() for k, v in batch.items()} for batch in dataset]


@pytest.fixture(scope="module")
def images():
    """Six small real JPEGs (crops of a COCO image) and their labels 0..5."""
    full = coco_image(120, 180)
    crops = [full[(i % 2) * 40 : (i % 2) * 40 + 60 + 4 * i, 20 * i : 20 * i + 80] for i in range(6)]
    return [encode(np.ascontiguousarray(c), quality=90) for c in crops], list(range(6))


def test_both_layouts_read_the_same(tmp_path, images):
    encoded, labels = images
    for shard in range(2):
        part = slice(3 * shard, 3 * shard + 3)
        write(
            tmp_path / f"train-{shard:05d}-of-00002",
            [reference_example(e, y + 1) for e, y in zip(encoded[part], labels[part], strict=True)],
        )
        write(
            tmp_path / f"imagenet2012-train.tfrecord-{shard:05d}-of-00002",
            [tfds_example(e, y) for e, y in zip(encoded[part], labels[part], strict=True)],
        )
    (tmp_path / "train-conversion.json").write_text("{}")  # must not match the split pattern
    results = []
    for info in (classification_info.IMAGENET2012, classification_info.IMAGENET2012_TFDS):
        pattern = str(tmp_path / info.split_pattern("train"))
        assert len(tf.io.gfile.glob(pattern)) == 2
        results.append(eval_batches(info, pattern))
    reference, tfds = results
    assert [b[common.LABEL].tolist() for b in reference] == [[0, 1, 2, 3], [4, 5]]
    for a, b in zip(reference, tfds, strict=True):
        np.testing.assert_array_equal(a[common.LABEL], b[common.LABEL])
        np.testing.assert_array_equal(a[common.IMAGE], b[common.IMAGE])
        assert a[common.IMAGE].dtype == np.float32 and a[common.LABEL].dtype == np.int32
        assert a[common.IMAGE].shape[1:] == (32, 32, 3)


def test_layout_mismatch_names_file_keys_and_dataset(tmp_path, images):
    encoded, _ = images
    tfds_file = write(tmp_path / "a", [tfds_example(encoded[0], 3)])
    with pytest.raises(imagenet.RecordLayoutError) as error:
        eval_batches(classification_info.IMAGENET2012, tfds_file)
    message = str(error.value)
    for fragment in (tfds_file, "['file_name', 'image', 'label']", "tpu_reference", "tfds records"):
        assert fragment in message, message
    assert "use dataset 'imagenet2012_tfds'" in message
    reference_file = write(tmp_path / "b", [reference_example(encoded[0], 3)])
    with pytest.raises(imagenet.RecordLayoutError, match="use dataset 'imagenet2012'"):
        eval_batches(classification_info.IMAGENET2012_TFDS, reference_file)
    panoptic = synthetic.encode_example("train", 0, height=16, width=16, seed=0)
    panoptic_file = write(tmp_path / "c", [panoptic])
    with pytest.raises(imagenet.RecordLayoutError, match="these are panoptic records"):
        eval_batches(classification_info.IMAGENET2012, panoptic_file)
    # Labels 1..1000: a 0 is of another numbering.
    zero = write(tmp_path / "d", [reference_example(encoded[0], 0)])
    with pytest.raises(imagenet.RecordLayoutError, match="expects one label in 1..1000"):
        eval_batches(classification_info.IMAGENET2012, zero)
    not_records = tmp_path / "e"
    not_records.write_bytes(b"definitely not a TFRecord file, long enough to have a header")
    with pytest.raises(imagenet.RecordLayoutError, match="not a readable TFRecord file"):
        eval_batches(classification_info.IMAGENET2012, str(not_records))


def test_bad_label_later_in_a_file_names_it(tmp_path, images):
    encoded, _ = images
    path = write(
        tmp_path / "a",
        [reference_example(encoded[0], 1), reference_example(encoded[1], 1001, "bad.JPEG")],
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="bad.JPEG"):
        eval_batches(classification_info.IMAGENET2012, path, batch_size=1)


def test_grayscale_and_cmyk_jpegs_come_out_rgb(tmp_path):
    gray = encode(np.full((30, 40), 77, np.uint8), quality=95)
    cmyk = np.zeros((30, 40, 4), np.uint8)
    cmyk[..., 1:3] = 255  # M and Y: red
    cmyk_bytes = encode(cmyk, mode="CMYK", quality=95)
    path = write(tmp_path / "a", [reference_example(gray, 1), reference_example(cmyk_bytes, 2)])
    (batch,) = eval_batches(classification_info.IMAGENET2012, path, image_size=16)
    image = batch[common.IMAGE]
    assert image.shape == (2, 16, 16, 3)
    np.testing.assert_allclose(image[0], 77, atol=2)
    np.testing.assert_allclose(image[1].reshape(-1, 3).mean(0), (255, 0, 0), atol=4)


def _coordinate_image(height: int, width: int) -> np.ndarray:
    """R = 6 y, G = 10 x, B = 128: every pixel says where it is."""
    yy, xx = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return np.stack([6 * yy, 10 * xx, np.full_like(yy, 128)], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_eval_crop_rule_by_hand(tmp_path, fmt):
    # 40x24: side int(0.875 * 24) = 21, offsets ((40 - 21 + 1) // 2, (24 - 21 + 1) // 2) = (10, 2).
    image = _coordinate_image(40, 24)
    encoded = encode(image, fmt, **({"quality": 100, "subsampling": 0} if fmt == "JPEG" else {}))
    path = write(tmp_path / "a", [reference_example(encoded, 1)])
    (batch,) = eval_batches(classification_info.IMAGENET2012, path, image_size=21)
    expected = np.zeros((21, 21, 3))
    expected[..., 0] = 6 * (10 + np.arange(21))[:, None]
    expected[..., 1] = 10 * (2 + np.arange(21))[None, :]
    expected[..., 2] = 128
    error = np.abs(batch[common.IMAGE][0] - expected)
    if fmt == "PNG":
        assert error.max() < 1e-3
    else:
        # JPEG is lossy; a crop one pixel off would be 6 (R) or 10 (G) off everywhere.
        assert error.reshape(-1, 3).mean(0).max() < 2 and error.max() <= 8


def test_eval_crop_of_a_real_image_at_224(tmp_path):
    # 500 x 375 (ImageNet-like): side int(0.875 * 375) = 328, offsets (86, 24).
    image = coco_image(500, 375)
    path = write(tmp_path / "a", [reference_example(encode(image, "PNG"), 1)])
    (batch,) = eval_batches(classification_info.IMAGENET2012, path, image_size=224)
    crop = image[86 : 86 + 328, 24 : 24 + 328]
    expected = tf.clip_by_value(tf.image.resize(crop, [224, 224], method="bicubic"), 0, 255)
    np.testing.assert_allclose(batch[common.IMAGE][0], expected.numpy(), atol=1e-3)


def test_random_crop_windows_obey_the_ranges():
    shape = tf.constant([90, 120])
    areas, ratios, fallbacks = [], [], 0
    center = classification_preprocessing.center_crop_window(shape).numpy().tolist()
    assert center == [(90 - 78 + 1) // 2, (120 - 78 + 1) // 2, 78, 78]
    for i in range(200):
        y, x, h, w = classification_preprocessing.random_crop_window(
            shape, tf.constant([i, 7])
        ).numpy()
        assert min(y, x) >= 0 and y + h <= 90 and x + w <= 120
        if [y, x, h, w] == center:
            fallbacks += 1
            continue
        areas.append(h * w / (90 * 120))
        ratios.append(w / h)
    assert fallbacks < 20
    assert min(areas) >= 0.08 - 0.01 and max(areas) <= 1.0 and max(areas) - min(areas) > 0.5
    assert min(ratios) >= 0.75 - 0.03 and max(ratios) <= 4 / 3 + 0.03
    # Constraints no box meets: the evaluation window.
    window = classification_preprocessing.random_crop_window(
        shape, tf.constant([1, 2]), area_range=(0.99, 1.0), aspect_ratio_range=(3.0, 4.0)
    )
    assert window.numpy().tolist() == center


def test_train_preprocess_shapes_ranges_flips():
    # Left half black, right half white; the crop always falls back to the center window.
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, 32:] = 255
    encoded = tf.constant(encode(image, "PNG"))
    flips = 0
    for i in range(40):
        out = classification_preprocessing.train_preprocess(
            encoded,
            tf.constant([i, 0]),
            image_size=24,
            area_range=(0.99, 1.0),
            aspect_ratio_range=(3.0, 4.0),
        ).numpy()
        assert out.shape == (24, 24, 3) and out.dtype == np.float32
        assert out.min() >= 0 and out.max() <= 255
        flips += out[:, :4].mean() > 128
    assert 8 <= flips <= 32


def _train_batches(info, pattern, seed, count=3, **kwargs):
    dataset = imagenet.build_classification_dataset(
        dataset_info=info,
        file_pattern=pattern,
        mode="train",
        image_size=24,
        batch_size=4,
        seed=seed,
        **kwargs,
    )
    return [batch for _, batch in zip(range(count), dataset, strict=False)]


def test_training_is_seeded_static_and_repeats(tmp_path, images):
    encoded, labels = images
    for shard in range(2):
        records = [reference_example(encoded[i], labels[i] + 1) for i in range(shard, 6, 2)]
        write(tmp_path / f"train-{shard:05d}-of-00002", records)
    pattern = str(tmp_path / "train-*")
    info = classification_info.IMAGENET2012
    first = _train_batches(info, pattern, seed=3, count=5)  # 20 images from 6: it repeats
    again = _train_batches(info, pattern, seed=3, count=5, num_parallel_calls=1)
    other = _train_batches(info, pattern, seed=4, count=5)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a[common.IMAGE], b[common.IMAGE])
        np.testing.assert_array_equal(a[common.LABEL], b[common.LABEL])
        assert a[common.IMAGE].shape == (4, 24, 24, 3)
    assert any(
        not np.array_equal(a[common.IMAGE], b[common.IMAGE])
        for a, b in zip(first, other, strict=True)
    )
    seen = np.concatenate([b[common.LABEL].numpy() for b in first])
    assert set(seen.tolist()) <= set(labels) and len(seen) == 20
    dataset = imagenet.build_classification_dataset(
        dataset_info=info, file_pattern=pattern, mode="train", batch_size=4, image_size=24
    )
    assert dataset.element_spec[common.IMAGE].shape.as_list() == [4, 24, 24, 3]
    # One file, two parallel calls: more than the interleave's cycle, which tf.data refuses.
    (single,) = _train_batches(info, str(tmp_path / "train-00000-*"), 3, 1, num_parallel_calls=2)
    assert set(single[common.LABEL].numpy().tolist()) <= {0, 2, 4}
    augmented = _train_batches(info, pattern, seed=3, count=1, autoaugment=True)[0]
    values = augmented[common.IMAGE].numpy()
    np.testing.assert_array_equal(values, np.round(values))  # uint8 after AutoAugment


def test_sharding_with_input_context(tmp_path, images):
    encoded, labels = images
    for shard in range(3):
        records = [reference_example(encoded[i], labels[i] + 1) for i in (2 * shard, 2 * shard + 1)]
        write(tmp_path / f"validation-{shard:05d}-of-00003", records)
    pattern = str(tmp_path / "validation-*")
    seen = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline_id, num_replicas_in_sync=2
        )
        batches = eval_batches(
            classification_info.IMAGENET2012, pattern, batch_size=4, input_context=context
        )
        assert max(len(b[common.LABEL]) for b in batches) == 2  # per-replica batch
        seen.append(sorted(np.concatenate([b[common.LABEL] for b in batches]).tolist()))
    # Files 0 and 2 go to pipeline 0, file 1 to pipeline 1.
    assert seen == [[0, 1, 4, 5], [2, 3]]
