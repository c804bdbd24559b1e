"""Input pipeline throughput: training images per second at paper-sized crops.

Measures `pipeline.build_dataset` in training mode with every augmentation on
(random scale 0.5-2.0, crop, flip, AutoAugment) and all targets, on synthetic
records of Cityscapes size (1024x2048, crop 1025x2049) and COCO size (640x480,
crop 641x641), for several `num_parallel_calls`. The few records it needs are
generated once and cached under `--data_dir`.

    python scripts/benchmark_input.py --data_dir=/tmp/swiderrnet_tf_input_benchmark

Images per wall-clock second depend on the CPU cores free for the run
(report them with the core count this script prints); images per CPU second
of the process (all its threads) are the cost, less sensitive to other load.
"""

import os
import tempfile
import time

import tensorflow as tf
from absl import app
from absl import flags
from absl import logging

from swiderrnet_tf.data import dataset_info
from swiderrnet_tf.data import pipeline
from swiderrnet_tf.data import synthetic

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "data_dir",
    os.path.join(tempfile.gettempdir(), "swiderrnet_tf_input_benchmark"),
    "Cache directory of the synthetic records.",
)
flags.DEFINE_list("datasets", ["cityscapes", "coco"], "Which of cityscapes, coco to measure.")
flags.DEFINE_list("parallel", ["1", "2", "autotune"], "num_parallel_calls values to measure.")
flags.DEFINE_integer("num_records", 4, "Synthetic records generated per dataset size.")
flags.DEFINE_integer("batch_size", 2, "Batch size.")
flags.DEFINE_integer("batches", 20, "Batches timed per measurement, after the warm-up.")
flags.DEFINE_integer("warmup_batches", 2, "Batches read before the clock starts.")
flags.DEFINE_bool("autoaugment", True, "Apply the paper's AutoAugment policy.")

# name -> (record height, record width, crop height, crop width)
_SIZES = {
    "cityscapes": (1024, 2048, 1025, 2049),
    "coco": (480, 640, 641, 641),
}


def _records(name: str) -> str:
    height, width = _SIZES[name][:2]
    directory = os.path.join(FLAGS.data_dir, f"{name}_{height}x{width}")
    synthetic.ensure_dataset(
        directory,
        num_train=FLAGS.num_records,
        num_val=0,
        height=height,
        width=width,
        seed=0,
        num_shards=FLAGS.num_records,
    )
    return os.path.join(directory, "train-*.tfrecord")


def _throughput(pattern: str, crop: tuple[int, int], parallel: int) -> tuple[float, float]:
    """Returns (images per wall-clock second, images per CPU second of this process)."""
    dataset = pipeline.build_dataset(
        dataset_info=dataset_info.SYNTHETIC,
        file_pattern=pattern,
        mode="train",
        crop_size=crop,
        batch_size=FLAGS.batch_size,
        shuffle_buffer=FLAGS.num_records,
        autoaugment=FLAGS.autoaugment,
        num_parallel_calls=parallel,
    )
    iterator = iter(dataset)
    # Tracing and thread start-up. Elements already buffered when the clock
    # starts count as free, so time many batches.
    for _ in range(FLAGS.warmup_batches):
        next(iterator)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(FLAGS.batches):
        next(iterator)
    images = FLAGS.batches * FLAGS.batch_size
    return images / (time.perf_counter() - wall), images / (time.process_time() - cpu)


def main(argv):
    del argv
    unknown = set(FLAGS.datasets) - set(_SIZES)
    if unknown:
        raise app.UsageError(f"--datasets: unknown {sorted(unknown)}; known: {sorted(_SIZES)}")
    parallel_values = []
    for value in FLAGS.parallel:
        parallel_values.append(
            (value, tf.data.AUTOTUNE if value.lower() == "autotune" else int(value))
        )
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rows = []
    for name in FLAGS.datasets:
        record_h, record_w, crop_h, crop_w = _SIZES[name]
        logging.info("Preparing %s records in %s", name, FLAGS.data_dir)
        pattern = _records(name)
        for label, parallel in parallel_values:
            rate, cpu_rate = _throughput(pattern, (crop_h, crop_w), parallel)
            rows.append(
                (name, f"{record_h}x{record_w}", f"{crop_h}x{crop_w}", label, rate, cpu_rate)
            )
            logging.info("%s parallel=%s: %.2f images/s", name, label, rate)
    print(
        f"\nTraining input pipeline, batch {FLAGS.batch_size}, autoaugment={FLAGS.autoaugment}, "
        f"{cores} CPU cores visible, TF {tf.__version__}"
    )
    print(
        f"{'dataset':<11} {'records':<10} {'crop':<10} {'parallel':<9} {'images/s':>9} "
        f"{'images/cpu-s':>12}"
    )
    for name, records, crop, label, rate, cpu_rate in rows:
        print(f"{name:<11} {records:<10} {crop:<10} {label:<9} {rate:>9.2f} {cpu_rate:>12.2f}")


if __name__ == "__main__":
    app.run(main)
