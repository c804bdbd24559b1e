"""COCO-format panoptic annotations (JSON + PNG) to deeplab2-style examples.

Every dataset converted here ships its panoptic labels the way panopticapi
defines them: a JSON file listing, per image, segments (`id`, `category_id`,
`iscrowd`) and a PNG whose RGB colour encodes each pixel's segment id as
`id = R + 256 * G + 256**2 * B` (panopticapi's `rgb2id`); id 0 is void. This
module reads the JSON in the main process (so bad categories fail before any
work starts) and turns one image at a time into a serialised example in
worker processes.

Record labels follow deeplab2's `build_{cityscapes,coco,ade20k}_data.py`:
`record class * label_divisor + instance id`, instance ids counted from 1 per
class in the JSON's segment order, 0 for stuff, and void pixels at
`record_ignore_label * label_divisor`.

Deliberate deviations from deeplab2:
  1. Crowd regions keep their class with instance id 0 (deeplab2's default,
     `--treat_crowd_as_ignore`, turns them into void); the targets drop them
     from the center and offset losses, and PQ evaluation needs them.
  2. Images are sized as stored, ignoring EXIF orientation, because
     `tf.io.decode_image` ignores it too; deeplab2 measures the rotated size.
  3. Images that are neither RGB nor greyscale JPEG/PNG (CMYK, palette,
     alpha, other formats) are stored re-encoded as RGB PNG instead of being
     rejected.
  4. No check of each segment's `area` field; every segment id of the JSON
     must instead appear in the PNG and the reverse.
"""

import dataclasses
import io
import json
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from swiderrnet_tf.data import dataset_info as dataset_info_lib
from swiderrnet_tf.data import tfrecord


class ConversionError(ValueError):
    """Bad input data; the message names the file and the offending id."""


@dataclasses.dataclass(frozen=True)
class Sample:
    """One image to convert.

    Attributes:
      name: Stored as `image/filename` (the image file name without suffix).
      image_path: The image file.
      label_path: The panoptic PNG.
      json_path: The JSON that describes the PNG, named in errors.
      segments: (segment id in the PNG, record panoptic id) per JSON segment.
      num_pixels: height * width from the JSON's `images` entry (0 if absent),
        used to size shards.
    """

    name: str
    image_path: str
    label_path: str
    json_path: str
    segments: tuple[tuple[int, int], ...]
    num_pixels: int = 0


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """panopticapi's `rgb2id`: `[h, w, 3]` uint8 -> `[h, w]` int32 segment ids."""
    rgb = rgb.astype(np.int32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def load_json(path: str) -> dict:
    try:
        with tf.io.gfile.GFile(path, "r") as f:
            data = json.load(f)
    except (OSError, tf.errors.OpError) as e:
        raise ConversionError(f"{path}: cannot read the panoptic JSON: {e}") from e
    except json.JSONDecodeError as e:
        raise ConversionError(f"{path}: not valid JSON: {e}") from e
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise ConversionError(f"{path}: expected a list under {key!r}")
    return data


def _check_categories(data, json_path, class_of_category, info):
    """The JSON's own `categories`, where it has them, must agree on things."""
    for category in data.get("categories", []):
        model_class = class_of_category.get(category.get("id"))
        if model_class is None or "isthing" not in category:
            continue
        if bool(category["isthing"]) != info.is_thing[model_class]:
            raise ConversionError(
                f"{json_path}: category id {category['id']} ({category.get('name')!r}) has "
                f"isthing={category['isthing']}, but {info.name!r} model class {model_class} "
                f"({info.class_names[model_class]!r}) is "
                f"{'a thing' if info.is_thing[model_class] else 'stuff'}"
            )


def _record_segments(annotation, json_path, class_of_category, info, is_thing):
    """Record panoptic ids for one annotation's segments, instance ids from 1."""
    where = f"{json_path}: image_id {annotation['image_id']!r}"
    next_instance = {}
    segments = []
    seen = set()
    for segment in annotation.get("segments_info", []):
        segment_id = segment.get("id")
        if isinstance(segment_id, bool) or not isinstance(segment_id, int) or segment_id <= 0:
            raise ConversionError(f"{where}: segment id {segment_id!r} must be a positive integer")
        if segment_id in seen:
            raise ConversionError(f"{where}: segment id {segment_id} is listed twice")
        seen.add(segment_id)
        category_id = segment.get("category_id")
        model_class = class_of_category.get(category_id)
        if model_class is None:
            raise ConversionError(
                f"{where}: segment id {segment_id} has unknown category id {category_id!r}; "
                f"expected one of the {len(class_of_category)} category ids of {info.name!r} "
                f"({min(class_of_category)}..{max(class_of_category)})"
            )
        record_class = model_class + info.record_class_offset
        if not is_thing[model_class]:
            if segment.get("iscrowd", 0):
                raise ConversionError(
                    f"{where}: segment id {segment_id} is crowd but category id "
                    f"{category_id} ({info.class_names[model_class]!r}) is stuff"
                )
            instance = 0
        elif segment.get("iscrowd", 0):
            instance = 0
        else:
            instance = next_instance.get(model_class, 1)
            if instance >= info.label_divisor:
                raise ConversionError(
                    f"{where}: category id {category_id} ({info.class_names[model_class]!r}) "
                    f"has more than {info.label_divisor - 1} instances, the most that "
                    f"label_divisor {info.label_divisor} allows (segment id {segment_id})"
                )
            next_instance[model_class] = instance + 1
        segments.append((segment_id, record_class * info.label_divisor + instance))
    return tuple(segments)


def read_samples(
    json_path: str,
    info: dataset_info_lib.DatasetInfo,
    category_ids: tuple[int, ...],
    image_path_fn,
    label_dir: str,
    name_suffix: str = "",
) -> list[Sample]:
    """Reads a panoptic JSON into samples, checking its categories and segments.

    Args:
      json_path: The panoptic JSON.
      info: The dataset.
      category_ids: JSON category id of each model class.
      image_path_fn: Maps an entry of the JSON's `images` to its image path.
      label_dir: Directory of the PNGs named by the annotations' `file_name`.
      name_suffix: Removed from the image file stem to form the sample name
        (Cityscapes' `_leftImg8bit`).

    Returns:
      The samples, sorted by name.

    Raises:
      ConversionError: naming the file and the offending id.
    """
    data = load_json(json_path)
    class_of_category = {c: i for i, c in enumerate(category_ids)}
    _check_categories(data, json_path, class_of_category, info)
    is_thing = info.is_thing
    images = {}
    for image in data["images"]:
        if image.get("id") in images:
            raise ConversionError(f"{json_path}: image id {image.get('id')!r} is listed twice")
        images[image.get("id")] = image
    samples = {}
    for annotation in data["annotations"]:
        image_id = annotation.get("image_id")
        image = images.get(image_id)
        if image is None or "file_name" not in image or "file_name" not in annotation:
            raise ConversionError(
                f"{json_path}: annotation of image_id {image_id!r} has no `file_name` or no "
                f"entry with a `file_name` under 'images'"
            )
        name = os.path.splitext(image["file_name"])[0].removesuffix(name_suffix)
        if name in samples:
            raise ConversionError(f"{json_path}: image {name!r} is annotated twice")
        samples[name] = Sample(
            name=name,
            image_path=image_path_fn(image),
            label_path=os.path.join(label_dir, annotation["file_name"]),
            json_path=json_path,
            segments=_record_segments(annotation, json_path, class_of_category, info, is_thing),
            num_pixels=int(image.get("height", 0)) * int(image.get("width", 0)),
        )
    return [samples[name] for name in sorted(samples)]


def _open_image(path: str, what: str, sample: Sample) -> tuple[bytes, Image.Image]:
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read()
        image = Image.open(io.BytesIO(data))
        image.load()
    except Image.UnidentifiedImageError as e:
        raise ConversionError(
            f"{path}: unreadable {what} for {sample.name!r}: not an image format Pillow reads"
        ) from e
    except (OSError, tf.errors.OpError, Image.DecompressionBombError) as e:
        raise ConversionError(f"{path}: unreadable {what} for {sample.name!r}: {e}") from e
    return data, image


def _encode(image: Image.Image, image_format: str, jpeg_quality: int) -> bytes:
    buffer = io.BytesIO()
    if image_format == "jpeg":
        image.save(buffer, format="JPEG", quality=jpeg_quality)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def panoptic_label(sample: Sample, label: Image.Image, void_id: int) -> np.ndarray:
    """Record panoptic ids `[h, w]` int32 of a sample's PNG, checked against its JSON."""
    if label.mode != "RGB":
        raise ConversionError(
            f"{sample.label_path}: expected an RGB panoptic PNG, got mode {label.mode!r}"
        )
    ids = rgb_to_id(np.asarray(label))
    # A binary search among the few known ids is far cheaper than np.unique
    # over millions of pixels.
    known_ids = np.array(sorted([0, *dict(sample.segments)]), dtype=np.int64)
    index = np.minimum(np.searchsorted(known_ids, ids), len(known_ids) - 1)
    unknown = known_ids[index] != ids
    if unknown.any():
        missing_in_json = np.unique(ids[unknown]).tolist()
        raise ConversionError(
            f"{sample.label_path}: segment id(s) {missing_in_json[:10]} are in the PNG but "
            f"not in the segments_info of image {sample.name!r} in {sample.json_path}"
        )
    present = np.bincount(index.ravel(), minlength=len(known_ids)) > 0
    missing_in_png = [int(i) for i in known_ids[~present] if i != 0]
    if missing_in_png:
        raise ConversionError(
            f"{sample.json_path}: segment id(s) {missing_in_png[:10]} of image {sample.name!r} "
            f"are not in its PNG {sample.label_path}"
        )
    record_ids = dict(sample.segments)
    lookup = np.array([record_ids.get(int(i), void_id) for i in known_ids], dtype=np.int32)
    return lookup[index]


def build_example(
    sample: Sample,
    info: dataset_info_lib.DatasetInfo,
    max_size: int = 0,
    jpeg_quality: int = 95,
) -> bytes:
    """Reads, checks and serialises one sample.

    Args:
      sample: What to convert.
      info: The dataset.
      max_size: If positive, images whose longest side exceeds it are resized
        so that it equals `max_size` (image bilinear, stored as JPEG; labels
        nearest neighbour).
      jpeg_quality: JPEG quality of resized images.

    Returns:
      A serialised `tf.train.Example` in the deeplab2 schema.

    Raises:
      ConversionError: naming the file and the offending id.
    """
    image_bytes, image = _open_image(sample.image_path, "image", sample)
    _, label = _open_image(sample.label_path, "panoptic PNG", sample)
    if image.size != label.size:
        raise ConversionError(
            f"{sample.image_path}: image is {image.size[0]}x{image.size[1]} (w x h) but its "
            f"panoptic PNG {sample.label_path} is {label.size[0]}x{label.size[1]}"
        )
    panoptic = panoptic_label(sample, label, info.record_void_panoptic_id)
    image_format = {"JPEG": "jpeg", "PNG": "png"}.get(image.format)
    if image_format is None or image.mode not in ("RGB", "L"):
        image, image_format = image.convert("RGB"), "png"
        image_bytes = _encode(image, image_format, jpeg_quality)
    width, height = image.size
    if 0 < max_size < max(width, height):
        scale = max_size / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = image.convert("RGB").resize(size, Image.BILINEAR)
        image_format = "jpeg"
        image_bytes = _encode(image, image_format, jpeg_quality)
        panoptic = np.asarray(Image.fromarray(panoptic).resize(size, Image.NEAREST))
    return tfrecord.encode_panoptic_example(image_bytes, image_format, sample.name, panoptic)
