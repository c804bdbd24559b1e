"""The tf.data input pipeline: records -> augmented crops -> Panoptic-DeepLab targets.

Training (the SWideRNet paper, section 4, on the Panoptic-DeepLab recipe of
deeplab2's `input_reader.py` and `sample_generator.py`): files listed and
sharded per host through `tf.distribute.InputContext`, shuffled, interleaved;
records shuffled and repeated; each example decoded, mapped to model classes,
randomly scaled, cropped, padded and flipped (`preprocessing`), optionally
AutoAugmented with Table 2's policy (`autoaugment`, image only), turned into
targets (`targets`), then batched with `drop_remainder` so every tensor has a
static shape, and prefetched.

Evaluation: files in order, no random ops; images larger than the crop are
resized to fit, every image is padded (bottom, right) to the crop size; the
ground-truth panoptic map (model classes, void `ignore_label * divisor`), the
crowd mask, the size before padding and the image name come along.

Output features (keys from `swiderrnet_tf.common`), per example:
  IMAGE             [crop_h, crop_w, 3] float32 in [0, 255]
  SEMANTIC_LABEL    [crop_h, crop_w] int32, void = ignore_label
  SEMANTIC_WEIGHTS, CENTER_TARGET, CENTER_WEIGHTS, OFFSET_WEIGHTS
                    [crop_h, crop_w] float32
  OFFSET_TARGET     [crop_h, crop_w, 2] float32 (dy, dx)
  PANOPTIC_LABEL    [crop_h, crop_w] int32
  CROWD_MASK        [crop_h, crop_w] bool
and in evaluation also ORIGINAL_SIZE [2] int32 and IMAGE_NAME (string; keep it
on the host).

Deviations from deeplab2:
  1. Randomness is stateless, one seed per example drawn from
     `tf.data.Dataset.random(seed)`: a seeded pipeline yields the same batches
     whatever `num_parallel_calls` is.
  2. The pipeline reads `raw` panoptic labels only; records with `png`
     (semantic-only) labels are rejected with an error naming the file.
"""

import numpy as np
import tensorflow as tf
from absl import logging

from swiderrnet_tf import common
from swiderrnet_tf.data import autoaugment as autoaugment_lib
from swiderrnet_tf.data import dataset_info as dataset_info_lib
from swiderrnet_tf.data import preprocessing
from swiderrnet_tf.data import targets
from swiderrnet_tf.data import tfrecord

AUTOTUNE = tf.data.AUTOTUNE


def list_files(file_pattern: str | list[str]) -> list[str]:
    """Sorted files matching one or more glob patterns.

    Raises:
      ValueError: If a pattern matches nothing.
    """
    patterns = [file_pattern] if isinstance(file_pattern, str) else list(file_pattern)
    files = []
    for pattern in patterns:
        matched = tf.io.gfile.glob(pattern)
        if not matched:
            raise ValueError(f"no TFRecord files match {pattern!r}")
        files.extend(matched)
    return sorted(set(files))


def host_seeds(seed: int | None, input_context, count: int) -> list[int | None]:
    """`count` seeds of this host's pipeline derived from `seed` (all None without one).

    Hosts sharing a seed must not draw the same augmentations, so the host's
    pipeline id is mixed in.
    """
    if seed is None:
        return [None] * count
    host = 0 if input_context is None else input_context.input_pipeline_id
    return [int(s) for s in np.random.SeedSequence([seed, host]).generate_state(count)]


def read_records(
    files: list[str],
    *,
    training: bool,
    repeat: bool,
    input_context: tf.distribute.InputContext | None,
    shuffle_buffer: int,
    cycle_length: int,
    num_parallel_calls: int,
    seeds: tuple[int | None, int | None],
    deterministic: bool,
) -> tf.data.Dataset:
    """The serialised records of one input pipeline.

    Files are sharded by `input_context.input_pipeline_id` (records, when
    there are fewer files than pipelines). Training shuffles the files,
    interleaves `cycle_length` of them and shuffles `shuffle_buffer` records;
    evaluation reads the files in order.

    Args:
      files: TFRecord files, sorted.
      training: Shuffle and interleave.
      repeat: Repeat forever.
      input_context: Of this pipeline, or None for a single one.
      shuffle_buffer: Records held for shuffling in training.
      cycle_length: Files read concurrently in training.
      num_parallel_calls: Parallelism of the interleave.
      seeds: Of the file shuffle and of the record shuffle (None: fresh).
      deterministic: Keep the interleave's order.

    Returns:
      A dataset of scalar strings.
    """
    dataset = tf.data.Dataset.from_tensor_slices(files)
    shard_records = False
    if input_context is not None and input_context.num_input_pipelines > 1:
        pipelines, index = input_context.num_input_pipelines, input_context.input_pipeline_id
        if len(files) >= pipelines:
            dataset = dataset.shard(pipelines, index)
        else:
            logging.warning(
                "%d files for %d input pipelines: sharding records instead of files "
                "(every host reads every file)",
                len(files),
                pipelines,
            )
            shard_records = True
    if training:
        dataset = dataset.shuffle(len(files), seed=seeds[0], reshuffle_each_iteration=True)
        cycle_length = min(cycle_length, len(files))
        # tf.data refuses more parallel calls than files in the cycle.
        if num_parallel_calls != tf.data.AUTOTUNE:
            num_parallel_calls = min(num_parallel_calls, cycle_length)
        dataset = dataset.interleave(
            tf.data.TFRecordDataset,
            cycle_length=cycle_length,
            num_parallel_calls=num_parallel_calls,
            deterministic=deterministic,
        )
    else:
        dataset = dataset.flat_map(tf.data.TFRecordDataset)
    if shard_records:
        dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seeds[1], reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    return dataset


def _decode(serialized, info):
    """Parses a record into a uint8 image, a model-space panoptic map and its name."""
    example = tfrecord.decode_example(serialized)
    label_format = example["label_format"]
    check = tf.debugging.Assert(
        tf.equal(label_format, tfrecord.LABEL_FORMAT_RAW),
        [
            "panoptic training needs raw panoptic labels; the label of",
            example["filename"],
            "has format",
            label_format,
        ],
    )
    with tf.control_dependencies([check]):
        panoptic = preprocessing.to_model_panoptic(example["label"], info, example["filename"])
    return example["image"], panoptic, example["filename"]


def _validate(crop_size, batch_size, mode, info):
    if mode not in ("train", "eval"):
        raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
    if len(crop_size) != 2 or min(crop_size) < 1:
        raise ValueError(f"crop_size must be (height, width) of positive ints, got {crop_size}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if not isinstance(info, dataset_info_lib.DatasetInfo):
        raise ValueError(f"dataset_info must be a DatasetInfo, got {type(info).__name__}")
    preprocessing.check_label_range(info)


def build_dataset(
    *,
    dataset_info: dataset_info_lib.DatasetInfo,
    file_pattern: str | list[str],
    mode: str,
    crop_size: tuple[int, int],
    batch_size: int,
    input_context: tf.distribute.InputContext | None = None,
    shuffle_buffer: int = 128,
    min_scale: float = 0.5,
    max_scale: float = 2.0,
    scale_step: float = 0.1,
    autoaugment: bool = False,
    seed: int | None = None,
    num_parallel_calls: int = AUTOTUNE,
    cycle_length: int = 8,
    small_instance_area: int = 4096,
    small_instance_weight: float = 3.0,
    center_sigma: float = 8.0,
    drop_remainder: bool | None = None,
    repeat: bool | None = None,
) -> tf.data.Dataset:
    """Builds the batched dataset of one host.

    Args:
      dataset_info: The dataset's classes and label conventions.
      file_pattern: Glob pattern(s) of TFRecord files (deeplab2 schema).
      mode: `train` (augmented, shuffled, repeated) or `eval`.
      crop_size: `(height, width)` of every output image.
      batch_size: Global batch size; with `input_context` each host batches
        `input_context.get_per_replica_batch_size(batch_size)` (use with
        `strategy.distribute_datasets_from_function`).
      input_context: Shards files by `input_pipeline_id` across
        `num_input_pipelines` hosts (records, when there are fewer files).
      shuffle_buffer: Records (serialised) held for shuffling in training.
      min_scale, max_scale, scale_step: Random-scale candidates (training).
      autoaugment: Applies the paper's Table 2 policy to training images.
      seed: Makes training repeatable (shuffles and augmentations; each
        host derives its own seeds from it); `None` draws fresh randomness
        and allows out-of-order parallel processing.
      num_parallel_calls: Parallelism of the per-example map and interleave.
      cycle_length: Files read concurrently in training.
      small_instance_area, small_instance_weight, center_sigma: Target
        parameters (see `targets.generate_targets`).
      drop_remainder: Drop a final partial batch; default True in training,
        False in evaluation (every image is evaluated; the batch dimension
        is then unknown).
      repeat: Repeat forever; default True in training, False in evaluation.

    Returns:
      A `tf.data.Dataset` of feature dicts (see the module docstring),
      batched to `[batch, ...]`.
    """
    _validate(crop_size, batch_size, mode, dataset_info)
    training = mode == "train"
    drop_remainder = training if drop_remainder is None else drop_remainder
    repeat = training if repeat is None else repeat
    crop_size = (int(crop_size[0]), int(crop_size[1]))
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    seeds = host_seeds(seed, input_context, 3)
    deterministic = seed is not None or not training

    dataset = read_records(
        list_files(file_pattern),
        training=training,
        repeat=repeat,
        input_context=input_context,
        shuffle_buffer=shuffle_buffer,
        cycle_length=cycle_length,
        num_parallel_calls=num_parallel_calls,
        seeds=seeds[:2],
        deterministic=deterministic,
    )

    target_options = dict(
        dataset_info=dataset_info,
        center_sigma=center_sigma,
        small_instance_area=small_instance_area,
        small_instance_weight=small_instance_weight,
    )
    void_id = dataset_info.void_panoptic_id
    if training:
        augment_fn = autoaugment_lib.distort if autoaugment else None

        def train_example(record, example_seed):
            image, panoptic, _ = _decode(record, dataset_info)
            image, panoptic = preprocessing.train_preprocess(
                image,
                panoptic,
                seed=example_seed,
                crop_size=crop_size,
                void_id=void_id,
                min_scale=min_scale,
                max_scale=max_scale,
                scale_step=scale_step,
                augment_fn=augment_fn,
            )
            return _features(image, panoptic, target_options)

        # Two int64 draws per example make its `[2]` stateless seed.
        example_seeds = tf.data.Dataset.random(seed=seeds[2]).batch(2)
        dataset = tf.data.Dataset.zip((dataset, example_seeds))
        dataset = dataset.map(
            train_example, num_parallel_calls=num_parallel_calls, deterministic=deterministic
        )
    else:

        def eval_example(record):
            image, panoptic, name = _decode(record, dataset_info)
            image, panoptic, size = preprocessing.eval_preprocess(
                image, panoptic, crop_size=crop_size, void_id=void_id
            )
            features = _features(image, panoptic, target_options)
            features[common.ORIGINAL_SIZE] = size
            features[common.IMAGE_NAME] = name
            return features

        dataset = dataset.map(eval_example, num_parallel_calls=num_parallel_calls)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.prefetch(AUTOTUNE)


def _features(image, panoptic, target_options):
    features = targets.generate_targets(panoptic, **target_options)
    features[common.IMAGE] = image
    features[common.PANOPTIC_LABEL] = panoptic
    return features
