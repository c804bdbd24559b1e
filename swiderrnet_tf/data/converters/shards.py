"""Writes examples into sharded TFRecords, in parallel, safely resumable.

Shards are named `{split}-{i:05d}-of-{n:05d}.tfrecord`, as deeplab2 names
them (or with another suffix: none for the TPU reference's ImageNet files).
Each shard is written by one process under a temporary name and renamed
once complete (after an fsync on local disks), so a run that is killed leaves
only complete shards; running the same conversion again skips them and writes
the rest. A small `{split}-conversion.json` records what the shards hold, so
a re-run with other inputs or settings fails instead of mixing two
conversions in one directory.

Workers stop when the converting process dies, even by kill -9: each one
watches its parent and exits (removing its unfinished shard) within
`_WATCH_INTERVAL_S` of its death, so no orphan keeps converting, holding
memory or writing into the output directory.

Output paths go through `tf.io.gfile`, so `gs://` directories work. A shard,
the manifest or the directory that cannot be written raises
`cli.FileAccessError` naming the path and the cause (a full disk, permission
denied, a parent that is a regular file).
"""

import concurrent.futures
import hashlib
import json
import multiprocessing
import os
import queue
import re
import sys
import threading
import time

import tensorflow as tf
from absl import logging

from swiderrnet_tf import cli
from swiderrnet_tf import fileio

_WATCH_INTERVAL_S = 0.25
_progress_queue = None
# The temporary shard this worker is writing, removed if its parent dies.
_writing = None


def shard_name(split: str, index: int, num_shards: int, suffix: str = ".tfrecord") -> str:
    return f"{split}-{index:05d}-of-{num_shards:05d}{suffix}"


def split_evenly(items: list, num_shards: int) -> list[list]:
    """Contiguous chunks whose sizes differ by at most one, in order."""
    bounds = [i * len(items) // num_shards for i in range(num_shards + 1)]
    return [items[bounds[i] : bounds[i + 1]] for i in range(num_shards)]


class Progress:
    """A progress bar on stderr: redrawn in place on a terminal, else a line per 10%."""

    def __init__(self, total: int, description: str, stream=None):
        self._total = max(total, 1)
        self._description = description
        self._stream = stream or sys.stderr
        self._done = 0
        self._start = time.monotonic()
        self._last_decile = -1
        self._tty = self._stream.isatty()

    def update(self, count: int = 1) -> None:
        self._done += count
        decile = 10 * self._done // self._total
        if self._tty:
            self._draw(end="")
        elif decile != self._last_decile:
            self._last_decile = decile
            self._draw(end="\n")

    def close(self) -> None:
        if self._tty:
            self._draw(end="\n")

    def _draw(self, end: str) -> None:
        elapsed = time.monotonic() - self._start
        rate = self._done / elapsed if elapsed > 0 else 0.0
        remaining = (self._total - self._done) / rate if rate > 0 else 0.0
        filled = 30 * self._done // self._total
        bar = "#" * filled + "." * (30 - filled)
        prefix = "\r" if self._tty else ""
        self._stream.write(
            f"{prefix}{self._description} [{bar}] {self._done}/{self._total} "
            f"{rate:.1f} img/s, {remaining:.0f} s left{end}"
        )
        self._stream.flush()


def _init_worker(progress_queue, parent_pid: int) -> None:
    global _progress_queue
    _progress_queue = progress_queue
    threading.Thread(
        target=_exit_with_parent, args=(parent_pid,), name="parent-watch", daemon=True
    ).start()


def _exit_with_parent(parent_pid: int) -> None:
    """Ends this worker once `parent_pid` is no longer its parent (it died)."""
    while os.getppid() == parent_pid:
        time.sleep(_WATCH_INTERVAL_S)
    if _writing is not None:
        fileio.remove_quietly(_writing)
    os._exit(1)


def write_shard(path: str, items: list, convert_fn) -> str:
    """Writes `convert_fn(item)` for every item to `path`, atomically.

    Args:
      path: The final shard path.
      items: What to convert, in order.
      convert_fn: Picklable callable returning a serialised example.

    Returns:
      `path`.

    Raises:
      cli.FileAccessError: When the shard cannot be written.
    """
    global _writing
    tmp_path = _writing = fileio.temporary_path(path)
    try:
        with cli.file_access(path, "write the shard"):
            with tf.io.TFRecordWriter(tmp_path) as writer:
                for item in items:
                    writer.write(convert_fn(item))
                    if _progress_queue is not None:
                        _progress_queue.put(1)
            fileio.commit(tmp_path, path)
    except BaseException:
        fileio.remove_quietly(tmp_path)
        raise
    finally:
        _writing = None
    return path


def _check_manifest(output_dir: str, split: str, manifest: dict, suffix: str) -> None:
    """Writes the manifest, or checks that existing shards match it."""
    manifest_path = os.path.join(output_dir, f"{split}-conversion.json")
    pattern = re.compile(re.escape(split) + r"-\d{5}-of-\d{5}" + re.escape(suffix))
    existing = [name for name in tf.io.gfile.listdir(output_dir) if pattern.fullmatch(name)]
    if tf.io.gfile.exists(manifest_path):
        with tf.io.gfile.GFile(manifest_path, "r") as f:
            previous = json.load(f)
        if previous != manifest:
            changed = sorted(k for k in manifest if previous.get(k) != manifest[k])
            raise ValueError(
                f"{manifest_path}: {output_dir} holds {split!r} shards of another conversion "
                f"(different {changed}); remove them or choose another output directory"
            )
        return
    if existing:
        raise ValueError(
            f"{output_dir} holds {split!r} shards ({existing[0]}, ...) but no {manifest_path}; "
            f"remove them or choose another output directory"
        )
    with fileio.atomic_write(manifest_path) as f:
        json.dump(manifest, f, indent=1, sort_keys=True)


def write_sharded(
    *,
    items: list,
    item_names: list[str],
    convert_fn,
    output_dir: str,
    split: str,
    num_shards: int,
    num_workers: int,
    settings: dict,
    suffix: str = ".tfrecord",
) -> list[str]:
    """Converts `items` into `num_shards` shards, skipping complete ones.

    Args:
      items: What to convert (picklable), in the order the records keep.
      item_names: One name per item, identifying the conversion's inputs.
      convert_fn: Picklable callable: item -> serialised example.
      output_dir: Where shards go (created if missing).
      split: Split name, the shards' prefix.
      num_shards: Number of shards.
      num_workers: Processes; 1 converts in this process.
      settings: Anything else that changes the records (dataset, resizing),
        compared with the settings of earlier runs in `output_dir`.
      suffix: End of the shard names.

    Returns:
      The paths of all shards.
    """
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    fileio.make_dirs(output_dir, "output folder")
    names_digest = hashlib.sha256("\n".join(item_names).encode("utf-8")).hexdigest()
    manifest = dict(
        settings, split=split, num_shards=num_shards, num_items=len(items), items=names_digest
    )
    _check_manifest(output_dir, split, manifest, suffix)
    for stale in tf.io.gfile.glob(os.path.join(output_dir, f"{split}-*{fileio.TMP_INFIX}*")):
        tf.io.gfile.remove(stale)

    chunks = split_evenly(items, num_shards)
    paths = [
        os.path.join(output_dir, shard_name(split, i, num_shards, suffix))
        for i in range(num_shards)
    ]
    todo = [(p, c) for p, c in zip(paths, chunks, strict=True) if not tf.io.gfile.exists(p)]
    skipped = num_shards - len(todo)
    if skipped:
        logging.info("%s: %d of %d shards were complete, skipped", split, skipped, num_shards)
    progress = Progress(sum(len(c) for _, c in todo), f"{split}: {len(todo)} shards")
    if num_workers <= 1 or len(todo) <= 1:
        for path, chunk in todo:
            write_shard(path, chunk, convert_fn)
            progress.update(len(chunk))
    else:
        _write_in_processes(todo, convert_fn, min(num_workers, len(todo)), progress)
    progress.close()
    return paths


def _write_in_processes(todo, convert_fn, num_workers, progress) -> None:
    # Spawned, not forked: a forked TensorFlow runtime can deadlock.
    context = multiprocessing.get_context("spawn")
    progress_queue = context.Queue()
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=num_workers,
        mp_context=context,
        initializer=_init_worker,
        initargs=(progress_queue, os.getpid()),
    ) as pool:
        futures = [pool.submit(write_shard, path, chunk, convert_fn) for path, chunk in todo]
        pending = set(futures)
        try:
            while pending:
                done, pending = concurrent.futures.wait(pending, timeout=0.2)
                for future in done:
                    future.result()
                _drain(progress_queue, progress)
        except BaseException:
            for future in pending:
                future.cancel()
            raise
        _drain(progress_queue, progress)


def _drain(progress_queue, progress) -> None:
    while True:
        try:
            progress.update(progress_queue.get_nowait())
        except queue.Empty:
            return
