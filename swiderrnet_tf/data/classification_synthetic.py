"""The built-in synthetic classification set (`classification_info.SYNTHETIC_CLASSIFICATION`).

Ten classes, each a colour family (hues 36 degrees apart, jittered by up to
10) and a pattern of its own, drawn as a mix of a light and a dark shade of
the family: stripes at 0, 90, 45 and 135 degrees, a checkerboard, rings,
a grid of dots, a disc, a square, a soft gradient. Period, phase, angle,
position, shades and noise vary from image to image, and so does the size
(`min_size`..`max_size` pixels a side, not square). One image in twenty is
stored as a grayscale JPEG, as some ImageNet images are, so the pattern alone
must tell those apart. Colour alone separates the other nineteen: a tiny
SWideRNet learns the set in a few hundred CPU steps, which makes it a check
that pre-training runs end to end, not a benchmark.

Records use the tpu_reference layout (`classification_info.encode_reference_example`:
JPEG images, labels 1..10, synsets `synthetic_00`..`synthetic_09`) and its file
names `train-00000-of-00004`, `validation-00000-of-00002`. Every example comes
from its own generator seeded with `(seed, split, index)`, so a seed gives
byte-identical records; classes take turns (`index % 10`).

    python -m swiderrnet_tf.data.classification_synthetic --output_dir=/tmp/synthetic_cls
"""

import colorsys
import io
import json
import os
import sys

import numpy as np
import tensorflow as tf
from absl import app
from absl import flags
from absl import logging
from PIL import Image

from swiderrnet_tf.data import classification_info
from swiderrnet_tf.data import synthetic

INFO = classification_info.SYNTHETIC_CLASSIFICATION
MANIFEST = "synthetic_classification.json"
GRAYSCALE_FRACTION = 0.05
# Output file prefix and generator code of each split.
_SPLITS = {"train": ("train", 1), "val": ("validation", 2)}


def synset(label: int) -> str:
    """The synset string of model class `label`."""
    return f"synthetic_{label:02d}"


def _shade(hue: float, saturation: float, value: float) -> np.ndarray:
    return 255.0 * np.array(colorsys.hsv_to_rgb((hue % 360.0) / 360.0, saturation, value))


def _pattern(rng, cls: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """`[h, w]` mix weights in 0..1 of class `cls` on `[h, 1]` and `[1, w]` grids."""
    height, width = yy.shape[0], xx.shape[1]
    period = rng.uniform(8.0, 16.0)
    phase = rng.uniform(0.0, 2 * np.pi)
    if cls < 4:
        angle = np.deg2rad((0.0, 90.0, 45.0, 135.0)[cls] + rng.uniform(-10.0, 10.0))
        along = xx * np.cos(angle) + yy * np.sin(angle)
        return 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * along / period + phase))
    if cls == 4:
        cells = np.floor((yy + rng.uniform(0, period)) / period) + np.floor(
            (xx + rng.uniform(0, period)) / period
        )
        return cells % 2
    cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
    radius = np.hypot(yy - cy, xx - cx)
    if cls == 5:
        return 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * radius / period + phase))
    if cls == 6:
        dy = (yy + phase) % period - period / 2
        dx = (xx + phase) % period - period / 2
        return (np.hypot(dy, dx) < period / 4).astype(np.float64)
    size = rng.uniform(0.25, 0.4) * min(height, width)
    if cls == 7:
        return (radius < size).astype(np.float64)
    if cls == 8:
        return ((np.abs(yy - cy) < size) & (np.abs(xx - cx) < size)).astype(np.float64)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (xx * np.cos(angle) + yy * np.sin(angle)) / max(height, width)
    return np.broadcast_to(np.clip(ramp - ramp.min(), 0, 1), (height, width))


def render_image(rng: np.random.Generator, cls: int, height: int, width: int) -> np.ndarray:
    """One `[height, width, 3]` uint8 image of class `cls`."""
    yy = np.arange(height, dtype=np.float64)[:, None]
    xx = np.arange(width, dtype=np.float64)[None, :]
    hue = 36.0 * cls + rng.uniform(-10.0, 10.0)
    light = _shade(hue, rng.uniform(0.5, 0.9), rng.uniform(0.75, 1.0))
    dark = _shade(hue, rng.uniform(0.6, 1.0), rng.uniform(0.25, 0.5))
    weight = np.broadcast_to(_pattern(rng, cls, yy, xx), (height, width))[..., None]
    image = dark + weight * (light - dark) + rng.normal(0.0, 8.0, size=(height, width, 3))
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def encode_example(split: str, index: int, *, min_size: int, max_size: int, seed: int) -> bytes:
    """The serialised example `index` of `split`, deterministic in its arguments."""
    rng = np.random.default_rng([seed, _SPLITS[split][1], index])
    cls = index % INFO.num_classes
    height, width = (int(v) for v in rng.integers(min_size, max_size + 1, size=2))
    image = Image.fromarray(render_image(rng, cls, height, width))
    if rng.uniform() < GRAYSCALE_FRACTION:
        image = image.convert("L")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return classification_info.encode_reference_example(
        buffer.getvalue(),
        label=cls + INFO.layout.first_label,
        synset=synset(cls),
        filename=f"{split}_{index:06d}.JPEG",
        height=height,
        width=width,
    )


def _write_split(output_dir, split, num_examples, num_shards, **params) -> list[str]:
    num_shards = max(1, min(num_shards, num_examples))
    prefix = _SPLITS[split][0]
    bounds = np.linspace(0, num_examples, num_shards + 1).round().astype(int)
    paths = []
    for shard, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        path = os.path.join(output_dir, f"{prefix}-{shard:05d}-of-{num_shards:05d}")
        with tf.io.TFRecordWriter(path + ".tmp") as writer:
            for index in range(start, stop):
                writer.write(encode_example(split, index, **params))
        tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
        paths.append(path)
    logging.info(
        "Wrote %d %s images to %d shards in %s", num_examples, split, num_shards, output_dir
    )
    return paths


def generate(
    output_dir: str,
    *,
    num_train: int = 500,
    num_val: int = 100,
    min_size: int = 64,
    max_size: int = 96,
    seed: int = 0,
    num_train_shards: int = 4,
    num_val_shards: int = 2,
) -> dict[str, list[str]]:
    """Writes the set and a manifest of its parameters into `output_dir`.

    Returns:
      Split name (`train`, `val`) -> the shard paths written.
    """
    if not 16 <= min_size <= max_size:
        raise ValueError(
            f"sizes must satisfy 16 <= min_size <= max_size, got {min_size}, {max_size}"
        )
    if num_train < 0 or num_val < 0:
        raise ValueError(f"image counts must be >= 0, got {num_train}, {num_val}")
    params = dict(
        num_train=num_train,
        num_val=num_val,
        min_size=min_size,
        max_size=max_size,
        seed=seed,
        num_train_shards=num_train_shards,
        num_val_shards=num_val_shards,
    )
    tf.io.gfile.makedirs(output_dir)
    manifest = os.path.join(output_dir, MANIFEST)
    if tf.io.gfile.exists(manifest):
        tf.io.gfile.remove(manifest)
    for prefix, _ in _SPLITS.values():
        for stale in tf.io.gfile.glob(os.path.join(output_dir, f"{prefix}-?????-of-?????*")):
            tf.io.gfile.remove(stale)
    image_params = dict(min_size=min_size, max_size=max_size, seed=seed)
    written = {}
    for split, count, shards in (
        ("train", num_train, num_train_shards),
        ("val", num_val, num_val_shards),
    ):
        if count:
            written[split] = _write_split(output_dir, split, count, shards, **image_params)
    # Written last: its presence means the shards are complete.
    with tf.io.gfile.GFile(manifest, "w") as f:
        json.dump(params, f, indent=2, sort_keys=True)
    return written


def ensure_dataset(output_dir: str, **params) -> str:
    """Generates the set in `output_dir` unless it is there with the same parameters.

    The `prepare_data_fn(data_dir)` of a config; call it from one process
    (the chief) when several share `output_dir`.

    Args:
      output_dir: Where the shards and the manifest live.
      **params: Keyword arguments of `generate`.

    Returns:
      `output_dir`.
    """
    return synthetic.ensure_generated(
        output_dir, generate, MANIFEST, "synthetic classification", params
    )


FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        generate(
            FLAGS.output_dir,
            num_train=FLAGS.num_train,
            num_val=FLAGS.num_val,
            min_size=FLAGS.min_size,
            max_size=FLAGS.max_size,
            seed=FLAGS.seed,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    flags.DEFINE_string("output_dir", None, "Folder of the TFRecord shards.")
    flags.DEFINE_integer("num_train", 500, "Training images.")
    flags.DEFINE_integer("num_val", 100, "Validation images.")
    flags.DEFINE_integer("min_size", 64, "Smallest image side.")
    flags.DEFINE_integer("max_size", 96, "Largest image side.")
    flags.DEFINE_integer("seed", 0, "Seed; the same seed writes byte-identical records.")
    flags.mark_flag_as_required("output_dir")
    app.run(main)
