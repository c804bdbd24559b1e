"""Runs an exported SavedModel on image files; writes COCO panoptic files and overlays.

    python -m swiderrnet_tf.predict --saved_model=exported/coco_fast \\
        --images='photos/*.jpg' --output_dir=predictions

Writes, for each image `NAME.ext`:
  * `panoptic/NAME.png`: the COCO panoptic PNG (segment id = panoptic id + 1,
    RGB as panopticapi's `id2rgb`; 0 = void);
  * `overlays/NAME.png`: the segments' colours over the image, borders white;
and one `panoptic.json` with `images`, `annotations` (`segments_info` per
image: `id`, `category_id`, `iscrowd` 0, `area`, `bbox`) and `categories`.

Class names, colours, thing flags and category ids come from the SavedModel's
`assets/panoptic_metadata.json` (written by `swiderrnet_tf.export`), so no
other input is needed. Images are read as stored (EXIF orientation is not
applied) and converted to RGB.

Exit status: 0 when done; 2 when the SavedModel, an image or the output
cannot be read or written (the message names the file).
"""

import json
import os
import pathlib
import sys
import time

import numpy as np
import tensorflow as tf
from absl import app
from absl import flags
from absl import logging
from PIL import Image

from swiderrnet_tf.inference import coco_format
from swiderrnet_tf.inference import export_lib
from swiderrnet_tf.inference import visualization

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (only when run as a program)."""
    flags.DEFINE_string("saved_model", None, "Folder written by swiderrnet_tf.export.")
    flags.DEFINE_multi_string("images", [], "Image file pattern(s), e.g. 'photos/*.jpg'.")
    flags.DEFINE_string("output_dir", None, "Folder for panoptic/, overlays/, panoptic.json.")
    flags.DEFINE_float("overlay_alpha", 0.5, "Weight of the segment colours in the overlays.")


class PredictError(ValueError):
    """A file that cannot be read or written; the message names it."""


def read_image(path: str) -> np.ndarray:
    """`[h, w, 3]` uint8 RGB from an image file.

    Raises:
      PredictError: Naming the file when it cannot be read or decoded.
    """
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            image = Image.open(f)
            image.load()
    except (OSError, ValueError, tf.errors.OpError, Image.DecompressionBombError) as e:
        raise PredictError(f"{path}: cannot read the image: {e}") from e
    return np.asarray(image.convert("RGB"))


def find_images(patterns) -> list[str]:
    """Sorted files matching the patterns.

    Raises:
      PredictError: When nothing matches, or two files share a name stem
        (their outputs would collide).
    """
    paths = sorted({p for pattern in patterns for p in tf.io.gfile.glob(pattern)})
    if not paths:
        raise PredictError(f"no image matches {list(patterns)}")
    stems = {}
    for path in paths:
        stem = pathlib.PurePath(path).stem
        if stem in stems:
            raise PredictError(f"{stems[stem]} and {path} have the same name; outputs would clash")
        stems[stem] = path
    return paths


def _write_png(path: str, array: np.ndarray) -> None:
    try:
        with tf.io.gfile.GFile(path, "wb") as f:
            Image.fromarray(array).save(f, format="PNG")
    except (OSError, tf.errors.OpError) as e:
        raise PredictError(f"{path}: cannot write: {e}") from e


def _progress(done: int, total: int, started: float, name: str) -> None:
    width = 30
    filled = width * done // total
    elapsed = time.perf_counter() - started
    left = elapsed / done * (total - done) if done else 0.0
    sys.stderr.write(
        f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
        f"{elapsed:.0f}s elapsed, ~{left:.0f}s left  {name[-40:]:<40}"
    )
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def predict(*, saved_model: str, image_patterns, output_dir: str, overlay_alpha=0.5) -> dict:
    """Predicts every image; writes the PNGs and `panoptic.json`; returns the JSON dict.

    Raises:
      PredictError: Naming the file that cannot be read or written.
      ValueError: When the SavedModel has no metadata.
    """
    metadata = export_lib.read_metadata(saved_model)
    paths = find_images(image_patterns)
    try:
        loaded = tf.saved_model.load(saved_model)
    except (OSError, tf.errors.OpError) as e:
        raise PredictError(f"{saved_model}: cannot load the SavedModel: {e}") from e
    serve = loaded.signatures[metadata["signatures"]["images"]]
    for folder in ("panoptic", "overlays"):
        tf.io.gfile.makedirs(os.path.join(output_dir, folder))
    images, annotations = [], []
    started = time.perf_counter()
    for done, path in enumerate(paths):
        _progress(done, len(paths), started, os.path.basename(path))
        image = read_image(path)
        panoptic = serve(images=tf.constant(image[None]))["panoptic"].numpy()[0]
        stem = pathlib.PurePath(path).stem
        ids = coco_format.segment_ids(panoptic, metadata)
        png_name = f"{stem}.png"
        _write_png(os.path.join(output_dir, "panoptic", png_name), coco_format.id_to_rgb(ids))
        _write_png(
            os.path.join(output_dir, "overlays", png_name),
            visualization.overlay(image, panoptic, metadata, overlay_alpha),
        )
        image_id = coco_format.image_id(stem)
        height, width = panoptic.shape
        file_name = os.path.basename(path)
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        annotations.append(
            {
                "image_id": image_id,
                "file_name": png_name,
                "segments_info": coco_format.segments_info(ids, metadata),
            }
        )
    _progress(len(paths), len(paths), started, "")
    result = {
        "info": {"description": f"swiderrnet_tf predictions of {saved_model}"},
        "images": images,
        "annotations": annotations,
        "categories": coco_format.categories(metadata),
    }
    json_path = os.path.join(output_dir, "panoptic.json")
    try:
        with tf.io.gfile.GFile(json_path, "w") as f:
            json.dump(result, f)
    except (OSError, tf.errors.OpError) as e:
        raise PredictError(f"{json_path}: cannot write: {e}") from e
    logging.info("Wrote %d predictions to %s", len(paths), output_dir)
    return result


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    missing = [n for n in ("saved_model", "output_dir") if not getattr(FLAGS, n)]
    if missing or not FLAGS.images:
        raise app.UsageError("--saved_model, --images and --output_dir are required")
    try:
        predict(
            saved_model=FLAGS.saved_model,
            image_patterns=FLAGS.images,
            output_dir=FLAGS.output_dir,
            overlay_alpha=FLAGS.overlay_alpha,
        )
    except ValueError as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
