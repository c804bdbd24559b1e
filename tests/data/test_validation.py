"""Checking a data folder before a run, and finding the bad record after a read error."""

import logging
import pathlib
import struct

import numpy as np
import pytest
import tensorflow as tf

from swiderrnet_tf.data import convert
from swiderrnet_tf.data import dataset_info
from swiderrnet_tf.data import pipeline
from swiderrnet_tf.data import tfrecord
from swiderrnet_tf.data import validation
from tests.data import test_convert_coco

COCO = dataset_info.get_dataset_info("coco")


def corrupt_record(path: pathlib.Path, index: int) -> None:
    """Flips one byte inside the data of record `index` (its CRC then fails).

    TFRecord framing: uint64 length, uint32 CRC of the length, data, uint32 CRC.
    """
    data = bytearray(path.read_bytes())
    offset = 0
    for _ in range(index):
        (length,) = struct.unpack("<Q", data[offset : offset + 8])
        offset += 12 + length + 4
    data[offset + 12 + 100] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def coco_records(tmp_path) -> pathlib.Path:
    """The two real COCO sample images converted into two val shards (with a manifest)."""
    root = test_convert_coco.make_coco_layout(tmp_path / "coco")
    convert.convert_split("coco", str(root), str(tmp_path / "records"), "val", 2)
    return tmp_path / "records"


def check(data_dir, info=COCO, **kwargs):
    return validation.check_data_files(info, str(data_dir), "val", **kwargs)


def expect(data_dir, *fragments, info=COCO):
    with pytest.raises(validation.DataError) as error:
        check(data_dir, info)
    for fragment in fragments:
        assert fragment in str(error.value), (fragment, str(error.value))


def test_a_complete_conversion_passes(coco_records, tmp_path):
    assert [pathlib.Path(p).name for p in check(coco_records)] == [
        "val-00000-of-00002.tfrecord",
        "val-00001-of-00002.tfrecord",
    ]
    # Two images in three shards: one shard is empty, as the manifest implies.
    root = tmp_path / "coco"
    convert.convert_split("coco", str(root), str(tmp_path / "three"), "val", 3)
    assert len(check(tmp_path / "three")) == 3


def test_missing_shard_is_refused_unless_allowed(coco_records, caplog):
    (coco_records / "val-00001-of-00002.tfrecord").unlink()
    manifest = coco_records / "val-conversion.json"
    expect(
        coco_records, str(manifest), "records 2 'val' shards, but 1 of them is missing (val-00001"
    )
    with caplog.at_level(logging.WARNING):
        files = check(coco_records, allow_incomplete=True)
    assert [pathlib.Path(p).name for p in files] == ["val-00000-of-00002.tfrecord"]
    assert "val-00001-of-00002.tfrecord" in caplog.text


def test_empty_file_and_a_file_that_is_not_a_tfrecord(coco_records, testdata):
    shard = coco_records / "val-00001-of-00002.tfrecord"
    shard.write_bytes(b"")
    expect(coco_records, f"{shard}: empty file (0 bytes)")
    jpeg = testdata / "coco_panoptic_sample" / "input_images" / "000000142238.jpg"
    shard.write_bytes(jpeg.read_bytes())
    expect(coco_records, f"{shard}: not a TFRecord file", "corrupted record at 0")


def test_records_of_another_schema_or_dataset(coco_records, tmp_path):
    # The manifest says which dataset the records are of.
    cityscapes = dataset_info.get_dataset_info("cityscapes")
    expect(coco_records, "converted for dataset 'coco'", "as 'cityscapes'", info=cityscapes)
    # Without it (deeplab2's folders have none) the classes of the first record
    # tell: COCO's stuff, record classes 81..133 * 256, are classes 20..34 at
    # Cityscapes' divisor 1000, beyond its 0..18 and void 255.
    (coco_records / "val-conversion.json").unlink()
    shard = coco_records / "val-00000-of-00002.tfrecord"
    expect(coco_records, f"{shard}: record 0 ('000000142238') has record classes", info=cityscapes)
    # A TFRecord file whose records are not tf.train.Examples of the schema.
    with tf.io.TFRecordWriter(str(shard)) as writer:
        writer.write(tf.train.Example().SerializeToString())
    expect(coco_records, f"{shard}: record 0 does not decode", "image/encoded")


def test_a_bad_record_mid_file_is_located_by_a_scan(tmp_path):
    root = test_convert_coco.make_coco_layout(tmp_path / "coco")
    records = tmp_path / "records"
    (shard,) = convert.convert_split("coco", str(root), str(records), "val", 1)
    shard = pathlib.Path(shard)
    corrupt_record(shard, 1)
    check(records)  # its first record is intact
    dataset = pipeline.build_dataset(
        dataset_info=COCO, file_pattern=str(shard), mode="eval", crop_size=(65, 65), batch_size=1
    )
    with pytest.raises(tf.errors.DataLossError) as read_error:
        list(dataset)
    located = validation.locate_read_error(
        COCO, str(records), "val", read_error.value, last_checkpoint="run/ckpt-6"
    )
    assert str(located).startswith(f"{shard}: record 1 cannot be read: ")
    assert "located by a scan of the 'val' files" in str(located)
    assert "run/ckpt-6, is kept" in str(located)

    # A record of another dataset mid-file: class 200 is beyond COCO's 1..133.
    good = next(iter(tf.data.TFRecordDataset(str(records / "val-00000-of-00001.tfrecord"))))
    label = np.full((4, 6), 200 * COCO.label_divisor, np.int32)
    png = tf.io.encode_png(np.zeros((4, 6, 3), np.uint8)).numpy()
    alien = tfrecord.encode_panoptic_example(png, "png", "alien", label)
    with tf.io.TFRecordWriter(str(shard)) as writer:
        writer.write(good.numpy())
        writer.write(alien)
    error = tf.errors.InvalidArgumentError(None, None, "label of alien has a record class ...")
    located = validation.locate_read_error(COCO, str(records), "val", error)
    assert str(located).startswith(f"{shard}: record 1 ('alien') has record classes [200]")
    # Every record is fine: the error came from elsewhere.
    with tf.io.TFRecordWriter(str(shard)) as writer:
        writer.write(good.numpy())
    assert validation.locate_read_error(COCO, str(records), "val", error) is None
