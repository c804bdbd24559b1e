"""Facts about a panoptic dataset, kept in one place, and the dataset registry.

A `DatasetInfo` holds what the model, the targets, the post-processing and the
evaluators need to know about a dataset: its classes and which of them are
things, the label divisor of its panoptic ids, the merge settings (stuff area
limit, center threshold, NMS window, center slots), the evaluation scales, the
category id of each class in its panoptic JSON, and how its TFRecords store
classes.

Two class spaces exist:
  * model classes, contiguous `0..num_classes-1`, with `ignore_label` (255) for
    void; the model, the losses, post-processing and the metrics use these;
  * record classes, as deeplab2 writes them into TFRecords: `record class =
    model class + record_class_offset`, and `record_ignore_label` for void
    (COCO and ADE20K keep 0 for void and start their classes at 1).

Built-in datasets (facts from the paper, section 4, and deeplab2's
`data/dataset.py`): `cityscapes`, `coco`, `mapillary_vistas`, `ade20k` and
`synthetic`. A dataset of one's own registers without code edits, from a JSON
or YAML description file (`load_dataset_info`, `register_dataset_file`) or
from gin (`register_custom_dataset`); `make_dataset_info` lists the fields.

Deliberate deviations from deeplab2:
  1. Mapillary Vistas, which deeplab2 does not ship, stores its records like
     COCO: record class = category id of its panoptic JSON (1..65), 0 = void.
"""

import dataclasses
import json
import pathlib

import gin

from swiderrnet_tf.data import ade20k_classes
from swiderrnet_tf.data import coco_classes
from swiderrnet_tf.data import mapillary_classes
from swiderrnet_tf.postprocess import merge_defaults

IGNORE_LABEL = merge_defaults.VOID_LABEL
_INT32_MAX = 2**31 - 1


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
      center_threshold: Center heatmap values at or below it are not centers.
      nms_kernel: Odd window of the center NMS (deeplab2: 13 Cityscapes, 41 COCO).
      keep_k_centers: Most centers per image (static shapes need a bound).
      category_ids: Category id of each model class in the dataset's panoptic
        JSON (COCO's sparse 1..200, ...); empty means the model class ids.
      server_category_ids: Category id of each model class in the files for
        the benchmark's test server, where it differs from `category_ids`
        (Cityscapes: the label ids 7..33 of cityscapesScripts' `labels.py`,
        while its training JSON uses train ids); empty means `category_ids`.
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
        # deeplab2's name for a benchmark's test split (COCO test-dev), unlabeled.
        ("test", "test-*.tfrecord"),
    )
    center_threshold: float = merge_defaults.CENTER_THRESHOLD
    nms_kernel: int = merge_defaults.NMS_KERNEL
    keep_k_centers: int = merge_defaults.KEEP_K_CENTERS
    category_ids: tuple[int, ...] = ()
    server_category_ids: tuple[int, ...] = ()

    def __post_init__(self):
        where = f"dataset {self.name!r}"
        if not self.category_ids:
            object.__setattr__(self, "category_ids", tuple(range(self.num_classes)))
        if not self.server_category_ids:
            object.__setattr__(self, "server_category_ids", self.category_ids)
        for key in ("category_ids", "server_category_ids"):
            ids = getattr(self, key)
            if len(ids) != self.num_classes:
                raise ValueError(
                    f"{where}: {key} has {len(ids)} entries, "
                    f"expected num_classes={self.num_classes}"
                )
            if len(set(ids)) != self.num_classes:
                raise ValueError(f"{where}: {key} has duplicates: {ids}")
        if self.nms_kernel < 1 or self.nms_kernel % 2 == 0:
            raise ValueError(f"{where}: nms_kernel must be odd and positive, got {self.nms_kernel}")
        if self.keep_k_centers < 1 or self.keep_k_centers >= self.label_divisor:
            raise ValueError(
                f"{where}: keep_k_centers must lie in 1..label_divisor-1, got {self.keep_k_centers}"
            )
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
        bad = [c for c in self.colors if len(c) != 3 or not all(0 <= v <= 255 for v in c)]
        if bad:
            raise ValueError(f"{where}: colors {bad[:3]} are not RGB triples in 0..255")
        bad = [c for c in self.thing_classes if not 0 <= c < self.num_classes]
        if bad:
            raise ValueError(f"{where}: thing_classes {bad} are outside 0..{self.num_classes - 1}")
        if len(set(self.thing_classes)) != len(self.thing_classes):
            raise ValueError(f"{where}: thing_classes has duplicates: {self.thing_classes}")
        if 0 <= self.ignore_label < self.num_classes:
            raise ValueError(
                f"{where}: ignore_label {self.ignore_label} collides with a model class"
            )
        if self.label_divisor <= 0:
            raise ValueError(f"{where}: label_divisor must be positive")
        if self.stuff_area_limit < 0:
            raise ValueError(f"{where}: stuff_area_limit must be >= 0")
        if not self.eval_scales or min(self.eval_scales) <= 0:
            raise ValueError(f"{where}: eval_scales must be positive, got {self.eval_scales}")
        first, last = self.record_class_offset, self.record_class_offset + self.num_classes - 1
        if first < 0 or first <= self.record_ignore_label <= last or self.record_ignore_label < 0:
            raise ValueError(
                f"{where}: record classes {first}..{last} and record_ignore_label "
                f"{self.record_ignore_label} must be non-negative and distinct"
            )
        largest = max(last, self.record_ignore_label, self.ignore_label)
        if (largest + 1) * self.label_divisor - 1 > _INT32_MAX:
            raise ValueError(
                f"{where}: class {largest} * label_divisor {self.label_divisor} overflows int32"
            )

    @property
    def is_thing(self) -> tuple[bool, ...]:
        """Per model class, whether it is a thing class."""
        things = set(self.thing_classes)
        return tuple(c in things for c in range(self.num_classes))

    @property
    def stuff_classes(self) -> tuple[int, ...]:
        things = set(self.thing_classes)
        return tuple(c for c in range(self.num_classes) if c not in things)

    def merge_settings(self) -> dict:
        """Every setting of the panoptic merge for this dataset.

        Returns:
          Keyword arguments of `postprocess.panoptic_merge.panoptic_merge`
          (and `PanopticMerge`, `CanvasMerge`): `thing_classes`,
          `label_divisor`, `stuff_area_limit`, `void_label`,
          `center_threshold`, `nms_kernel`, `keep_k_centers`.
        """
        return dict(
            thing_classes=self.thing_classes,
            label_divisor=self.label_divisor,
            stuff_area_limit=self.stuff_area_limit,
            void_label=self.ignore_label,
            center_threshold=self.center_threshold,
            nms_kernel=self.nms_kernel,
            keep_k_centers=self.keep_k_centers,
        )

    @property
    def void_panoptic_id(self) -> int:
        """Panoptic id of void pixels in model space."""
        return self.ignore_label * self.label_divisor

    @property
    def record_void_panoptic_id(self) -> int:
        """Panoptic id of void pixels in the records."""
        return self.record_ignore_label * self.label_divisor

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
    """Adds `info` to the registry under `info.name`.

    Registering an identical `DatasetInfo` again is a no-op, so a gin file or a
    description file may be loaded more than once.
    """
    known = _REGISTRY.get(info.name)
    if known is not None and known != info and not overwrite:
        raise ValueError(f"dataset {info.name!r} is already registered with different facts")
    _REGISTRY[info.name] = info
    return info


def get_dataset_info(name: str) -> DatasetInfo:
    """Returns the registered `DatasetInfo` called `name`."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def list_datasets() -> list[str]:
    return sorted(_REGISTRY)


# Custom datasets -------------------------------------------------------------

_REQUIRED_KEYS = (
    "name",
    "class_names",
    "thing_classes",
    "label_divisor",
    "stuff_area_limit",
    "eval_scales",
)
_OPTIONAL_KEYS = (
    "colors",
    "ignore_label",
    "record_class_offset",
    "record_ignore_label",
    "splits",
    "center_threshold",
    "nms_kernel",
    "keep_k_centers",
    "category_ids",
)


def default_colors(num_classes: int) -> tuple[tuple[int, int, int], ...]:
    """Distinct colours for `num_classes` classes (the PASCAL VOC colour map)."""
    colors = []
    for label in range(1, num_classes + 1):
        rgb = [0, 0, 0]
        value = label
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((value >> channel) & 1) << shift
            value >>= 3
        colors.append(tuple(rgb))
    return tuple(colors)


def _check_int(source, key, value, minimum=0):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{source}: field {key!r} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_list(source, key, value, check_item):
    if isinstance(value, str | bytes | dict) or not hasattr(value, "__iter__"):
        raise ValueError(f"{source}: field {key!r} must be a list, got {value!r}")
    return tuple(check_item(f"{key}[{i}]", item) for i, item in enumerate(value))


def make_dataset_info(source: str = "custom dataset", **fields) -> DatasetInfo:
    """Builds a `DatasetInfo` from plain values, checking every field.

    The keys are those of a description file: `name` (str), `class_names`
    (list of str, one per model class), `thing_classes` (list of model class
    ids), `label_divisor`, `stuff_area_limit` (ints), `eval_scales` (list of
    numbers) and optionally `colors` (list of [r, g, b]; default: the PASCAL
    VOC colour map), `ignore_label` (default 255), `record_class_offset`
    (default 0), `record_ignore_label` (default 255) and `splits` (mapping of
    split name to TFRecord pattern; default `train-*.tfrecord`,
    `val-*.tfrecord`), the merge settings `center_threshold` (number),
    `nms_kernel`, `keep_k_centers` (ints; defaults 0.1, 7, 200) and
    `category_ids` (list of ints: each class's id in the dataset's panoptic
    JSON; default the model class ids).

    Args:
      source: Where the values come from, named in every error.
      **fields: The values.

    Returns:
      The `DatasetInfo`.

    Raises:
      ValueError: naming `source` and the field, on a missing, unknown or
        malformed field.
    """
    missing = [k for k in _REQUIRED_KEYS if k not in fields]
    if missing:
        raise ValueError(f"{source}: missing required field(s) {missing}")
    unknown = sorted(set(fields) - set(_REQUIRED_KEYS) - set(_OPTIONAL_KEYS))
    if unknown:
        known = sorted(_REQUIRED_KEYS + _OPTIONAL_KEYS)
        raise ValueError(f"{source}: unknown field(s) {unknown}; known: {known}")
    name = fields["name"]
    if not isinstance(name, str) or not name:
        raise ValueError(f"{source}: field 'name' must be a non-empty string, got {name!r}")

    def check_name(key, item):
        if not isinstance(item, str):
            raise ValueError(f"{source}: field {key!r} must be a string, got {item!r}")
        return item

    def check_class(key, item):
        return _check_int(source, key, item)

    def check_scale(key, item):
        if isinstance(item, bool) or not isinstance(item, int | float) or item <= 0:
            raise ValueError(f"{source}: field {key!r} must be a positive number, got {item!r}")
        return float(item)

    def check_color(key, item):
        rgb = _check_list(source, key, item, lambda k, v: _check_int(source, k, v))
        if len(rgb) != 3 or max(rgb) > 255:
            raise ValueError(f"{source}: field {key!r} must be [r, g, b] in 0..255, got {item!r}")
        return rgb

    class_names = _check_list(source, "class_names", fields["class_names"], check_name)
    kwargs = {
        "name": name,
        "num_classes": len(class_names),
        "class_names": class_names,
        "thing_classes": _check_list(source, "thing_classes", fields["thing_classes"], check_class),
        "label_divisor": _check_int(source, "label_divisor", fields["label_divisor"], 1),
        "stuff_area_limit": _check_int(source, "stuff_area_limit", fields["stuff_area_limit"]),
        "eval_scales": _check_list(source, "eval_scales", fields["eval_scales"], check_scale),
    }
    if fields.get("colors") is not None:
        kwargs["colors"] = _check_list(source, "colors", fields["colors"], check_color)
    else:
        kwargs["colors"] = default_colors(len(class_names))
    for key in ("ignore_label", "record_class_offset", "record_ignore_label"):
        if key in fields:
            kwargs[key] = _check_int(source, key, fields[key])
    for key in ("nms_kernel", "keep_k_centers"):
        if key in fields:
            kwargs[key] = _check_int(source, key, fields[key], 1)
    if "center_threshold" in fields:
        value = fields["center_threshold"]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{source}: field 'center_threshold' must be a number, got {value!r}")
        kwargs["center_threshold"] = float(value)
    if "category_ids" in fields:
        kwargs["category_ids"] = _check_list(
            source, "category_ids", fields["category_ids"], check_class
        )
    if "splits" in fields:
        splits = fields["splits"]
        if not isinstance(splits, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in splits.items()
        ):
            raise ValueError(
                f"{source}: field 'splits' must map split names to file patterns, got {splits!r}"
            )
        kwargs["splits"] = tuple(splits.items())
    try:
        return DatasetInfo(**kwargs)
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from e


def load_dataset_info(path: str | pathlib.Path) -> DatasetInfo:
    """Reads a dataset description from a JSON (`.json`) or YAML file.

    Args:
      path: The file; its keys are those of `make_dataset_info`.

    Returns:
      The `DatasetInfo` (not registered; see `register_dataset_file`).

    Raises:
      ValueError: naming the file (and the field) when it cannot be read or
        is malformed.
    """
    path = pathlib.Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"{path}: cannot read the dataset description: {e}") from e
    if path.suffix.lower() == ".json":
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON: {e}") from e
    elif path.suffix.lower() in (".yaml", ".yml"):
        # Imported here so that JSON descriptions work without PyYAML.
        import yaml

        try:
            fields = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML: {e}") from e
    else:
        raise ValueError(f"{path}: a dataset description must end in .json, .yaml or .yml")
    if not isinstance(fields, dict):
        raise ValueError(f"{path}: expected a mapping of fields at the top level")
    return make_dataset_info(source=str(path), **fields)


@gin.configurable
def register_dataset_file(path: str, overwrite: bool = False) -> str:
    """Registers the dataset described in a JSON or YAML file; returns its name.

    In gin: `train.dataset_name = @register_dataset_file()` with
    `register_dataset_file.path = "/data/mine.yaml"`.
    """
    return register_dataset(load_dataset_info(path), overwrite=overwrite).name


@gin.configurable
def register_custom_dataset(overwrite: bool = False, **fields) -> str:
    """Registers a dataset given field by field (see `make_dataset_info`).

    In gin, bind the fields and pass the call where a dataset name is expected:
      register_custom_dataset.name = "mine"
      register_custom_dataset.class_names = ["ground", "tree", "car"]
      register_custom_dataset.thing_classes = [2]
      ...
      train.dataset_name = @register_custom_dataset()

    Returns:
      The registered name.
    """
    info = make_dataset_info(source="register_custom_dataset", **fields)
    return register_dataset(info, overwrite=overwrite).name


# Built-in datasets -----------------------------------------------------------

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

_SCALES_TO_2 = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
_SCALES_TO_1_5 = (0.5, 0.75, 1.0, 1.25, 1.5)

CITYSCAPES = register_dataset(
    DatasetInfo(
        name="cityscapes",
        num_classes=19,
        thing_classes=tuple(range(11, 19)),
        label_divisor=1000,
        stuff_area_limit=2048,
        eval_scales=_SCALES_TO_2,
        class_names=tuple(n for n, _ in _CITYSCAPES_CLASSES),
        colors=tuple(c for _, c in _CITYSCAPES_CLASSES),
        # deeplab2's Cityscapes evaluator settings.
        nms_kernel=13,
        keep_k_centers=400,
        # The JSON of cityscapesScripts' createPanopticImgs.py --use-train-id.
        category_ids=tuple(range(19)),
        # The test server's: label ids of cityscapesScripts' labels.py (road 7 ..
        # sky 23, person 24 .. bicycle 33).
        server_category_ids=(7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23)
        + (24, 25, 26, 27, 28, 31, 32, 33),
    )
)


def _from_table(name: str, table, **facts) -> DatasetInfo:
    """A DatasetInfo from a class table of (source id, name, colour, is thing)."""
    return DatasetInfo(
        name=name,
        num_classes=len(table),
        thing_classes=tuple(i for i, row in enumerate(table) if row[3]),
        class_names=tuple(row[1] for row in table),
        colors=tuple(row[2] for row in table),
        category_ids=tuple(row[0] for row in table),
        **facts,
    )


# deeplab2's COCO records: 0 = void, classes 1..133 with things 1..80.
COCO = register_dataset(
    _from_table(
        "coco",
        coco_classes.CLASSES,
        label_divisor=256,
        stuff_area_limit=4096,
        eval_scales=_SCALES_TO_1_5,
        record_class_offset=1,
        record_ignore_label=0,
        # deeplab2's COCO NMS window; 200 center slots (not its 400): instance
        # ids must stay below the label divisor 256.
        nms_kernel=41,
        keep_k_centers=200,
    )
)

MAPILLARY_VISTAS = register_dataset(
    _from_table(
        "mapillary_vistas",
        mapillary_classes.CLASSES,
        label_divisor=1000,
        stuff_area_limit=4096,
        eval_scales=_SCALES_TO_2,
        record_class_offset=1,
        record_ignore_label=0,
        # Cityscapes' settings: street scenes at the same resolution.
        nms_kernel=13,
        keep_k_centers=400,
    )
)

# deeplab2's ADE20K records: 0 = void, classes 1..150.
ADE20K = register_dataset(
    _from_table(
        "ade20k",
        ade20k_classes.CLASSES,
        label_divisor=1000,
        stuff_area_limit=4096,
        eval_scales=_SCALES_TO_1_5,
        record_class_offset=1,
        record_ignore_label=0,
        # COCO's settings: images of the same size.
        nms_kernel=41,
        keep_k_centers=400,
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
        # At most 6 shapes (and a crowd region) per 129x129 image.
        nms_kernel=7,
        keep_k_centers=32,
    )
)
