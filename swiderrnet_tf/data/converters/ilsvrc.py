"""The ILSVRC2012 folder layout: its images, their classes, and their examples.

Training images sit in one folder per WordNet synset (`train/n01440764/*.JPEG`).
Validation images (`val/` or `validation/`) sit either in synset folders too,
or flat (`val/ILSVRC2012_val_00000001.JPEG` ...) beside a ground-truth file,
one of:
  * the devkit's `ILSVRC2012_validation_ground_truth.txt` (one ILSVRC2012_ID
    per image, in file-number order) with the devkit's `meta.mat` beside it,
    which maps ILSVRC2012_IDs to synsets (the IDs are NOT in sorted-synset
    order; reading it needs scipy);
  * Kaggle's `LOC_val_solution.csv` (`ImageId,PredictionString`, the synset
    first in the prediction string);
  * the TPU reference's `synset_labels.txt` (one synset per image, in
    file-number order).

Labels are 1..N over the sorted synsets (of `train/`, or of the validation
images when there is no `train/`), as tensorflow/tpu
`tools/datasets/imagenet_to_gcs.py` numbers them. Images are stored as they
are when they are RGB or grayscale JPEGs (as the reference does); anything
else is detected by its content, not its name (ImageNet holds 22 CMYK JPEGs
and a PNG, all named `.JPEG`), and re-encoded as an RGB JPEG.
"""

import csv
import dataclasses
import io
import os
import re

import tensorflow as tf
from absl import logging
from PIL import Image

from swiderrnet_tf.data import classification_info
from swiderrnet_tf.data.converters import panoptic_json

ConversionError = panoptic_json.ConversionError

SYNSET = re.compile(r"n\d{8}")
VAL_NAME = re.compile(r"ILSVRC2012_val_(\d{8})\.[A-Za-z]+")
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
GROUND_TRUTH_FILES = (
    "ILSVRC2012_validation_ground_truth.txt",
    "LOC_val_solution.csv",
    "synset_labels.txt",
)
# Where ground-truth files are looked for, relative to the input folder.
GROUND_TRUTH_FOLDERS = ("", "ILSVRC2012_devkit_t12/data", "ILSVRC2012_devkit_t12")
# Of the few images re-encoded (CMYK, PNG), as the TPU reference does.
REENCODE_QUALITY = 100


@dataclasses.dataclass(frozen=True)
class Item:
    """One image to convert."""

    path: str
    synset: str
    label: int


def _image_files(folder: str) -> list[str]:
    """Sorted image file names in `folder`; other files are skipped with a warning."""
    names = sorted(tf.io.gfile.listdir(folder))
    images = [n for n in names if n.lower().endswith(IMAGE_SUFFIXES)]
    others = [n for n in names if n not in images and not n.startswith(".")]
    if others:
        logging.warning(
            "%s: skipped %d files that are not images (%s)", folder, len(others), others[0]
        )
    return images


def synset_folders(folder: str) -> list[str]:
    """Sorted synset subfolders of `folder`.

    Raises:
      ConversionError: On a subfolder not named like a synset (it would shift
        every label after it).
    """
    names = sorted(n.rstrip("/") for n in tf.io.gfile.listdir(folder))
    # Image names are not stat'ed: a flat validation folder holds 50,000 of them.
    candidates = [n for n in names if not n.lower().endswith(IMAGE_SUFFIXES)]
    folders = [n for n in candidates if tf.io.gfile.isdir(os.path.join(folder, n))]
    bad = [n for n in folders if not SYNSET.fullmatch(n)]
    if bad:
        raise ConversionError(
            f"{os.path.join(folder, bad[0])}: folder not named like a WordNet synset "
            f"(n followed by 8 digits); {len(bad)} such folder(s)"
        )
    return folders


def _items_in_synset_folders(folder: str, labels: dict[str, int]) -> list[Item]:
    items = []
    for synset in synset_folders(folder):
        if synset not in labels:
            raise ConversionError(
                f"{os.path.join(folder, synset)}: synset {synset} is not among the "
                f"{len(labels)} training synsets"
            )
        names = _image_files(os.path.join(folder, synset))
        if not names:
            raise ConversionError(f"{os.path.join(folder, synset)}: no images")
        items += [Item(os.path.join(folder, synset, n), synset, labels[synset]) for n in names]
    return items


def find_ground_truth(input_dir: str) -> str | None:
    """The first ground-truth file found in `input_dir` or its devkit folder."""
    for sub in GROUND_TRUTH_FOLDERS:
        for name in GROUND_TRUTH_FILES:
            path = os.path.join(input_dir, sub, name)
            if tf.io.gfile.exists(path):
                return path
    return None


def _read_lines(path: str) -> list[str]:
    with tf.io.gfile.GFile(path) as f:
        return [line.strip() for line in f.read().splitlines() if line.strip()]


def _devkit_synsets(meta_path: str) -> dict[int, str]:
    """ILSVRC2012_ID -> synset of the leaf classes, from the devkit's meta.mat."""
    if not tf.io.gfile.exists(meta_path):
        raise ConversionError(
            f"{meta_path}: not found; the devkit's ground truth needs its meta.mat to map "
            "ILSVRC2012_IDs to synsets"
        )
    try:
        import scipy.io  # Only this file format needs scipy.
    except ImportError as e:
        raise ConversionError(
            f"{meta_path}: reading meta.mat needs scipy (pip install scipy), or give "
            "LOC_val_solution.csv or synset_labels.txt as --val_labels"
        ) from e
    try:
        with tf.io.gfile.GFile(meta_path, "rb") as f:
            synsets = scipy.io.loadmat(f, squeeze_me=True)["synsets"]
        return {
            int(row["ILSVRC2012_ID"]): str(row["WNID"])
            for row in synsets
            if int(row["num_children"]) == 0
        }
    except (ValueError, KeyError, TypeError) as e:
        raise ConversionError(f"{meta_path}: not the devkit's meta.mat ({e})") from e


def read_ground_truth(path: str, meta_path: str | None = None) -> dict[int, str]:
    """Validation image number (1, 2, ...) -> synset.

    Args:
      path: A ground-truth file (see the module docstring), told apart by name.
      meta_path: The devkit's meta.mat, for the devkit's ground truth; default
        `meta.mat` beside it.

    Raises:
      ConversionError: naming the file and the line on a malformed entry.
    """
    name = os.path.basename(path)
    try:
        if name.endswith(".csv"):
            with tf.io.gfile.GFile(path) as f:
                rows = list(csv.DictReader(f))
            truth = {}
            for line, row in enumerate(rows, start=2):
                match = VAL_NAME.fullmatch((row.get("ImageId") or "") + ".JPEG")
                words = (row.get("PredictionString") or "").split()
                if not match or not words or not SYNSET.fullmatch(words[0]):
                    raise ConversionError(f"{path}:{line}: expected ImageId,PredictionString")
                truth[int(match.group(1))] = words[0]
            return truth
        lines = _read_lines(path)
    except tf.errors.OpError as e:
        raise ConversionError(f"{path}: cannot read: {e.message}") from e
    if all(SYNSET.fullmatch(line) for line in lines):
        return dict(enumerate(lines, start=1))
    if not all(line.isdigit() for line in lines):
        bad = next(i for i, line in enumerate(lines, 1) if not line.isdigit())
        raise ConversionError(f"{path}:{bad}: expected a synset or an ILSVRC2012_ID per line")
    meta_path = meta_path or os.path.join(os.path.dirname(path), "meta.mat")
    synsets = _devkit_synsets(meta_path)
    truth = {}
    for number, line in enumerate(lines, start=1):
        if int(line) not in synsets:
            raise ConversionError(
                f"{path}:{number}: ILSVRC2012_ID {line} is not a class of {meta_path}"
            )
        truth[number] = synsets[int(line)]
    return truth


def train_items(input_dir: str) -> tuple[list[Item], list[str]]:
    """(training images sorted by path, sorted synsets) of `input_dir/train`."""
    folder = os.path.join(input_dir, "train")
    synsets = synset_folders(folder)
    if not synsets:
        raise ConversionError(f"{folder}: no synset folders")
    labels = label_map(synsets)
    return _items_in_synset_folders(folder, labels), synsets


def label_map(synsets: list[str]) -> dict[str, int]:
    """Synset -> record label 1..N in sorted-synset order."""
    return {synset: label for label, synset in enumerate(sorted(synsets), start=1)}


def validation_folder(input_dir: str) -> str:
    for name in ("val", "validation"):
        path = os.path.join(input_dir, name)
        if tf.io.gfile.isdir(path):
            return path
    raise ConversionError(f"{input_dir}: no val/ or validation/ folder")


def validation_items(
    input_dir: str, synsets: list[str] | None, ground_truth: str | None, meta_path: str | None
) -> tuple[list[Item], list[str]]:
    """(validation images sorted by path, sorted synsets used for the labels).

    Args:
      input_dir: The ILSVRC2012 folder.
      synsets: The training synsets, or None to take the validation ones.
      ground_truth: Ground-truth file for a flat folder; None looks for one.
      meta_path: The devkit's meta.mat, if not beside the ground truth.
    """
    folder = validation_folder(input_dir)
    if synset_folders(folder):
        if synsets is None:
            synsets = synset_folders(folder)
        return _items_in_synset_folders(folder, label_map(synsets)), synsets
    ground_truth = ground_truth or find_ground_truth(input_dir)
    if ground_truth is None:
        raise ConversionError(
            f"{folder} holds no synset folders and {input_dir} no ground-truth file "
            f"({', '.join(GROUND_TRUTH_FILES)}); give one with --val_labels"
        )
    truth = read_ground_truth(ground_truth, meta_path)
    if synsets is None:
        synsets = sorted(set(truth.values()))
    labels = label_map(synsets)
    items, seen = [], set()
    for name in _image_files(folder):
        match = VAL_NAME.fullmatch(name)
        number = int(match.group(1)) if match else None
        path = os.path.join(folder, name)
        if number not in truth:
            raise ConversionError(f"{path}: no entry in {ground_truth}")
        if truth[number] not in labels:
            raise ConversionError(
                f"{path}: synset {truth[number]} (from {ground_truth}) is not among the "
                f"{len(labels)} training synsets"
            )
        items.append(Item(path, truth[number], labels[truth[number]]))
        seen.add(number)
    missing = sorted(set(truth) - seen)
    if missing:
        raise ConversionError(
            f"{ground_truth} lists {len(missing)} images missing from {folder}, e.g. "
            f"ILSVRC2012_val_{missing[0]:08d}.JPEG"
        )
    return items, synsets


def clean_image(data: bytes, path: str) -> tuple[bytes, int, int]:
    """(JPEG bytes, height, width): RGB and grayscale JPEGs as they are, others re-encoded.

    Raises:
      ConversionError: naming `path` when the image cannot be decoded.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.format == "JPEG" and image.mode in ("RGB", "L"):
                return data, image.height, image.width
            logging.info("%s: %s %s image, re-encoded as RGB JPEG", path, image.mode, image.format)
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="JPEG", quality=REENCODE_QUALITY)
            return buffer.getvalue(), image.height, image.width
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ConversionError(f"{path}: cannot decode the image: {e}") from e


def build_example(item: Item) -> bytes:
    """The serialised tpu_reference example of one image (picklable for the workers)."""
    try:
        with tf.io.gfile.GFile(item.path, "rb") as f:
            data = f.read()
    except tf.errors.OpError as e:
        raise ConversionError(f"{item.path}: cannot read: {e.message}") from e
    image_bytes, height, width = clean_image(data, item.path)
    return classification_info.encode_reference_example(
        image_bytes,
        label=item.label,
        synset=item.synset,
        filename=os.path.basename(item.path),
        height=height,
        width=width,
    )
