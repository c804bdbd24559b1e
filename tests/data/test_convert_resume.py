"""A converter killed mid-run leaves complete shards only and no worker; a re-run finishes."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from swiderrnet_tf.data import convert

REPO = pathlib.Path(__file__).parents[2]
NUM_IMAGES = 48
NUM_SHARDS = 24


def make_dataset(root: pathlib.Path) -> None:
    """COCO layout: NUM_IMAGES noisy images, each a sky, a grass and a person segment."""
    png_dir = root / "annotations" / "panoptic_val2017"
    png_dir.mkdir(parents=True)
    (root / "val2017").mkdir()
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for index in range(NUM_IMAGES):
        ids = np.full((256, 256), 1000, np.int64)
        ids[128:] = 2000
        ids[64:192, 100:140] = 3000 + index
        rgb = np.stack([ids % 256, ids // 256, ids // 65536], axis=-1).astype(np.uint8)
        name = f"{index:012d}"
        Image.fromarray(rgb).save(png_dir / f"{name}.png")
        noise = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
        Image.fromarray(noise).save(root / "val2017" / f"{name}.jpg")
        images.append({"id": index, "file_name": f"{name}.jpg", "height": 256, "width": 256})
        segments = [
            {"id": 1000, "category_id": 187, "iscrowd": 0},  # sky-other-merged
            {"id": 2000, "category_id": 193, "iscrowd": 0},  # grass-merged
            {"id": 3000 + index, "category_id": 1, "iscrowd": 0},  # person
        ]
        annotations.append(
            {"image_id": index, "file_name": f"{name}.png", "segments_info": segments}
        )
    data = {"images": images, "annotations": annotations}
    (root / "annotations" / "panoptic_val2017.json").write_text(json.dumps(data))


def complete_shards(output_dir: pathlib.Path) -> dict[str, int]:
    """Shard name -> mtime of every shard under its final name."""
    return {p.name: p.stat().st_mtime_ns for p in output_dir.glob("val-*.tfrecord")}


def count_records(paths) -> int:
    return sum(1 for _ in tf.data.TFRecordDataset([str(p) for p in paths]))


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            stat = pathlib.Path("/proc", entry, "stat").read_text()
        except (OSError, ValueError):
            continue
        # Fields after the command name, which may hold spaces: state, ppid, ...
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie waiting for its new parent to reap it."""
    try:
        state = pathlib.Path("/proc", str(pid), "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="finds the workers in /proc")
def test_killed_conversion_leaves_complete_shards_and_resumes(tmp_path):
    root, output_dir = tmp_path / "coco", tmp_path / "out"
    make_dataset(root)
    flags = {
        "dataset": "coco",
        "input_dir": root,
        "output_dir": output_dir,
        "split": "val",
        "num_shards": NUM_SHARDS,
        "num_workers": 2,
    }
    command = [sys.executable, "-m", "swiderrnet_tf.data.convert"]
    command += [f"--{key}={value}" for key, value in flags.items()]
    log = tmp_path / "convert.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            command, cwd=REPO, stdout=log_file, stderr=log_file, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 120
        while not complete_shards(output_dir) and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.005)
        # The two workers and multiprocessing's resource tracker.
        spawned = children(process.pid)
        assert len(spawned) >= 3, spawned
        # kill -9 of the converter alone: its workers must notice and stop.
        process.kill()
        process.wait()
        # A generous deadline: the workers stop within a second, but the machine may be busy.
        deadline = time.monotonic() + 60
        while any(running(pid) for pid in spawned) and time.monotonic() < deadline:
            time.sleep(0.1)
        orphans = [pid for pid in spawned if running(pid)]
    finally:
        os.killpg(process.pid, signal.SIGKILL)
    assert not orphans, f"processes {orphans} outlived the killed converter"
    before = complete_shards(output_dir)
    assert 0 < len(before) < NUM_SHARDS, "the kill did not land mid-run"
    for name in before:
        # Each complete shard holds its two examples, intact.
        assert count_records([output_dir / name]) == NUM_IMAGES // NUM_SHARDS

    paths = convert.convert_split("coco", str(root), str(output_dir), "val", NUM_SHARDS)
    after = complete_shards(output_dir)
    assert sorted(after) == sorted(pathlib.Path(p).name for p in paths)
    assert len(after) == NUM_SHARDS
    # Shards complete before the kill were skipped, not rewritten.
    assert all(after[name] == mtime for name, mtime in before.items())
    assert count_records(paths) == NUM_IMAGES
    assert sorted(p.name for p in output_dir.iterdir()) == sorted([*after, "val-conversion.json"])
    # The same bytes as a conversion that was never interrupted.
    fresh = convert.convert_split("coco", str(root), str(tmp_path / "fresh"), "val", NUM_SHARDS)
    for path, fresh_path in zip(paths, fresh, strict=True):
        assert pathlib.Path(path).read_bytes() == pathlib.Path(fresh_path).read_bytes(), path
