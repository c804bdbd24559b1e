"""How long the data check before a run takes: `validation.check_data_files`.

It reads and decodes the first record of every file of a split, in threads.
By default this measures folders of `--num_files` shards generated here (each
holding one synthetic record of COCO size, 640x480, or Cityscapes size,
1024x2048; generated once, cached under `--cache_dir`) for several thread
counts. Give `--data_dir` (local or gs://), `--dataset` and `--split` to
measure a real data folder instead.

    python scripts/benchmark_data_check.py --num_files=256
    python scripts/benchmark_data_check.py --data_dir=gs://bucket/coco --dataset=coco \\
        --split=train --threads=16,64

Local files come from the page cache after the first pass (the first row of
each size is the cold one); on gs:// the time is the latency of one read per
file divided by the threads.
"""

import os
import tempfile
import time

import tensorflow as tf
from absl import app
from absl import flags

from swiderrnet_tf.data import dataset_info
from swiderrnet_tf.data import synthetic
from swiderrnet_tf.data import validation

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "A data folder to measure (else generated ones).")
flags.DEFINE_string("dataset", "coco", "With --data_dir: its registered dataset.")
flags.DEFINE_string("split", "train", "With --data_dir: the split.")
flags.DEFINE_string(
    "cache_dir",
    os.path.join(tempfile.gettempdir(), "swiderrnet_tf_data_check_benchmark"),
    "Where the generated folders are cached.",
)
flags.DEFINE_integer("num_files", 256, "Files per generated folder.")
flags.DEFINE_list("sizes", ["640x480", "2048x1024"], "Record sizes (WIDTHxHEIGHT) generated.")
flags.DEFINE_list("threads", ["1", "4", "16"], "Thread counts measured.")


def _generated_folder(width: int, height: int) -> str:
    """`num_files` shards of one synthetic record each (the synthetic dataset's classes)."""
    directory = os.path.join(FLAGS.cache_dir, f"{width}x{height}_{FLAGS.num_files}")
    names = [f"train-{i:05d}-of-{FLAGS.num_files:05d}.tfrecord" for i in range(FLAGS.num_files)]
    if all(os.path.exists(os.path.join(directory, n)) for n in names):
        return directory
    os.makedirs(directory, exist_ok=True)
    record = synthetic.encode_example("train", 0, height=height, width=width, seed=0)
    for name in names:
        with tf.io.TFRecordWriter(os.path.join(directory, name)) as writer:
            writer.write(record)
    return directory


def _measure(info, data_dir: str, split: str, threads: int) -> tuple[int, float]:
    start = time.perf_counter()
    files = validation.check_data_files(info, data_dir, split, num_threads=threads)
    return len(files), time.perf_counter() - start


def main(argv):
    del argv
    if FLAGS.data_dir:
        folders = [(FLAGS.data_dir, FLAGS.split, dataset_info.get_dataset_info(FLAGS.dataset))]
    else:
        folders = []
        for size in FLAGS.sizes:
            width, height = (int(v) for v in size.lower().split("x"))
            folders.append((_generated_folder(width, height), "train", synthetic.INFO))
    print(f"CPU cores: {os.cpu_count()}")
    print("| folder | files | threads | seconds | files/s |")
    print("|---|---:|---:|---:|---:|")
    for data_dir, split, info in folders:
        for threads in (int(t) for t in FLAGS.threads):
            count, seconds = _measure(info, data_dir, split, threads)
            name = os.path.basename(data_dir.rstrip("/"))
            print(f"| {name} | {count} | {threads} | {seconds:.2f} | {count / seconds:.0f} |")


if __name__ == "__main__":
    app.run(main)
