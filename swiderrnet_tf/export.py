"""Exports a trained checkpoint as a SavedModel with the panoptic merge inside.

    python -m swiderrnet_tf.export --gin_file=gin_configs/coco_fast.gin \\
        --checkpoint=runs/coco_fast/ckpt-500000 --output_dir=exported/coco_fast

The gin files are the training run's. As the evaluator does, the model is
built by `evaluate.model_fn` for the classes of `evaluate.dataset_name` and
filled from `--checkpoint` (a `ckpt-<step>` prefix, a run folder for its
newest checkpoint, or a `.weights.h5` file); the merge takes the dataset's
settings (`DatasetInfo`: center threshold, NMS kernel, center slots) with
those bound on `panoptic_predictor` replacing them. If
the run evaluates over several scales
(`panoptic_predictor.predict_fn_factory = @multi_scale_predict_fn`), the
SavedModel averages the same scales and flips inside. Add
`--gin_bindings='panoptic_predictor.predict_fn_factory = @multi_scale_predict_fn'`
(and `multi_scale_predict_fn.dataset_name = %DATASET_NAME`) to export a
multi-scale model from a single-scale run.

`--canvas_sides` sets the merge canvases (the largest bounds the image size
the SavedModel accepts, see `swiderrnet_tf.inference.canvas_merge`);
`--tflite_size=HxW` also writes `model.tflite` beside it: network and merge
for uint8 images of that size, batch 1 (see `swiderrnet_tf.inference.tflite`).

`--precision=bfloat16` runs the network in bfloat16 (batch norm folded, merge
and softmax in float32) and adds float32 signatures of the same weights, which
`predict` uses on machines without bfloat16 hardware (`inference/precision.py`).

The SavedModel, its signatures and its metadata are described in
`swiderrnet_tf.inference.serving` and `export_lib`; an export that fails
leaves no half-written SavedModel. Exit status: 0 when done, 2 on a
configuration, checkpoint or output error (one line on stderr).
"""

import functools
import os
import sys

from absl import app
from absl import flags
from absl import logging

from swiderrnet_tf import cli
from swiderrnet_tf import fileio
from swiderrnet_tf.data import dataset_info as dataset_info_lib
from swiderrnet_tf.inference import canvas_merge
from swiderrnet_tf.inference import checkpoints
from swiderrnet_tf.inference import export_lib
from swiderrnet_tf.inference import panoptic_predictor
from swiderrnet_tf.inference import precision as precision_lib
from swiderrnet_tf.inference import run_config
from swiderrnet_tf.inference import tflite

FLAGS = flags.FLAGS
TFLITE_FILE = "model.tflite"


def define_flags():
    """Defines the command-line flags (only when run as a program)."""
    flags.DEFINE_multi_string("gin_file", [], "Gin file(s) of the training run.")
    flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings applied after the files.")
    flags.DEFINE_string("checkpoint", None, "Checkpoint prefix, run folder or .weights.h5 file.")
    flags.DEFINE_string("output_dir", None, "Folder for the SavedModel (local or gs://).")
    flags.DEFINE_alias("output", "output_dir")
    flags.DEFINE_list(
        "canvas_sides",
        [str(s) for s in canvas_merge.DEFAULT_CANVAS_SIDES],
        "Merge canvas lengths; the largest bounds the image height and width.",
    )
    flags.DEFINE_string("tflite_size", None, "Also write model.tflite for HxW images.")
    flags.DEFINE_boolean("overwrite", False, "Replace a non-empty --output_dir folder.")
    flags.DEFINE_string(
        "precision",
        "float32",
        f"One of {precision_lib.PRECISIONS}: the SavedModel's network precision; bfloat16 "
        "also writes float32 signatures of the same weights (see inference/precision.py).",
    )
    flags.DEFINE_boolean(
        "jit_compile_merge",
        True,
        "Compile the merge with XLA inside the SavedModel; --nojit_compile_merge for "
        "servers that run no XLA (see inference/export_lib.py).",
    )


def export_checkpoint(
    *,
    model_fn,
    dataset_name: str,
    checkpoint: str,
    output: str,
    merge: dict,
    scales=(1.0,),
    flip: bool = False,
    canvas_sides=canvas_merge.DEFAULT_CANVAS_SIDES,
    tflite_size=None,
    overwrite: bool = False,
    jit_compile_merge: bool = True,
    precision: str = "float32",
) -> str:
    """Builds the model, restores `checkpoint` and writes the SavedModel to `output`.

    Usable without gin: `model_fn(num_classes=...)` builds the model (e.g.
    `functools.partial(build_panoptic_deeplab, "swidernet_0.25_0.5_1",
    regime="fast")`).

    Args:
      model_fn: Model factory taking `num_classes`.
      dataset_name: A registered dataset.
      checkpoint: See `checkpoints.restore_model`.
      output: The SavedModel folder.
      merge: Any of `center_threshold`, `nms_kernel`, `keep_k_centers`,
        replacing the dataset's.
      scales, flip: Multi-scale and flipped inference inside the SavedModel.
      canvas_sides: Merge canvas lengths.
      tflite_size: Optional (height, width): also write `model.tflite`.
      overwrite: Replace a non-empty `output`.
      jit_compile_merge: Compile the merge with XLA in the SavedModel.
      precision: `float32` or `bfloat16`, the network's compute precision in
        the SavedModel (written whatever this machine's CPU; a warning says
        when it lacks bfloat16). The TFLite model is float32 either way.

    Returns:
      `output`.
    """
    precision_lib.check_precision(precision)
    if precision == "bfloat16":
        supported, reason = precision_lib.bfloat16_supported()
        if not supported:
            logging.warning(
                "Exporting in bfloat16 although %s: on such machines predict falls back to the "
                "SavedModel's float32 signatures",
                reason,
            )
    info = dataset_info_lib.get_dataset_info(dataset_name)
    parent = os.path.dirname(output.rstrip("/"))
    if parent:
        # Before the model is built: a bad --output_dir fails at once.
        fileio.make_dirs(parent, "parent folder of the SavedModel")
    with precision_lib.policy_scope(precision):
        model = model_fn(num_classes=info.num_classes)
    step = checkpoints.restore_model(model, checkpoint)
    logging.info("Exporting %s (step %s) to %s", checkpoint, step, output)
    export_lib.export_saved_model(
        model,
        info,
        output,
        scales=scales,
        flip=flip,
        canvas_sides=canvas_sides,
        overwrite=overwrite,
        jit_compile_merge=jit_compile_merge,
        **merge,
    )
    if tflite_size is not None:
        settings = panoptic_predictor.merge_settings(info, **merge)
        with precision_lib.computing_in(model, "float32"):
            content = tflite.convert_to_tflite(model, tflite_size, merge_settings=settings)
        path = os.path.join(output, TFLITE_FILE)
        with fileio.atomic_write(path, "wb") as f:
            f.write(content)
        logging.info("Wrote %s (%d bytes)", path, len(content))
    return output


def parse_size(text: str) -> tuple[int, int]:
    """`641x641` -> (641, 641)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"sizes are HEIGHTxWIDTH, e.g. 641x641; got {text!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"sizes must be positive, got {text!r}")
    return height, width


def run(
    *,
    gin_files,
    checkpoint,
    output,
    gin_bindings=(),
    canvas_sides=canvas_merge.DEFAULT_CANVAS_SIDES,
    tflite_size=None,
    overwrite=False,
    jit_compile_merge=True,
    precision="float32",
) -> int:
    """Parses the config and exports; returns the exit status."""
    try:
        if not checkpoint or not output:
            raise ValueError("--checkpoint and --output_dir are required")
        precision_lib.check_precision(precision)
        run_config.parse(gin_files, gin_bindings)
        settings = run_config.run_settings()
        sides = canvas_merge.check_canvas_sides(tuple(int(s) for s in canvas_sides))
        size = parse_size(tflite_size) if tflite_size else None
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    return cli.run_main(
        functools.partial(
            export_checkpoint,
            checkpoint=checkpoint,
            output=output,
            canvas_sides=sides,
            tflite_size=size,
            overwrite=overwrite,
            jit_compile_merge=jit_compile_merge,
            precision=precision,
            **settings,
        )
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    return run(
        gin_files=FLAGS.gin_file,
        gin_bindings=FLAGS.gin_bindings,
        checkpoint=FLAGS.checkpoint,
        output=FLAGS.output_dir,
        canvas_sides=FLAGS.canvas_sides,
        tflite_size=FLAGS.tflite_size,
        overwrite=FLAGS.overwrite,
        jit_compile_merge=FLAGS.jit_compile_merge,
        precision=FLAGS.precision,
    )


def console_main():
    """The `swiderrnet-export` console script."""
    cli.console_main(__name__)


if __name__ == "__main__":
    define_flags()
    app.run(main)
