"""Input pipeline throughput: training images per second at paper-sized crops.

Panoptic (`--datasets=cityscapes,coco`): `pipeline.build_dataset` in training
mode with every augmentation on (random scale 0.5-2.0, crop, flip,
AutoAugment) and all targets, on synthetic records of Cityscapes size
(1024x2048, crop 1025x2049) and COCO size (640x480, crop 641x641).

ImageNet (`--datasets=imagenet`): `imagenet.build_classification_dataset` at
224 in training mode (random-resized crop decoded straight from the JPEG,
bicubic or bilinear resize, flip) and in evaluation mode (87.5% center crop),
on real JPEGs of ImageNet's typical size: crops of the COCO sample images of
`tests/testdata`, re-encoded at 500x375 and 375x500 (quality 90, about 100 KB
like ImageNet's), or on your own records with `--imagenet_pattern`.

Each is measured for several `num_parallel_calls`. The few records needed are
generated once and cached under `--data_dir`.

    python scripts/benchmark_input.py --data_dir=/tmp/swiderrnet_tf_input_benchmark
    python scripts/benchmark_input.py --datasets=imagenet --parallel=1,autotune

Images per wall-clock second depend on the CPU cores free for the run
(report them with the core count this script prints); images per CPU second
of the process (all its threads) are the cost, less sensitive to other load.
"""

import io
import os
import pathlib
import tempfile
import time

import numpy as np
import tensorflow as tf
from absl import app
from absl import flags
from absl import logging
from PIL import Image

from swiderrnet_tf.data import classification_info
from swiderrnet_tf.data import dataset_info
from swiderrnet_tf.data import imagenet
from swiderrnet_tf.data import pipeline
from swiderrnet_tf.data import synthetic

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "data_dir",
    os.path.join(tempfile.gettempdir(), "swiderrnet_tf_input_benchmark"),
    "Cache directory of the synthetic records.",
)
flags.DEFINE_list(
    "datasets",
    ["cityscapes", "coco", "imagenet"],
    "Which of cityscapes, coco, imagenet to measure.",
)
flags.DEFINE_list("parallel", ["1", "2", "autotune"], "num_parallel_calls values to measure.")
flags.DEFINE_integer("num_records", 4, "Synthetic records generated per dataset size.")
flags.DEFINE_integer("batch_size", 2, "Batch size.")
flags.DEFINE_integer("batches", 20, "Batches timed per measurement, after the warm-up.")
flags.DEFINE_integer("warmup_batches", 2, "Batches read before the clock starts.")
flags.DEFINE_bool("autoaugment", True, "Apply the paper's AutoAugment policy (panoptic).")
flags.DEFINE_integer("imagenet_batch_size", 32, "Batch size of the ImageNet measurements.")
flags.DEFINE_integer("imagenet_records", 64, "ImageNet-like records made from the COCO images.")
flags.DEFINE_string(
    "imagenet_pattern", None, "Your own ImageNet TFRecords (instead of the COCO-made ones)."
)
flags.DEFINE_string(
    "imagenet_dataset", "imagenet2012", "Classification dataset (layout) of --imagenet_pattern."
)

# name -> (record height, record width, crop height, crop width)
_SIZES = {
    "cityscapes": (1024, 2048, 1025, 2049),
    "coco": (480, 640, 641, 641),
}


_COCO_IMAGES = pathlib.Path(__file__).resolve().parents[1] / (
    "tests/testdata/coco_panoptic_sample/input_images"
)
# ImageNet's typical sizes (width x height) in landscape and portrait.
_IMAGENET_SIZES = ((500, 375), (375, 500))


def _imagenet_records() -> tuple[classification_info.ClassificationInfo, str]:
    """ImageNet-sized JPEG records in the tpu_reference layout, made once from COCO crops."""
    if FLAGS.imagenet_pattern:
        info = classification_info.get_classification_info(FLAGS.imagenet_dataset)
        return info, FLAGS.imagenet_pattern
    directory = os.path.join(FLAGS.data_dir, f"imagenet_like_{FLAGS.imagenet_records}")
    pattern = os.path.join(directory, "train-?????-of-?????")
    if not tf.io.gfile.glob(pattern):
        sources = [Image.open(p).convert("RGB") for p in sorted(_COCO_IMAGES.glob("*.jpg"))]
        rng = np.random.default_rng(0)
        records = []
        for index in range(FLAGS.imagenet_records):
            source = sources[index % len(sources)]
            width, height = _IMAGENET_SIZES[index % 2]
            # A random crop of 60-100% of the source's sides, resized to ImageNet size.
            cw, ch = (rng.uniform(0.6, 1.0, size=2) * source.size).astype(int)
            x, y = rng.integers(0, source.width - cw + 1), rng.integers(0, source.height - ch + 1)
            image = source.crop((x, y, x + cw, y + ch)).resize((width, height), Image.BICUBIC)
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=90)
            records.append(
                classification_info.encode_reference_example(
                    buffer.getvalue(),
                    label=index % 1000 + 1,
                    synset="n00000000",
                    filename=f"{index}.JPEG",
                    height=height,
                    width=width,
                )
            )
        tf.io.gfile.makedirs(directory)
        # Several files, so that the training interleave reads in parallel as on ImageNet.
        num_files = 8
        for shard in range(num_files):
            path = os.path.join(directory, f"train-{shard:05d}-of-{num_files:05d}")
            with tf.io.TFRecordWriter(path + ".tmp") as writer:
                for record in records[shard::num_files]:
                    writer.write(record)
            tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
    return classification_info.IMAGENET2012, pattern


def _imagenet_throughput(info, pattern, mode, resize_method, parallel) -> tuple[float, float]:
    """(images per wall-clock second, images per CPU second) of the classification input."""
    dataset = imagenet.build_classification_dataset(
        dataset_info=info,
        file_pattern=pattern,
        mode=mode,
        image_size=224,
        batch_size=FLAGS.imagenet_batch_size,
        resize_method=resize_method,
        num_parallel_calls=parallel,
        # Evaluation makes one pass: repeat it so that every measurement has its batches.
        repeat=True,
        drop_remainder=True,
    )
    return _time(iter(dataset), FLAGS.imagenet_batch_size)


def _time(iterator, batch_size) -> tuple[float, float]:
    # Tracing and thread start-up. Elements already buffered when the clock
    # starts count as free, so time many batches.
    for _ in range(FLAGS.warmup_batches):
        next(iterator)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(FLAGS.batches):
        next(iterator)
    images = FLAGS.batches * batch_size
    return images / (time.perf_counter() - wall), images / (time.process_time() - cpu)


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
    return _time(iter(dataset), FLAGS.batch_size)


# (mode, resize method) of each ImageNet measurement.
_IMAGENET_RUNS = (("train", "bicubic"), ("train", "bilinear"), ("eval", "bicubic"))


def main(argv):
    del argv
    known = [*_SIZES, "imagenet"]
    unknown = set(FLAGS.datasets) - set(known)
    if unknown:
        raise app.UsageError(f"--datasets: unknown {sorted(unknown)}; known: {known}")
    parallel_values = []
    for value in FLAGS.parallel:
        parallel_values.append(
            (value, tf.data.AUTOTUNE if value.lower() == "autotune" else int(value))
        )
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rows = []
    for name in FLAGS.datasets:
        if name == "imagenet":
            continue
        record_h, record_w, crop_h, crop_w = _SIZES[name]
        logging.info("Preparing %s records in %s", name, FLAGS.data_dir)
        pattern = _records(name)
        for label, parallel in parallel_values:
            rate, cpu_rate = _throughput(pattern, (crop_h, crop_w), parallel)
            rows.append(
                (name, f"{record_h}x{record_w}", f"{crop_h}x{crop_w}", label, rate, cpu_rate)
            )
            logging.info("%s parallel=%s: %.2f images/s", name, label, rate)
    imagenet_rows = []
    if "imagenet" in FLAGS.datasets:
        info, pattern = _imagenet_records()
        for mode, method in _IMAGENET_RUNS:
            for label, parallel in parallel_values:
                rate, cpu_rate = _imagenet_throughput(info, pattern, mode, method, parallel)
                imagenet_rows.append((mode, method, label, rate, cpu_rate))
                logging.info("imagenet %s %s parallel=%s: %.1f images/s", mode, method, label, rate)
    header = f"{cores} CPU cores visible, TF {tf.__version__}"
    if rows:
        print(
            f"\nTraining input pipeline, batch {FLAGS.batch_size}, "
            f"autoaugment={FLAGS.autoaugment}, {header}"
        )
        print(
            f"{'dataset':<11} {'records':<10} {'crop':<10} {'parallel':<9} {'images/s':>9} "
            f"{'images/cpu-s':>12}"
        )
        for name, records, crop, label, rate, cpu_rate in rows:
            print(f"{name:<11} {records:<10} {crop:<10} {label:<9} {rate:>9.2f} {cpu_rate:>12.2f}")
    if imagenet_rows:
        source = FLAGS.imagenet_pattern or "500x375 and 375x500 JPEGs made from the COCO sample"
        print(f"\nImageNet input at 224 ({source}), batch {FLAGS.imagenet_batch_size}, {header}")
        print(f"{'mode':<6} {'resize':<9} {'parallel':<9} {'images/s':>9} {'images/cpu-s':>12}")
        for mode, method, label, rate, cpu_rate in imagenet_rows:
            print(f"{mode:<6} {method:<9} {label:<9} {rate:>9.1f} {cpu_rate:>12.1f}")


if __name__ == "__main__":
    app.run(main)
