"""Facts about classification datasets (ImageNet-1k first), their record layouts, a registry.

A `ClassificationInfo` says what the trainer and the input pipeline need to
know about a classification dataset: its class count, the layout of its
TFRecords, the file pattern and (where known) the image count of each split.
It is looked up by name (`get_classification_info`), like the panoptic
`dataset_info.DatasetInfo`s.

Record layouts:
  * `tpu_reference`: as tensorflow/tpu `tools/datasets/imagenet_to_gcs.py`
    (and `python -m swiderrnet_tf.data.convert_imagenet`) writes them:
    `image/encoded` (JPEG), `image/class/label` 1..num_classes in sorted-synset
    order, `image/class/synset`, `image/filename`, `image/height`,
    `image/width`, `image/channels`, `image/colorspace`, `image/format`; files
    `train-00000-of-01024` .. and `validation-00000-of-00128` ...
  * `tfds`: TensorFlow Datasets' `imagenet2012` (version 5): `image` (JPEG),
    `label` 0..999, `file_name`; files
    `imagenet2012-train.tfrecord-00000-of-01024` .. and
    `imagenet2012-validation.tfrecord-00000-of-00064` ..., in
    `~/tensorflow_datasets/imagenet2012/5.1.0/` (point the data folder there).
Both hold some grayscale JPEGs (the reference converter stores them as they
are); the input pipeline decodes every image to RGB.

Built-in datasets: `imagenet2012` (tpu_reference), `imagenet2012_tfds` (tfds)
and `synthetic_classification` (`classification_synthetic`, generated on
first use). The splits are called `train` and `val` as for every dataset of
this project; `val` is ImageNet's validation set (the files named
`validation`). A dataset of one's own registers from gin with
`register_classification_dataset`.
"""

import dataclasses

import gin
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class RecordLayout:
    """Where a classification record keeps its image and label.

    Attributes:
      name: `tpu_reference` or `tfds`.
      image_key: Feature holding the encoded image.
      label_key: int64 feature holding the class.
      first_label: Record label of model class 0.
      filename_key: Feature naming the image (used in error messages).
    """

    name: str
    image_key: str
    label_key: str
    first_label: int
    filename_key: str

    def matches(self, keys) -> bool:
        return self.image_key in keys and self.label_key in keys


TPU_REFERENCE = RecordLayout(
    "tpu_reference", "image/encoded", "image/class/label", 1, "image/filename"
)
TFDS = RecordLayout("tfds", "image", "label", 0, "file_name")
LAYOUTS = {layout.name: layout for layout in (TPU_REFERENCE, TFDS)}

# Features of the tpu_reference layout beyond the image and the label.
SYNSET_KEY = "image/class/synset"


@dataclasses.dataclass(frozen=True)
class ClassificationInfo:
    """Describes one classification dataset.

    Attributes:
      name: Registry name, e.g. `imagenet2012`.
      num_classes: Number of classes; model labels are 0..num_classes-1.
      layout: How its records store images and labels.
      splits: Split name -> TFRecord file pattern, relative to the data folder.
      split_sizes: Split name -> number of images, where known.
    """

    name: str
    num_classes: int
    layout: RecordLayout
    splits: tuple[tuple[str, str], ...]
    split_sizes: tuple[tuple[str, int], ...] = ()

    def __post_init__(self):
        if self.num_classes < 2:
            raise ValueError(f"dataset {self.name!r}: num_classes must be >= 2")
        unknown = set(dict(self.split_sizes)) - set(dict(self.splits))
        if unknown:
            raise ValueError(f"dataset {self.name!r}: split_sizes of unknown splits {unknown}")

    def split_pattern(self, split: str) -> str:
        """File pattern of a split, relative to the data folder."""
        splits = dict(self.splits)
        if split not in splits:
            raise ValueError(
                f"dataset {self.name!r} has no split {split!r}; known: {sorted(splits)}"
            )
        return splits[split]

    def split_size(self, split: str) -> int | None:
        """Number of images of a split, or None where unknown."""
        self.split_pattern(split)
        return dict(self.split_sizes).get(split)


_REGISTRY: dict[str, ClassificationInfo] = {}


def register_classification_info(info: ClassificationInfo, overwrite: bool = False):
    """Adds `info` to the registry; registering identical facts again is a no-op."""
    known = _REGISTRY.get(info.name)
    if known is not None and known != info and not overwrite:
        raise ValueError(f"classification dataset {info.name!r} is already registered")
    _REGISTRY[info.name] = info
    return info


def get_classification_info(name: str) -> ClassificationInfo:
    """Returns the registered `ClassificationInfo` called `name`."""
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown classification dataset {name!r}; registered: {sorted(_REGISTRY)}"
        )
    return _REGISTRY[name]


def list_classification_datasets() -> list[str]:
    return sorted(_REGISTRY)


@gin.configurable
def register_classification_dataset(
    name: str = gin.REQUIRED,
    num_classes: int = gin.REQUIRED,
    layout: str = "tpu_reference",
    train_pattern: str = "train-?????-of-?????",
    val_pattern: str = "validation-?????-of-?????",
) -> str:
    """Registers a classification dataset of one's own; returns its name.

    E.g. 100 ImageNet classes converted by `convert_imagenet` from a folder
    holding only them: in gin,
      register_classification_dataset.name = "imagenet100"
      register_classification_dataset.num_classes = 100
    and pass `@register_classification_dataset()` where a dataset name is
    expected.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
    info = ClassificationInfo(
        name=name,
        num_classes=num_classes,
        layout=LAYOUTS[layout],
        splits=(("train", train_pattern), ("val", val_pattern)),
    )
    return register_classification_info(info).name


IMAGENET2012 = register_classification_info(
    ClassificationInfo(
        name="imagenet2012",
        num_classes=1000,
        layout=TPU_REFERENCE,
        splits=(("train", "train-?????-of-?????"), ("val", "validation-?????-of-?????")),
        split_sizes=(("train", 1_281_167), ("val", 50_000)),
    )
)
IMAGENET2012_TFDS = register_classification_info(
    ClassificationInfo(
        name="imagenet2012_tfds",
        num_classes=1000,
        layout=TFDS,
        splits=(
            ("train", "imagenet2012-train.tfrecord-?????-of-?????"),
            ("val", "imagenet2012-validation.tfrecord-?????-of-?????"),
        ),
        split_sizes=(("train", 1_281_167), ("val", 50_000)),
    )
)
# The built-in synthetic set (`classification_synthetic`); its sizes are parameters.
SYNTHETIC_CLASSIFICATION = register_classification_info(
    ClassificationInfo(
        name="synthetic_classification",
        num_classes=10,
        layout=TPU_REFERENCE,
        splits=(("train", "train-?????-of-?????"), ("val", "validation-?????-of-?????")),
    )
)


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int64(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def encode_reference_example(
    image_bytes: bytes, *, label: int, synset: str, filename: str, height: int, width: int
) -> bytes:
    """One serialised example of the tpu_reference layout.

    Args:
      image_bytes: The JPEG.
      label: Record label, 1..num_classes.
      synset: WordNet id of the class, e.g. `n01440764`.
      filename: Base name of the image file.
      height, width: Image size in pixels.

    Returns:
      The serialised `tf.train.Example` (deterministic bytes).
    """
    feature = {
        "image/height": _int64(height),
        "image/width": _int64(width),
        "image/colorspace": _bytes(b"RGB"),
        "image/channels": _int64(3),
        TPU_REFERENCE.label_key: _int64(label),
        SYNSET_KEY: _bytes(synset.encode("utf-8")),
        "image/format": _bytes(b"JPEG"),
        TPU_REFERENCE.filename_key: _bytes(filename.encode("utf-8")),
        TPU_REFERENCE.image_key: _bytes(image_bytes),
    }
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString(deterministic=True)
