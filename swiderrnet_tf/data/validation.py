"""Checks a split's TFRecords before training or evaluation, and names the bad record.

Bad data otherwise ends a run with TensorFlow's own error and no file named:
a 0-byte file (`OutOfRangeError: End of sequence`), a file that is not a
TFRecord (`DataLossError: corrupted record at 0`), records of another schema
or dataset (`InvalidArgumentError`). Two functions turn these into a
`DataError` (a `ValueError`) whose message names the file:

  * `check_data_files(info, data_dir, split)`, called before the first step,
    compares the folder with its conversion manifest (`{split}-conversion.json`,
    written by `swiderrnet_tf.data.convert`): the dataset it was converted for,
    and the shards it records, which must all be there (unless
    `allow_incomplete`, which warns instead). Then it opens every file of the
    split and decodes its first record to the schema of `tfrecord` and the
    classes of the `DatasetInfo`, one record per file, in parallel threads,
    so that a folder of 1024 shards in Cloud Storage is checked in seconds.
  * `locate_read_error(info, data_dir, split, error)`, called when iterating
    the input raised one of `READ_ERRORS` later in a run, scans the split's
    files one `tf.data.TFRecordDataset` per file (in threads) for the first
    record that does not read or decode, and returns a `DataError` naming
    the file and the record index, saying that it was located by a scan (the
    pipeline's own error does not say where it was). A scan reads the whole
    split: minutes for a large dataset in Cloud Storage, paid only when a run
    fails.

What the first record cannot show: records of another dataset whose record
classes and label divisor happen to fit this one's ranges (e.g. COCO records
read as ADE20K) pass, unless the manifest names the other dataset.
"""

import concurrent.futures
import json
import os

import numpy as np
import tensorflow as tf
from absl import logging

from swiderrnet_tf import cli
from swiderrnet_tf.data import dataset_info as dataset_info_lib
from swiderrnet_tf.data import pipeline
from swiderrnet_tf.data import tfrecord
from swiderrnet_tf.data.converters import shards

# What iterating a tf.data pipeline raises for bad input records.
READ_ERRORS = (tf.errors.DataLossError, tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError)
DEFAULT_THREADS = 16
_SHOWN = 5  # file names listed in a message


class DataError(ValueError):
    """A data file that cannot be used; the message names it."""


def manifest_path(data_dir: str, split: str) -> str:
    return os.path.join(data_dir, f"{split}-conversion.json")


def _names(paths) -> str:
    names = [os.path.basename(p) for p in paths]
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def _read_manifest(data_dir: str, split: str) -> dict | None:
    path = manifest_path(data_dir, split)
    with cli.file_access(path, "read the conversion manifest"):
        if not tf.io.gfile.exists(path):
            return None
        with tf.io.gfile.GFile(path) as f:
            text = f.read()
    try:
        manifest = json.loads(text)
        int(manifest["num_shards"])
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a conversion manifest ({e})") from e
    return manifest


def _empty_shards(manifest: dict | None, split: str, data_dir: str) -> set[str]:
    """Shards the manifest says hold no record (more shards than images)."""
    if manifest is None or "num_items" not in manifest:
        return set()
    count, items = int(manifest["num_shards"]), int(manifest["num_items"])
    return {
        os.path.join(data_dir, shards.shard_name(split, i, count))
        for i in range(count)
        if (i + 1) * items // count == i * items // count
    }


def _check_against_manifest(manifest, info, data_dir, split, files, allow_incomplete, setting):
    path = manifest_path(data_dir, split)
    converted = manifest.get("dataset")
    if converted is not None and converted != info.name:
        raise DataError(
            f"{path}: the {split!r} records were converted for dataset {converted!r}, but the "
            f"configuration reads them as {info.name!r}"
        )
    count = int(manifest["num_shards"])
    expected = {os.path.join(data_dir, shards.shard_name(split, i, count)) for i in range(count)}
    missing, unlisted = sorted(expected - set(files)), sorted(set(files) - expected)
    if not missing and not unlisted:
        return
    problems = []
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        problems.append(f"{len(missing)} of them {verb} missing ({_names(missing)})")
    if unlisted:
        problems.append(f"other files match the split ({_names(unlisted)})")
    text = f"{path} records {count} {split!r} shards, but {' and '.join(problems)}"
    if not allow_incomplete:
        raise DataError(
            f"{text}; run the conversion again to finish it, or set {setting} = True to use "
            "the files that are there"
        )
    logging.warning("%s; using the %d files there (%s = True)", text, len(files), setting)


def record_problem(serialized, info: dataset_info_lib.DatasetInfo) -> str | None:
    """What is wrong with one serialised record for `info`, or None.

    Args:
      serialized: A scalar string tensor or bytes.
      info: The dataset the record must belong to.

    Returns:
      A phrase completing "record N ...", or None when the record decodes to
      the schema with a raw panoptic label whose record classes are this
      dataset's.
    """
    try:
        example = tfrecord.decode_example(tf.convert_to_tensor(serialized, tf.string))
    except tf.errors.InvalidArgumentError as e:
        return f"does not decode to the deeplab2 TFRecord schema: {cli.one_line(e.message)}"
    name = example["filename"].numpy().decode("utf-8", "replace")
    if not bool(example["has_label"]):
        return f"({name!r}) has no label; training and evaluation need panoptic labels"
    label_format = example["label_format"].numpy().decode("utf-8", "replace")
    if label_format != tfrecord.LABEL_FORMAT_RAW:
        return (
            f"({name!r}) has a {label_format!r} label; panoptic training and evaluation need "
            f"{tfrecord.LABEL_FORMAT_RAW!r} panoptic labels"
        )
    image_size = tuple(example["image"].shape[:2])
    label_size = (int(example["height"]), int(example["width"]))
    if image_size != label_size:
        return f"({name!r}) has a {image_size} image but a {label_size} label"
    classes = example["label"].numpy() // info.label_divisor
    first = info.record_class_offset
    last = first + info.num_classes - 1
    # A mask, not np.unique of every pixel: a sort of 2M pixels costs more than the decode.
    outside = ((classes < first) | (classes > last)) & (classes != info.record_ignore_label)
    if outside.any():
        bad = np.unique(classes[outside])
        return (
            f"({name!r}) has record classes {bad[:_SHOWN].tolist()}, not those of dataset "
            f"{info.name!r} ({first}..{last}, void {info.record_ignore_label}, label divisor "
            f"{info.label_divisor}): is it a record of another dataset?"
        )
    return None


def _check_first_record(path: str, info, may_be_empty: bool) -> None:
    with cli.file_access(path, "read the TFRecord file"):
        size = tf.io.gfile.stat(path).length
        if size == 0:
            if may_be_empty:
                return
            raise DataError(f"{path}: empty file (0 bytes), not a TFRecord file with records")
        try:
            first = next(iter(tf.data.TFRecordDataset(path).take(1)), None)
        except tf.errors.DataLossError as e:
            raise DataError(
                f"{path}: not a TFRecord file, or its first record is damaged "
                f"({cli.one_line(e.message)})"
            ) from e
    if first is None:
        raise DataError(f"{path}: holds no record ({size} bytes)")
    problem = record_problem(first, info)
    if problem:
        raise DataError(f"{path}: record 0 {problem}")


def check_data_files(
    info: dataset_info_lib.DatasetInfo,
    data_dir: str,
    split: str,
    *,
    allow_incomplete: bool = False,
    setting: str = "train.allow_incomplete_data",
    num_threads: int = DEFAULT_THREADS,
) -> list[str]:
    """Checks that the split's files are complete and hold records of `info`.

    Args:
      info: The dataset the records must belong to.
      data_dir: The data folder.
      split: The split (its files: `info.split_pattern(split)` in `data_dir`).
      allow_incomplete: Warn instead of failing when the files differ from
        those the conversion manifest records.
      setting: The setting named in that failure's message.
      num_threads: Files opened at once.

    Returns:
      The split's files, sorted.

    Raises:
      DataError: Naming the manifest and the missing files, or the first
        file (in name order) that is empty, not a TFRecord file, or whose
        first record does not decode to the schema and classes of `info`.
      cli.FileAccessError: When a file cannot be read.
    """
    files = pipeline.list_files(os.path.join(data_dir, info.split_pattern(split)))
    manifest = _read_manifest(data_dir, split)
    if manifest is not None:
        _check_against_manifest(manifest, info, data_dir, split, files, allow_incomplete, setting)
    may_be_empty = _empty_shards(manifest, split, data_dir)
    with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
        futures = [pool.submit(_check_first_record, f, info, f in may_be_empty) for f in files]
        for future in futures:
            future.result()
    logging.info("Checked the first record of each of the %d %r files", len(files), split)
    return files


def _scan_file(path: str, info, decode: bool) -> tuple[int, str] | None:
    """(index, problem) of the first bad record of one file, or None."""
    index = 0
    try:
        for record in tf.data.TFRecordDataset(path):
            problem = record_problem(record, info) if decode else None
            if problem:
                return index, problem
            index += 1
    except tf.errors.OpError as e:
        return index, f"cannot be read: {cli.one_line(e.message)}"
    if index == 0:
        return 0, "is missing: the file holds no record"
    return None


def locate_read_error(
    info: dataset_info_lib.DatasetInfo,
    data_dir: str,
    split: str,
    error: Exception,
    *,
    last_checkpoint: str | None = None,
    num_threads: int = DEFAULT_THREADS,
) -> DataError | None:
    """Finds the record behind a read error of the input pipeline.

    Args:
      info: The dataset the records belong to.
      data_dir: The data folder.
      split: The split that was being read.
      error: What iterating the input raised (one of `READ_ERRORS`).
      last_checkpoint: The run's newest checkpoint, named in the message as kept.
      num_threads: Files scanned at once.

    Returns:
      A `DataError` naming the first bad record (in file-name order), or
      None when every record reads and decodes, i.e. the error did not come
      from the data; raise the original error then.
    """
    files = pipeline.list_files(os.path.join(data_dir, info.split_pattern(split)))
    may_be_empty = _empty_shards(_read_manifest(data_dir, split), split, data_dir)
    # A damaged record fails in the reader: no need to decode every record.
    decode = not isinstance(error, tf.errors.DataLossError)
    logging.warning(
        "Reading the %r records failed (%s: %s); scanning its %d files for the bad record, "
        "which reads the whole split",
        split,
        type(error).__name__,
        cli.one_line(getattr(error, "message", str(error)))[:500],
        len(files),
    )
    with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
        found = list(pool.map(lambda f: _scan_file(f, info, decode), files))
    bad = [
        (path, result)
        for path, result in zip(files, found, strict=True)
        if result is not None and not (result[0] == 0 and path in may_be_empty)
    ]
    if not bad:
        return None
    path, (index, problem) = bad[0]
    kept = (
        f"the last checkpoint, {last_checkpoint}, is kept"
        if last_checkpoint
        else "no checkpoint was saved"
    )
    return DataError(
        f"{path}: record {index} {problem} (located by a scan of the {split!r} files after "
        f"reading failed with {type(error).__name__}); the run stopped and {kept}"
    )
