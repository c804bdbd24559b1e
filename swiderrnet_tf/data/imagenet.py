"""The tf.data input of classification training and evaluation (ImageNet pre-training).

Reads the records of a `classification_info.ClassificationInfo` (either
layout), checks before any work that the records are of that layout, and
yields batches of `{IMAGE: [b, s, s, 3] float32 in 0..255, LABEL: [b] int32}`
(the model normalises `x / 127.5 - 1` itself).

Training follows the TensorFlow TPU ResNet reference (tensorflow/tpu
`models/official/resnet/imagenet_input.py`): files sharded per host, shuffled
and interleaved (64 at a time), records shuffled (1024) and repeated, each
image cropped, resized and flipped (`classification_preprocessing`), batches
of a static shape. Evaluation: files in order, one pass, the 87.5% center
crop.

Deviations from the TPU reference:
  1. Randomness is stateless, one seed per example drawn from
     `tf.data.Dataset.random(seed)`: a seeded pipeline yields the same batches
     whatever `num_parallel_calls` is.
  2. Labels are checked against the class count on every record, and the
     first record's features against the layout before the pipeline starts.
"""

import tensorflow as tf
from google.protobuf import message as protobuf_message

from swiderrnet_tf import common
from swiderrnet_tf.data import autoaugment as autoaugment_lib
from swiderrnet_tf.data import classification_info
from swiderrnet_tf.data import classification_preprocessing as preprocessing
from swiderrnet_tf.data import pipeline

AUTOTUNE = tf.data.AUTOTUNE


class RecordLayoutError(ValueError):
    """Records that are not of the layout the dataset expects; the message names the file."""


def check_record_layout(info: classification_info.ClassificationInfo, files: list[str]) -> None:
    """Checks the first record of the first non-empty file against `info`'s layout.

    Raises:
      RecordLayoutError: naming the file, the features found, the layout
        expected and the dataset to use instead, when the record is of
        another layout or of none, or its label is out of range; or when the
        file is not a TFRecord file of `tf.train.Example`s, or no file holds
        a record.
    """
    layout = info.layout
    for path in files:
        try:
            records = list(tf.data.TFRecordDataset(path).take(1).as_numpy_iterator())
        except tf.errors.OpError as e:
            raise RecordLayoutError(f"{path}: not a readable TFRecord file: {e.message}") from e
        if not records:
            continue
        example = tf.train.Example()
        try:
            example.ParseFromString(records[0])
        except protobuf_message.DecodeError as e:
            raise RecordLayoutError(f"{path}: its first record is not a tf.train.Example") from e
        features = example.features.feature
        keys = sorted(features)
        if not layout.matches(keys):
            raise RecordLayoutError(f"{path}: {_mismatch(info, keys)}")
        label = list(features[layout.label_key].int64_list.value)
        first, last = layout.first_label, layout.first_label + info.num_classes - 1
        if len(label) != 1 or not first <= label[0] <= last:
            raise RecordLayoutError(
                f"{path}: the first record has {layout.label_key}={label}; dataset "
                f"{info.name!r} ({layout.name} layout) expects one label in {first}..{last}"
            )
        return
    raise RecordLayoutError(f"none of {len(files)} files ({files[0]}, ...) holds a record")


def _mismatch(info: classification_info.ClassificationInfo, keys: list[str]) -> str:
    layout = info.layout
    message = (
        f"records with features {keys}, but dataset {info.name!r} expects the {layout.name} "
        f"layout ({layout.image_key!r}, {layout.label_key!r})"
    )
    registered = map(
        classification_info.get_classification_info,
        classification_info.list_classification_datasets(),
    )
    fitting = [
        other.name
        for other in registered
        if other.layout.matches(keys) and other.num_classes == info.num_classes
    ]
    others = [other.name for other in classification_info.LAYOUTS.values() if other.matches(keys)]
    if others:
        use = f"; use dataset {' or '.join(map(repr, fitting))}" if fitting else ""
        return f"{message}: these are {others[0]} records{use}"
    if "image/segmentation/class/encoded" in keys:
        return f"{message}: these are panoptic records"
    return f"{message}: these records are of neither classification layout"


def _parse(record, info: classification_info.ClassificationInfo):
    """A record -> (encoded image, int32 label 0..num_classes-1), the label checked."""
    layout = info.layout
    parsed = tf.io.parse_single_example(
        record,
        {
            layout.image_key: tf.io.FixedLenFeature([], tf.string),
            layout.label_key: tf.io.FixedLenFeature([], tf.int64),
            layout.filename_key: tf.io.FixedLenFeature([], tf.string, default_value=""),
        },
    )
    label = tf.cast(parsed[layout.label_key] - layout.first_label, tf.int32)
    check = tf.debugging.Assert(
        (label >= 0) & (label < info.num_classes),
        [
            f"{layout.label_key} of",
            parsed[layout.filename_key],
            f"is outside 0..{info.num_classes - 1} after subtracting {layout.first_label}:",
            parsed[layout.label_key],
        ],
    )
    with tf.control_dependencies([check]):
        label = tf.identity(label)
    return parsed[layout.image_key], label


def build_classification_dataset(
    *,
    dataset_info: classification_info.ClassificationInfo,
    file_pattern: str | list[str],
    mode: str,
    image_size: int = 224,
    batch_size: int,
    input_context: tf.distribute.InputContext | None = None,
    seed: int | None = None,
    shuffle_buffer: int = 1024,
    cycle_length: int = 64,
    num_parallel_calls: int = AUTOTUNE,
    area_range: tuple[float, float] = preprocessing.AREA_RANGE,
    aspect_ratio_range: tuple[float, float] = preprocessing.ASPECT_RATIO_RANGE,
    resize_method: str = "bicubic",
    eval_crop_fraction: float = preprocessing.EVAL_CROP_FRACTION,
    autoaugment: bool = False,
    drop_remainder: bool | None = None,
    repeat: bool | None = None,
) -> tf.data.Dataset:
    """Builds the batched classification dataset of one input pipeline.

    Training: files shuffled and interleaved, records shuffled and repeated,
    each image randomly cropped, resized and flipped
    (`classification_preprocessing.train_preprocess`). Evaluation: files in
    order, one pass, the 87.5% center crop
    (`classification_preprocessing.eval_preprocess`).

    Args:
      dataset_info: The dataset (its layout and class count).
      file_pattern: Glob pattern(s) of its TFRecord files.
      mode: `train` or `eval`.
      image_size: Side of the square output images.
      batch_size: Global batch size; with `input_context` each pipeline
        batches `input_context.get_per_replica_batch_size(batch_size)` (for
        `strategy.distribute_datasets_from_function`).
      input_context: Shards files by `input_pipeline_id` across
        `num_input_pipelines` hosts (records, when there are fewer files).
      seed: Makes the pipeline repeatable (shuffles and crops; each host
        derives its own seeds from it); `None` draws fresh randomness and
        allows out-of-order parallel processing.
      shuffle_buffer: Records (serialised) held for shuffling in training
        (1024, as the TPU ResNet reference).
      cycle_length: Files read concurrently in training (64, as the reference).
      num_parallel_calls: Parallelism of the per-example map and interleave.
      area_range, aspect_ratio_range: Of the random crops.
      resize_method: `bicubic` (the reference) or `bilinear`.
      eval_crop_fraction: Side of the evaluation crop over the shorter side.
      autoaugment: Applies the photometric policy of `autoaugment.PAPER_POLICY`
        (deeplab2's `simple_classification_policy`) to training images; the
        TPU ResNet recipe does not.
      drop_remainder: Drop a final partial batch; default True in training,
        False in evaluation (every image counts once; the last batch may be
        smaller).
      repeat: Repeat forever; default True in training, False in evaluation.

    Returns:
      A `tf.data.Dataset` of `{IMAGE: [b, image_size, image_size, 3] float32
      in 0..255, LABEL: [b] int32}` (keys from `swiderrnet_tf.common`).

    Raises:
      ValueError: On bad arguments, files that match nothing, or records of
        another layout (`RecordLayoutError`, naming the file).
    """
    if not isinstance(dataset_info, classification_info.ClassificationInfo):
        raise ValueError(
            f"dataset_info must be a ClassificationInfo, got {type(dataset_info).__name__}"
        )
    if mode not in ("train", "eval"):
        raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
    if image_size < 1 or batch_size < 1:
        raise ValueError(
            f"image_size and batch_size must be positive, got {image_size}, {batch_size}"
        )
    if resize_method not in preprocessing.RESIZE_METHODS:
        raise ValueError(
            f"resize_method must be one of {preprocessing.RESIZE_METHODS}, got {resize_method!r}"
        )
    if not 0 < eval_crop_fraction <= 1:
        raise ValueError(f"eval_crop_fraction must be in (0, 1], got {eval_crop_fraction}")
    training = mode == "train"
    drop_remainder = training if drop_remainder is None else drop_remainder
    repeat = training if repeat is None else repeat
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    seeds = pipeline.host_seeds(seed, input_context, 3)
    deterministic = seed is not None or not training

    files = pipeline.list_files(file_pattern)
    check_record_layout(dataset_info, files)
    dataset = pipeline.read_records(
        files,
        training=training,
        repeat=repeat,
        input_context=input_context,
        shuffle_buffer=shuffle_buffer,
        cycle_length=cycle_length,
        num_parallel_calls=num_parallel_calls,
        seeds=seeds[:2],
        deterministic=deterministic,
    )

    if training:
        augment_fn = autoaugment_lib.distort if autoaugment else None

        def train_example(record, example_seed):
            image_bytes, label = _parse(record, dataset_info)
            image = preprocessing.train_preprocess(
                image_bytes,
                example_seed,
                image_size=image_size,
                area_range=area_range,
                aspect_ratio_range=aspect_ratio_range,
                resize_method=resize_method,
                crop_fraction=eval_crop_fraction,
                augment_fn=augment_fn,
            )
            return {common.IMAGE: image, common.LABEL: label}

        # Two int64 draws per example make its `[2]` stateless seed.
        example_seeds = tf.data.Dataset.random(seed=seeds[2]).batch(2)
        dataset = tf.data.Dataset.zip((dataset, example_seeds))
        dataset = dataset.map(
            train_example, num_parallel_calls=num_parallel_calls, deterministic=deterministic
        )
    else:

        def eval_example(record):
            image_bytes, label = _parse(record, dataset_info)
            image = preprocessing.eval_preprocess(
                image_bytes,
                image_size=image_size,
                crop_fraction=eval_crop_fraction,
                resize_method=resize_method,
            )
            return {common.IMAGE: image, common.LABEL: label}

        dataset = dataset.map(eval_example, num_parallel_calls=num_parallel_calls)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.prefetch(AUTOTUNE)
