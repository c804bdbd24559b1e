"""Predicts image files with a trained model; writes COCO panoptic files and overlays.

    python -m swiderrnet_tf.predict --model=runs/demo --images='photos/*.jpg' \\
        --output_dir=predictions
    swiderrnet-predict --model=exported/coco_fast --images='photos/*.jpg' --output_dir=out

`--model` is a run folder of `swiderrnet_tf.train` (its newest checkpoint,
or `--checkpoint`, with its `config.gin`: no export needed), a SavedModel of
`swiderrnet_tf.export` (`--saved_model`, the old spelling, still works), or
a folder of `tools.import_deeplab2` (with `--dataset`); see
`inference.predictor.Predictor`.

Writes, for each image `NAME.ext`:
  * `panoptic/NAME.png`: the COCO panoptic PNG (segment id = panoptic id + 1,
    RGB as panopticapi's `id2rgb`; 0 = void);
  * `overlays/NAME.png`: the segments' colours over the image, borders white;
and one `panoptic.json` with `images`, `annotations` (`segments_info` per
image: `id`, `category_id`, `iscrowd` 0, `area`, `bbox`) and `categories`
(the dataset's category ids, `DatasetInfo.category_ids`). For COCO images
named by their id (`000000000139.jpg`), `image_id` is that number, as the
COCO test server expects.

Images are read as stored (EXIF orientation is not applied) and converted
to RGB. Images larger than a SavedModel's merge canvases are predicted at the
largest size that fits and mapped back (nearest neighbour), so every output
has the size of its input.

Each file is written under a temporary name and renamed when complete.
`panoptic.json` is written also when a later image fails, listing the images
whose files were written. Exit status: 0 when done; 2 when the model, an
image or the output cannot be read or written (one line on stderr names the
file and the cause).
"""

import functools
import json
import os
import pathlib

from absl import app
from absl import flags
from absl import logging
from PIL import Image

from swiderrnet_tf import cli
from swiderrnet_tf import fileio
from swiderrnet_tf import progress
from swiderrnet_tf.inference import coco_format
from swiderrnet_tf.inference import images as images_lib
from swiderrnet_tf.inference import precision as precision_lib
from swiderrnet_tf.inference import predictor as predictor_lib
from swiderrnet_tf.inference import visualization

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (only when run as a program)."""
    flags.DEFINE_string(
        "model", None, "Run folder, SavedModel folder, or imported deeplab2 folder."
    )
    flags.DEFINE_alias("saved_model", "model")
    flags.DEFINE_string("checkpoint", None, "A run folder's checkpoint (default: its newest).")
    flags.DEFINE_string("dataset", None, "The dataset of an imported deeplab2 model.")
    flags.DEFINE_multi_string(
        "images",
        [],
        "Image file pattern(s), e.g. 'photos/*.jpg'. Images larger than a SavedModel's "
        "merge canvases are resized to fit and their maps resized back (nearest neighbour).",
    )
    flags.DEFINE_string("output_dir", None, "Folder for panoptic/, overlays/, panoptic.json.")
    flags.DEFINE_float("overlay_alpha", 0.5, "Weight of the segment colours in the overlays.")
    flags.DEFINE_string(
        "precision",
        None,
        f"One of {precision_lib.PRECISIONS}; default: a SavedModel's own, else float32. bfloat16 "
        "falls back to float32 (a SavedModel's float32 signatures) where the hardware lacks it.",
    )
    flags.DEFINE_boolean(
        "allow_emulated_bfloat16",
        False,
        "Run bfloat16 even where the hardware lacks it (slower than float32).",
    )


class PredictError(ValueError):
    """A file that cannot be read or written; the message names it."""


def _write_png(path: str, array) -> None:
    with fileio.atomic_write(path, "wb") as f:
        Image.fromarray(array).save(f, format="PNG")


def predict(
    *,
    model: str,
    image_patterns,
    output_dir: str,
    overlay_alpha=0.5,
    dataset=None,
    checkpoint=None,
    precision: str | None = None,
    allow_emulated_bfloat16: bool = False,
) -> dict:
    """Predicts every image; writes the PNGs and `panoptic.json`; returns the JSON dict.

    Args:
      model: See `Predictor.load`: a run folder, a SavedModel or an imported
        deeplab2 folder.
      image_patterns: Glob patterns of the images.
      output_dir: Where `panoptic/`, `overlays/` and `panoptic.json` go.
      overlay_alpha: Weight of the segment colours in the overlays.
      dataset: The dataset of an imported deeplab2 model.
      checkpoint: A run folder's checkpoint (default: its newest).
      precision, allow_emulated_bfloat16: See `Predictor.load`.

    Raises:
      PredictError: Naming the file that cannot be read or written; the
        images done before it are in `panoptic.json`.
      cli.FileAccessError: When an output folder or file cannot be written.
      PredictError: Also when `model` is not a model folder or lacks the precision.
    """
    paths = images_lib.find_images(image_patterns)
    # Output folders first: a bad --output_dir fails before the model loads.
    for folder in ("panoptic", "overlays"):
        fileio.make_dirs(os.path.join(output_dir, folder), "output folder")
    try:
        predictor = predictor_lib.Predictor.load(
            model,
            dataset=dataset,
            checkpoint=checkpoint,
            precision=precision,
            allow_emulated_bfloat16=allow_emulated_bfloat16,
        )
    except ValueError as e:
        raise PredictError(str(e)) from e
    result = {
        "info": {"description": f"swiderrnet_tf predictions of {model}"},
        "images": [],
        "annotations": [],
        "categories": coco_format.categories(predictor.info),
    }
    json_path = os.path.join(output_dir, "panoptic.json")
    bar = progress.ProgressBar(len(paths), "predict")
    try:
        for path in paths:
            _predict_one(predictor, path, output_dir, overlay_alpha, result)
            bar.update()
        bar.close()
    except BaseException as e:
        bar.close()
        _write_json(json_path, result)
        if isinstance(e, ValueError) and not isinstance(e, cli.FileAccessError):
            raise PredictError(
                f"{e} ({json_path} lists the {len(result['images'])} image(s) done before)"
            ) from e
        raise
    _write_json(json_path, result)
    logging.info("Wrote %d predictions to %s", len(paths), output_dir)
    return result


def _predict_one(predictor, path, output_dir, overlay_alpha, result) -> None:
    """Writes one image's PNGs and adds its entries to `result`."""
    image = images_lib.read_image(path)
    prediction = predictor.predict(image)
    info = predictor.info
    stem = pathlib.PurePath(path).stem
    ids = coco_format.segment_ids(prediction.panoptic, info)
    png_name = f"{stem}.png"
    _write_png(os.path.join(output_dir, "panoptic", png_name), coco_format.id_to_rgb(ids))
    _write_png(
        os.path.join(output_dir, "overlays", png_name),
        visualization.overlay(image, prediction.panoptic, info, overlay_alpha),
    )
    image_id = coco_format.image_id(stem)
    height, width = prediction.panoptic.shape
    result["images"].append(
        {"id": image_id, "file_name": os.path.basename(path), "height": height, "width": width}
    )
    result["annotations"].append(
        {
            "image_id": image_id,
            "file_name": png_name,
            "segments_info": coco_format.segments_info(ids, info),
        }
    )


def _write_json(path: str, result: dict) -> None:
    with fileio.atomic_write(path) as f:
        json.dump(result, f)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    missing = [n for n in ("model", "output_dir") if not getattr(FLAGS, n)]
    if missing or not FLAGS.images:
        raise app.UsageError("--model, --images and --output_dir are required")
    return cli.run_main(
        functools.partial(
            predict,
            model=FLAGS.model,
            image_patterns=FLAGS.images,
            output_dir=FLAGS.output_dir,
            overlay_alpha=FLAGS.overlay_alpha,
            dataset=FLAGS.dataset,
            checkpoint=FLAGS.checkpoint,
            precision=FLAGS.precision,
            allow_emulated_bfloat16=FLAGS.allow_emulated_bfloat16,
        )
    )


def console_main():
    """The `swiderrnet-predict` console script."""
    cli.console_main(__name__)


if __name__ == "__main__":
    define_flags()
    app.run(main)
