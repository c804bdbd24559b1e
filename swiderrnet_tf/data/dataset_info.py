"""Facts about a panoptic dataset, kept in one place.

A `DatasetInfo` holds what the model, the targets, the post-processing and the
evaluators need to know about a dataset: its classes and which of them are
things, the label divisor of its panoptic ids, the stuff area limit, the
evaluation scales, and how its TFRecords store classes.

Two class spaces exist:
  * model classes, contiguous `0..num_classes-1`, with `ignore_label` (255) for
    void; the model, the losses, post-processing and the metrics use these;
  * record classes, as deeplab2 writes them into TFRecords: `record class =
    model class + record_class_offset`, and `record_ignore_label` for void
    (COCO and ADE20K keep 0 for void and start their classes at 1).
"""

import dataclasses

IGNORE_LABEL = 255


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Describes one panoptic dataset.

    Attributes:
      name: Registry name, e.g. `cityscapes`.
      num_classes: Number of model classes (void excluded).
      thing_classes: Model class ids that have instances.
      label_divisor: Panoptic id = class * label_divisor + instance id.
      stuff_area_limit: Stuff segments with fewer pixels become void at inference.
      eval_scales: Scales for multi-scale evaluation.
      class_names: One name per model class.
      colors: One RGB colour per model class, for visualisation.
      ignore_label: Model-side void class.
      record_class_offset: Record class id minus model class id.
      record_ignore_label: Class id that marks void in the records.
      splits: Split name -> TFRecord file pattern, relative to the data directory.
    """

    name: str
    num_classes: int
    thing_classes: tuple[int, ...]
    label_divisor: int
    stuff_area_limit: int
    eval_scales: tuple[float, ...]
    class_names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    ignore_label: int = IGNORE_LABEL
    record_class_offset: int = 0
    record_ignore_label: int = IGNORE_LABEL
    splits: tuple[tuple[str, str], ...] = (
        ("train", "train-*.tfrecord"),
        ("val", "val-*.tfrecord"),
    )

    def __post_init__(self):
        where = f"dataset {self.name!r}"
        if self.num_classes <= 0:
            raise ValueError(f"{where}: num_classes must be positive, got {self.num_classes}")
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"{where}: class_names has {len(self.class_names)} entries, "
                f"expected num_classes={self.num_classes}"
            )
        if len(self.colors) != self.num_classes:
            raise ValueError(
                f"{where}: colors has {len(self.colors)} entries, "
                f"expected num_classes={self.num_classes}"
            )
        bad = [c for c in self.thing_classes if not 0 <= c < self.num_classes]
        if bad:
            raise ValueError(f"{where}: thing_classes {bad} are outside 0..{self.num_classes - 1}")
        if 0 <= self.ignore_label < self.num_classes:
            raise ValueError(
                f"{where}: ignore_label {self.ignore_label} collides with a model class"
            )
        if self.label_divisor <= 0:
            raise ValueError(f"{where}: label_divisor must be positive")

    @property
    def is_thing(self) -> tuple[bool, ...]:
        """Per model class, whether it is a thing class."""
        things = set(self.thing_classes)
        return tuple(c in things for c in range(self.num_classes))

    @property
    def stuff_classes(self) -> tuple[int, ...]:
        things = set(self.thing_classes)
        return tuple(c for c in range(self.num_classes) if c not in things)

    @property
    def void_panoptic_id(self) -> int:
        """Panoptic id of void pixels in model space."""
        return self.ignore_label * self.label_divisor

    def split_pattern(self, split: str) -> str:
        """File pattern of a split, relative to the data directory."""
        splits = dict(self.splits)
        if split not in splits:
            raise ValueError(
                f"dataset {self.name!r} has no split {split!r}; known: {sorted(splits)}"
            )
        return splits[split]


_REGISTRY: dict[str, DatasetInfo] = {}


def register_dataset(info: DatasetInfo, overwrite: bool = False) -> DatasetInfo:
    """Adds `info` to the registry under `info.name`."""
    if info.name in _REGISTRY and not overwrite:
        raise ValueError(f"dataset {info.name!r} is already registered")
    _REGISTRY[info.name] = info
    return info


def get_dataset_info(name: str) -> DatasetInfo:
    """Returns the registered `DatasetInfo` called `name`."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def list_datasets() -> list[str]:
    return sorted(_REGISTRY)


# Cityscapes, 19 train ids (cityscapesScripts' labels.py), things 11..18.
_CITYSCAPES_CLASSES = (
    ("road", (128, 64, 128)),
    ("sidewalk", (244, 35, 232)),
    ("building", (70, 70, 70)),
    ("wall", (102, 102, 156)),
    ("fence", (190, 153, 153)),
    ("pole", (153, 153, 153)),
    ("traffic light", (250, 170, 30)),
    ("traffic sign", (220, 220, 0)),
    ("vegetation", (107, 142, 35)),
    ("terrain", (152, 251, 152)),
    ("sky", (70, 130, 180)),
    ("person", (220, 20, 60)),
    ("rider", (255, 0, 0)),
    ("car", (0, 0, 142)),
    ("truck", (0, 0, 70)),
    ("bus", (0, 60, 100)),
    ("train", (0, 80, 100)),
    ("motorcycle", (0, 0, 230)),
    ("bicycle", (119, 11, 32)),
)

CITYSCAPES = register_dataset(
    DatasetInfo(
        name="cityscapes",
        num_classes=19,
        thing_classes=tuple(range(11, 19)),
        label_divisor=1000,
        stuff_area_limit=2048,
        eval_scales=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0),
        class_names=tuple(n for n, _ in _CITYSCAPES_CLASSES),
        colors=tuple(c for _, c in _CITYSCAPES_CLASSES),
    )
)

# The built-in synthetic dataset (`swiderrnet_tf.data.synthetic`): three textured
# stuff classes and three shape classes as things.
SYNTHETIC = register_dataset(
    DatasetInfo(
        name="synthetic",
        num_classes=6,
        thing_classes=(3, 4, 5),
        label_divisor=1000,
        stuff_area_limit=64,
        eval_scales=(0.75, 1.0, 1.25),
        class_names=("sky", "grass", "road", "disc", "box", "triangle"),
        colors=(
            (70, 130, 180),
            (107, 142, 35),
            (128, 64, 128),
            (220, 20, 60),
            (0, 0, 142),
            (250, 170, 30),
        ),
    )
)
