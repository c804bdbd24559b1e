"""Where each dataset keeps its images and panoptic annotations.

A `Layout` names, relative to the dataset's root directory, the panoptic JSON
of a split, the directory of its PNGs and the path of each image, as the
tools that produce them write them:
  * Cityscapes: cityscapesScripts' `preparation/createPanopticImgs.py
    --use-train-id` (category ids are the 19 train ids);
  * COCO panoptic: the 2017 release (`panoptic_annotations_trainval2017.zip`);
  * Mapillary Vistas v1.2: the research release (`training/`, `validation/`),
    also as found in the v2.0 archive, whose v1.2 labels sit in `v1.2/`;
  * ADE20K panoptic: Mask2Former's `datasets/prepare_ade20k_pan_seg.py`, run
    in `ADEChallengeData2016/` (deeplab2's `g3doc/setup/ade20k.md`).

A dataset of one's own in the same COCO panoptic format gets a layout from
explicit paths (`custom_layout`), its JSON categories matched to the classes
of its `DatasetInfo` by name.

Templates may use `{split}` (`train` or `val`), `{folder}` (the split's folder
name), `{file_name}` (the `file_name` of the JSON's `images` entry) and
`{city}` (the part of that file name before its first `_`).
"""

import dataclasses
import os

import tensorflow as tf

from swiderrnet_tf.data import ade20k_classes
from swiderrnet_tf.data import coco_classes
from swiderrnet_tf.data import dataset_info as dataset_info_lib
from swiderrnet_tf.data import mapillary_classes
from swiderrnet_tf.data.converters import panoptic_json


@dataclasses.dataclass(frozen=True)
class Layout:
    """The files of one dataset.

    Attributes:
      dataset: Registry name of the dataset.
      split_folders: Split name -> folder name used in the templates.
      annotations: Candidate (JSON, PNG directory) templates; the first
        whose JSON exists is used.
      image: Image path template.
      category_ids: JSON category id of each model class.
      name_suffix: Removed from image file stems to name the examples.
    """

    dataset: str
    split_folders: tuple[tuple[str, str], ...]
    annotations: tuple[tuple[str, str], ...]
    image: str
    category_ids: tuple[int, ...]
    name_suffix: str = ""

    def _fields(self, split: str) -> dict[str, str]:
        folders = dict(self.split_folders)
        if split not in folders:
            raise panoptic_json.ConversionError(
                f"dataset {self.dataset!r} has no split {split!r}; known: {sorted(folders)}"
            )
        return {"split": split, "folder": folders[split]}

    def annotation_paths(self, input_dir: str, split: str) -> tuple[str, str]:
        """(panoptic JSON, PNG directory) of a split."""
        fields = self._fields(split)
        tried = []
        for json_template, label_template in self.annotations:
            json_path = os.path.join(input_dir, json_template.format(**fields))
            if tf.io.gfile.exists(json_path):
                return json_path, os.path.join(input_dir, label_template.format(**fields))
            tried.append(json_path)
        raise panoptic_json.ConversionError(
            f"no panoptic JSON for {self.dataset!r} split {split!r}; looked for {tried}"
        )

    def read_samples(self, input_dir: str, split: str) -> list[panoptic_json.Sample]:
        """All samples of a split, sorted by name."""
        fields = self._fields(split)
        json_path, label_dir = self.annotation_paths(input_dir, split)

        def image_path(image: dict) -> str:
            file_name = image["file_name"]
            city = file_name.split("_")[0]
            relative = self.image.format(file_name=file_name, city=city, **fields)
            return os.path.join(input_dir, relative)

        return panoptic_json.read_samples(
            json_path,
            dataset_info_lib.get_dataset_info(self.dataset),
            self.category_ids,
            image_path,
            label_dir,
            self.name_suffix,
        )


_TRAIN_VAL = (("train", "train"), ("val", "val"))
_TRAINING_VALIDATION = (("train", "training"), ("val", "validation"))

LAYOUTS = {
    "cityscapes": Layout(
        dataset="cityscapes",
        split_folders=_TRAIN_VAL,
        annotations=(
            (
                "gtFine/cityscapes_panoptic_{split}_trainId.json",
                "gtFine/cityscapes_panoptic_{split}_trainId",
            ),
        ),
        image="leftImg8bit/{split}/{city}/{file_name}",
        category_ids=tuple(range(19)),
        name_suffix="_leftImg8bit",
    ),
    "coco": Layout(
        dataset="coco",
        split_folders=_TRAIN_VAL,
        annotations=(
            ("annotations/panoptic_{split}2017.json", "annotations/panoptic_{split}2017"),
        ),
        image="{split}2017/{file_name}",
        category_ids=tuple(row[0] for row in coco_classes.CLASSES),
    ),
    "mapillary_vistas": Layout(
        dataset="mapillary_vistas",
        split_folders=_TRAINING_VALIDATION,
        annotations=(
            ("{folder}/v1.2/panoptic/panoptic_2018.json", "{folder}/v1.2/panoptic"),
            ("{folder}/panoptic/panoptic_2018.json", "{folder}/panoptic"),
        ),
        image="{folder}/images/{file_name}",
        category_ids=tuple(row[0] for row in mapillary_classes.CLASSES),
    ),
    "ade20k": Layout(
        dataset="ade20k",
        split_folders=_TRAINING_VALIDATION,
        annotations=(("ade20k_panoptic_{split}.json", "ade20k_panoptic_{split}"),),
        image="images/{folder}/{file_name}",
        category_ids=tuple(row[0] for row in ade20k_classes.CLASSES),
    ),
}


def _escape(path: str) -> str:
    return path.replace("{", "{{").replace("}", "}}")


def custom_layout(
    dataset: str, split: str, panoptic_json_path: str, panoptic_dir: str, image_dir: str
) -> Layout:
    """The layout of one split of a registered dataset in COCO panoptic format.

    Args:
      dataset: Registry name (e.g. registered from a description file).
      split: The split these files hold.
      panoptic_json_path: The panoptic JSON; its `categories` must name every
        class of the dataset (`DatasetInfo.class_names`).
      panoptic_dir: Directory of the panoptic PNGs.
      image_dir: Directory of the images (`file_name` of the JSON's images).

    Returns:
      The layout, category ids matched to model classes by name.

    Raises:
      ConversionError: naming the JSON, when a class has no category.
    """
    info = dataset_info_lib.get_dataset_info(dataset)
    categories = panoptic_json.load_json(panoptic_json_path).get("categories", [])
    id_of_name = {c.get("name"): c.get("id") for c in categories}
    missing = [name for name in info.class_names if name not in id_of_name]
    if missing:
        raise panoptic_json.ConversionError(
            f"{panoptic_json_path}: 'categories' has no category named {missing} (classes "
            f"of dataset {dataset!r}); categories are matched to classes by name"
        )
    return Layout(
        dataset=dataset,
        split_folders=((split, split),),
        annotations=((_escape(panoptic_json_path), _escape(panoptic_dir)),),
        image=os.path.join(_escape(image_dir), "{file_name}"),
        category_ids=tuple(id_of_name[name] for name in info.class_names),
    )


def get_layout(dataset: str) -> Layout:
    if dataset not in LAYOUTS:
        raise panoptic_json.ConversionError(
            f"no converter for dataset {dataset!r}; known: {sorted(LAYOUTS)}"
        )
    return LAYOUTS[dataset]
