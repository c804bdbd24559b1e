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

Images larger than the SavedModel's merge canvases (the largest of its
`canvas_sides`, 2049 by default) are processed, not refused: the image is
resized (bilinear, aspect ratio kept) until its longer side fits, predicted,
and the panoptic map is mapped back to the original size by nearest
neighbour, so every output has the size of its input; a log line names each
resized image. (Export with larger `--canvas_sides` to predict them at full
resolution.)

Each file is written under a temporary name and renamed when complete.
`panoptic.json` is written also when a later image fails, listing the images
whose files were written. Exit status: 0 when done; 2 when the SavedModel,
an image or the output cannot be read or written (one line on stderr names
the file and the cause).
"""

import functools
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

from swiderrnet_tf import cli
from swiderrnet_tf import fileio
from swiderrnet_tf.inference import coco_format
from swiderrnet_tf.inference import export_lib
from swiderrnet_tf.inference import precision as precision_lib
from swiderrnet_tf.inference import visualization

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (only when run as a program)."""
    flags.DEFINE_string("saved_model", None, "Folder written by swiderrnet_tf.export.")
    flags.DEFINE_multi_string(
        "images",
        [],
        "Image file pattern(s), e.g. 'photos/*.jpg'. Images larger than the SavedModel's "
        "merge canvases are resized to fit and their maps resized back (nearest neighbour).",
    )
    flags.DEFINE_string("output_dir", None, "Folder for panoptic/, overlays/, panoptic.json.")
    flags.DEFINE_float("overlay_alpha", 0.5, "Weight of the segment colours in the overlays.")
    flags.DEFINE_string(
        "precision",
        None,
        f"One of {precision_lib.PRECISIONS}; default: the SavedModel's. bfloat16 falls back "
        "to the SavedModel's float32 signatures where the hardware lacks bfloat16.",
    )
    flags.DEFINE_boolean(
        "allow_emulated_bfloat16",
        False,
        "Run bfloat16 even where the hardware lacks it (slower than float32).",
    )


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
    with fileio.atomic_write(path, "wb") as f:
        Image.fromarray(array).save(f, format="PNG")


def fitting_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """The size an image is resized to so that both sides are at most `max_side`.

    Returns:
      `(height, width)` unchanged when it fits; else scaled by
      `max_side / max(height, width)` (rounded, at least 1 pixel).
    """
    if max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return (
        min(max_side, max(1, round(height * scale))),
        min(max_side, max(1, round(width * scale))),
    )


def resize_nearest(label: np.ndarray, height: int, width: int) -> np.ndarray:
    """`[h, w]` map -> `[height, width]`: each pixel takes the label under its centre."""
    rows = ((np.arange(height) + 0.5) * label.shape[0] / height).astype(int)
    cols = ((np.arange(width) + 0.5) * label.shape[1] / width).astype(int)
    return label[
        np.minimum(rows, label.shape[0] - 1)[:, None], np.minimum(cols, label.shape[1] - 1)
    ]


def predict_panoptic(serve, image: np.ndarray, max_side: int, name: str) -> np.ndarray:
    """`[h, w]` panoptic map of one `[h, w, 3]` image, resized to fit if needed."""
    height, width = image.shape[:2]
    fitted = fitting_size(height, width, max_side)
    if fitted != (height, width):
        logging.info(
            "%s: %dx%d is larger than the merge canvases (%d); predicted at %dx%d and "
            "mapped back by nearest neighbour",
            name,
            width,
            height,
            max_side,
            fitted[1],
            fitted[0],
        )
        small = np.asarray(Image.fromarray(image).resize(fitted[::-1], Image.BILINEAR))
        panoptic = serve(images=tf.constant(small[None]))["panoptic"].numpy()[0]
        return resize_nearest(panoptic, height, width)
    return serve(images=tf.constant(image[None]))["panoptic"].numpy()[0]


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


def choose_signatures(metadata: dict, precision: str | None, allow_emulated: bool):
    """`(precision, {"images": name, "bytes": name})` to run a SavedModel with.

    Args:
      metadata: The SavedModel's metadata (`export_lib.read_metadata`).
      precision: Asked for; None for the SavedModel's own.
      allow_emulated: Keep bfloat16 where the hardware lacks it.

    Raises:
      ValueError: On an unknown precision, or one the SavedModel lacks.
    """
    requested = precision or metadata.get("precision", "float32")
    chosen = precision_lib.resolve_precision(requested, allow_emulated=allow_emulated)
    return chosen, export_lib.signatures_for(metadata, chosen)


def predict(
    *,
    saved_model: str,
    image_patterns,
    output_dir: str,
    overlay_alpha=0.5,
    precision: str | None = None,
    allow_emulated_bfloat16: bool = False,
) -> dict:
    """Predicts every image; writes the PNGs and `panoptic.json`; returns the JSON dict.

    `precision` (default: the SavedModel's, its metadata's `precision`) picks
    the signatures: a bfloat16 SavedModel also has float32 ones, used where
    `precision_lib.resolve_precision` falls back to float32.

    Raises:
      PredictError: Naming the file that cannot be read or written; the
        images done before it are in `panoptic.json`.
      cli.FileAccessError: When an output folder or file cannot be written.
      ValueError: When the SavedModel has no metadata.
    """
    metadata = export_lib.read_metadata(saved_model)
    try:
        chosen, signatures = choose_signatures(metadata, precision, allow_emulated_bfloat16)
    except ValueError as e:
        raise PredictError(f"{saved_model}: {e}") from e
    paths = find_images(image_patterns)
    # Output folders first: a bad --output_dir fails before the model loads.
    for folder in ("panoptic", "overlays"):
        fileio.make_dirs(os.path.join(output_dir, folder), "output folder")
    try:
        loaded = tf.saved_model.load(saved_model)
    except (OSError, tf.errors.OpError) as e:
        raise PredictError(f"{saved_model}: cannot load the SavedModel: {e}") from e
    serve = loaded.signatures[signatures["images"]]
    logging.info("Network in %s (signature %s)", chosen, signatures["images"])
    max_side = max(metadata["canvas_sides"])
    result = {
        "info": {"description": f"swiderrnet_tf predictions of {saved_model}"},
        "images": [],
        "annotations": [],
        "categories": coco_format.categories(metadata),
    }
    json_path = os.path.join(output_dir, "panoptic.json")
    started = time.perf_counter()
    try:
        for done, path in enumerate(paths):
            _progress(done, len(paths), started, os.path.basename(path))
            _predict_one(serve, path, metadata, max_side, output_dir, overlay_alpha, result)
        _progress(len(paths), len(paths), started, "")
    except BaseException as e:
        sys.stderr.write("\n")
        _write_json(json_path, result)
        if isinstance(e, ValueError):
            raise PredictError(
                f"{e} ({json_path} lists the {len(result['images'])} image(s) done before)"
            ) from e
        raise
    _write_json(json_path, result)
    logging.info("Wrote %d predictions to %s", len(paths), output_dir)
    return result


def _predict_one(serve, path, metadata, max_side, output_dir, overlay_alpha, result) -> None:
    """Writes one image's PNGs and adds its entries to `result`."""
    image = read_image(path)
    panoptic = predict_panoptic(serve, image, max_side, path)
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
    result["images"].append(
        {"id": image_id, "file_name": file_name, "height": height, "width": width}
    )
    result["annotations"].append(
        {
            "image_id": image_id,
            "file_name": png_name,
            "segments_info": coco_format.segments_info(ids, metadata),
        }
    )


def _write_json(path: str, result: dict) -> None:
    with fileio.atomic_write(path) as f:
        json.dump(result, f)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    missing = [n for n in ("saved_model", "output_dir") if not getattr(FLAGS, n)]
    if missing or not FLAGS.images:
        raise app.UsageError("--saved_model, --images and --output_dir are required")
    return cli.run_main(
        functools.partial(
            predict,
            saved_model=FLAGS.saved_model,
            image_patterns=FLAGS.images,
            output_dir=FLAGS.output_dir,
            overlay_alpha=FLAGS.overlay_alpha,
            precision=FLAGS.precision,
            allow_emulated_bfloat16=FLAGS.allow_emulated_bfloat16,
        )
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
