"""The built-in synthetic panoptic dataset (`dataset_info.SYNTHETIC`).

Scenes of three textured stuff classes (sky: pale blue with soft clouds,
grass: green with vertical stripes, road: grey speckle) in two or three wavy
bands of random order and orientation, under thing instances of three shape
classes (disc: reds, box: violets, triangle: yellows; varied size, shade and
rotation; a dark outline; later shapes occlude earlier ones). About a third
of the scenes hold a crowd region (a cluster of small shapes of one thing
class, instance id 0) and about a third a void patch (near-black, record class
`record_ignore_label`). Colour families and textures are distinct and
instances are placed apart on average, so a small model learns the dataset on
a CPU in minutes. Sizes scale with the shorter side (about 30% of instances
are drawn small, 3.5-7% of it): at the default 129x129 every instance has
fewer than 4096 pixels (and gets the small-instance weight); at 513x513 and
above both kinds occur.

Records use the deeplab2 schema (`tfrecord.encode_panoptic_example`, PNG
images, raw int32 panoptic labels) and the converters' shard names
`{split}-{shard:05d}-of-{num_shards:05d}.tfrecord`. Every example comes from
its own generator seeded with `(seed, split, index)`, so a seed gives
byte-identical records.

    python -m swiderrnet_tf.data.synthetic --output_dir=/tmp/synthetic \\
        --num_train=500 --num_val=50 --height=129 --width=129 --seed=0

Shards are written under temporary names and renamed when complete, and the
manifest last, so an interrupted or failed run (a full disk) leaves no
half-written file and no manifest: `ensure_dataset` generates it again.
"""

import colorsys
import functools
import inspect
import io
import json
import math
import os

import numpy as np
import tensorflow as tf
from absl import app
from absl import flags
from absl import logging
from PIL import Image

from swiderrnet_tf import cli
from swiderrnet_tf import fileio
from swiderrnet_tf.data import dataset_info as dataset_info_lib
from swiderrnet_tf.data import tfrecord

INFO = dataset_info_lib.SYNTHETIC
SKY, GRASS, ROAD, DISC, BOX, TRIANGLE = range(6)
VOID = INFO.ignore_label
MANIFEST = "synthetic.json"
_SPLIT_CODES = {"train": 1, "val": 2}
# Hue ranges (degrees) of the thing colour families.
_THING_HUES = {DISC: (-10.0, 15.0), BOX: (265.0, 295.0), TRIANGLE: (45.0, 62.0)}


def _hsv(rng, hue, sat, val) -> np.ndarray:
    h = (rng.uniform(*hue) % 360.0) / 360.0
    return 255.0 * np.array(colorsys.hsv_to_rgb(h, rng.uniform(*sat), rng.uniform(*val)))


def _stuff_texture(rng, cls, yy, xx) -> np.ndarray:
    """`[h, w, 3]` float texture of a stuff class (broadcast from `[h, 1]`/`[1, w]` grids)."""
    shape = np.broadcast_shapes(yy.shape, xx.shape)
    if cls == SKY:
        base = _hsv(rng, (200, 215), (0.35, 0.55), (0.8, 0.95))
        cloud = np.zeros(shape)
        for _ in range(3):
            fy, fx = rng.uniform(-1.5, 1.5, size=2) / max(shape)
            cloud += np.sin(2 * np.pi * (fy * yy + fx * xx) * 3 + rng.uniform(0, 2 * np.pi))
        cloud = np.maximum(cloud / 3.0, 0.0)[..., None]
        return base + (255.0 - base) * 0.5 * cloud + rng.normal(0, 3, size=(*shape, 1))
    if cls == GRASS:
        base = _hsv(rng, (90, 125), (0.55, 0.8), (0.45, 0.65))
        period = rng.uniform(4, 8)
        stripes = 1 + 0.2 * np.sin(2 * np.pi * xx / period + rng.uniform(0, 2 * np.pi))
        return base * stripes[..., None] + rng.normal(0, 8, size=(*shape, 3))
    gray = rng.uniform(80, 120) + np.array([4.0, 0.0, 6.0])
    stripes = 1 + 0.08 * np.sin(2 * np.pi * yy / rng.uniform(12, 20))
    return gray * np.broadcast_to(stripes, shape)[..., None] + rng.normal(0, 14, size=(*shape, 1))


def _stuff_layout(rng, height, width) -> np.ndarray:
    """`[h, w]` stuff classes in two or three wavy bands."""
    classes = rng.permutation([SKY, GRASS, ROAD])[: rng.choice([2, 3], p=[0.3, 0.7])]
    vertical = rng.uniform() < 0.3
    along, across = (width, height) if vertical else (height, width)
    t = np.arange(along, dtype=np.float64)[:, None]
    s = np.arange(across, dtype=np.float64)[None, :]
    region = np.zeros((along, across), dtype=np.int64)
    for fraction in np.sort(rng.uniform(0.2, 0.8, size=len(classes) - 1)):
        amplitude = rng.uniform(0.02, 0.08) * along
        period = rng.uniform(0.5, 1.5) * across
        edge = fraction * along + amplitude * np.sin(2 * np.pi * s / period + rng.uniform(0, 6.3))
        region += t >= edge
    layout = classes[region]
    return layout.T if vertical else layout


def _shape_mask(cls, params, yy, xx) -> np.ndarray:
    """Bool mask of one shape on coordinate grids `yy` `[n, 1]`, `xx` `[1, m]`."""
    cy, cx, size, angle, aspect = params
    dy, dx = yy - cy, xx - cx
    if cls == DISC:
        return dy**2 + dx**2 <= size**2
    cos, sin = math.cos(angle), math.sin(angle)
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos
    if cls == BOX:
        return (np.abs(u) <= size * aspect[0]) & (np.abs(v) <= size * aspect[1])
    # Triangle: inside all three edges of an equilateral triangle (circumradius 1.25 size).
    radius = 1.25 * size
    inside = np.ones(np.broadcast_shapes(u.shape, v.shape), dtype=bool)
    for k in range(3):
        normal = angle + np.pi / 3 + 2 * np.pi * k / 3
        inside &= dx * math.cos(normal) + dy * math.sin(normal) <= radius / 2
    return inside


def _paint_shape(rng, image, semantic, instance, cls, params, instance_id):
    """Draws one shape (texture, shading, outline) and writes its labels."""
    height, width = semantic.shape
    cy, cx, size = params[:3]
    reach = 1.5 * size + 2  # covers a box's corners and a triangle's tips
    y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 1, height)
    x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 1, width)
    if y0 >= y1 or x0 >= x1:
        return
    yy = np.arange(y0, y1, dtype=np.float64)[:, None]
    xx = np.arange(x0, x1, dtype=np.float64)[None, :]
    mask = _shape_mask(cls, params, yy, xx)
    if not mask.any():
        return
    colour = _hsv(rng, _THING_HUES[cls], (0.65, 1.0), (0.7, 1.0))
    gy, gx = rng.uniform(-1, 1, size=2)
    shade = np.clip(0.9 + 0.15 * ((yy - cy) * gy + (xx - cx) * gx) / size, 0.6, 1.2)
    patch = colour * shade[..., None] + rng.normal(0, 5, size=(*mask.shape, 3))
    padded = np.pad(mask, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    patch = np.where((mask & ~interior)[..., None], 0.55 * patch, patch)
    window = (slice(y0, y1), slice(x0, x1))
    image[window] = np.where(mask[..., None], patch, image[window])
    semantic[window] = np.where(mask, cls, semantic[window])
    instance[window] = np.where(mask, instance_id, instance[window])


def _shape_params(rng, cy, cx, size):
    return (cy, cx, size, rng.uniform(-0.5, 0.5) * np.pi, rng.uniform(0.7, 1.0, size=2))


def render_scene(rng: np.random.Generator, height: int, width: int):
    """Draws one scene.

    Returns:
      `(image, semantic, instance)`: `[h, w, 3]` uint8, `[h, w]` int32 model
      classes (void = 255) and `[h, w]` int32 instance ids (0 for stuff,
      crowd and void; 1, 2, ... for thing instances).
    """
    yy = np.arange(height, dtype=np.float64)[:, None]
    xx = np.arange(width, dtype=np.float64)[None, :]
    semantic = _stuff_layout(rng, height, width).astype(np.int32)
    image = np.zeros((height, width, 3))
    for cls in (SKY, GRASS, ROAD):
        if (semantic == cls).any():
            image = np.where((semantic == cls)[..., None], _stuff_texture(rng, cls, yy, xx), image)
    instance = np.zeros((height, width), dtype=np.int32)
    short = min(height, width)

    if rng.uniform() < 0.3:
        vh, vw = (rng.uniform(0.1, 0.3, size=2) * (height, width)).astype(int) + 1
        vy, vx = rng.integers(0, height - vh + 1), rng.integers(0, width - vw + 1)
        dark = rng.uniform(10, 30) + rng.normal(0, 4, size=(vh, vw, 1))
        specks = rng.uniform(size=(vh, vw, 1)) < 0.02
        image[vy : vy + vh, vx : vx + vw] = np.where(specks, 230.0, dark)
        semantic[vy : vy + vh, vx : vx + vw] = VOID

    # Shapes, and at most one crowd cluster, placed apart: (cy, cx, size, is_crowd).
    num_shapes = rng.integers(2, 7) * max(1, round(height * width / short**2))
    slots = [False] * num_shapes + ([True] if rng.uniform() < 0.3 else [])
    placed = []
    for is_crowd in rng.permutation(slots):
        if is_crowd:
            size = rng.uniform(0.08, 0.12) * short
        elif rng.uniform() < 0.3:
            size = max(rng.uniform(0.035, 0.07) * short, 3.0)
        else:
            size = rng.uniform(0.07, 0.2) * short
        for _ in range(30):
            cy, cx = rng.uniform(0.05, 0.95, size=2) * (height, width)
            if all(math.hypot(cy - py, cx - px) >= 0.75 * (size + ps) for py, px, ps, _ in placed):
                placed.append((cy, cx, size, bool(is_crowd)))
                break
    next_id = 1
    for cy, cx, size, is_crowd in placed:
        cls = int(rng.choice([DISC, BOX, TRIANGLE]))
        if is_crowd:
            for _ in range(rng.integers(4, 8)):
                r, a = rng.uniform(0, size), rng.uniform(0, 2 * np.pi)
                blob = max(rng.uniform(0.025, 0.045) * short, 2.0)
                params = _shape_params(rng, cy + r * math.sin(a), cx + r * math.cos(a), blob)
                _paint_shape(rng, image, semantic, instance, cls, params, 0)
        else:
            params = _shape_params(rng, cy, cx, size)
            _paint_shape(rng, image, semantic, instance, cls, params, next_id)
            next_id += 1
    return np.clip(np.round(image), 0, 255).astype(np.uint8), semantic, instance


def record_panoptic(semantic: np.ndarray, instance: np.ndarray, info=INFO) -> np.ndarray:
    """Model classes and instance ids -> record-space panoptic ids `[h, w]` int32."""
    record_class = np.where(
        semantic == info.ignore_label, info.record_ignore_label, semantic + info.record_class_offset
    )
    instance = np.where(semantic == info.ignore_label, 0, instance)
    return (record_class * info.label_divisor + instance).astype(np.int32)


def encode_example(split: str, index: int, *, height: int, width: int, seed: int) -> bytes:
    """The serialised example `index` of `split`, deterministic in its arguments."""
    rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
    image, semantic, instance = render_scene(rng, height, width)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return tfrecord.encode_panoptic_example(
        buffer.getvalue(), "png", f"{split}_{index:06d}", record_panoptic(semantic, instance)
    )


def shard_paths(output_dir: str, split: str, num_shards: int) -> list[str]:
    return [
        os.path.join(output_dir, f"{split}-{i:05d}-of-{num_shards:05d}.tfrecord")
        for i in range(num_shards)
    ]


def write_split(output_dir, split, num_examples, *, height, width, seed, num_shards) -> list[str]:
    """Writes `num_examples` examples of `split` in `num_shards` contiguous shards."""
    if split not in _SPLIT_CODES:
        raise ValueError(f"split must be one of {sorted(_SPLIT_CODES)}, got {split!r}")
    num_shards = max(1, min(num_shards, num_examples))
    paths = shard_paths(output_dir, split, num_shards)
    bounds = np.linspace(0, num_examples, num_shards + 1).round().astype(int)
    for path, start, stop in zip(paths, bounds[:-1], bounds[1:], strict=True):
        tmp_path = fileio.temporary_path(path)
        try:
            with cli.file_access(path, "write the shard"):
                with tf.io.TFRecordWriter(tmp_path) as writer:
                    for index in range(start, stop):
                        example = encode_example(
                            split, index, height=height, width=width, seed=seed
                        )
                        writer.write(example)
                fileio.commit(tmp_path, path)
        except BaseException:
            fileio.remove_quietly(tmp_path)
            raise
    logging.info(
        "Wrote %d %s examples to %d shards in %s", num_examples, split, num_shards, output_dir
    )
    return paths


def generate(
    output_dir: str,
    *,
    num_train: int = 500,
    num_val: int = 50,
    height: int = 129,
    width: int = 129,
    seed: int = 0,
    num_shards: int = 4,
) -> dict[str, list[str]]:
    """Writes the dataset and a manifest of its parameters into `output_dir`.

    Returns:
      Split name -> the shard paths written.

    Raises:
      ValueError: On bad parameters, or `cli.FileAccessError` naming the
        file or folder that cannot be written.
    """
    if min(height, width) < 16:
        raise ValueError(f"synthetic images must be at least 16x16, got {height}x{width}")
    if num_train < 0 or num_val < 0:
        raise ValueError(f"example counts must be >= 0, got {num_train}, {num_val}")
    params = dict(
        num_train=num_train,
        num_val=num_val,
        height=height,
        width=width,
        seed=seed,
        num_shards=num_shards,
    )
    fileio.make_dirs(output_dir, "output folder")
    manifest = os.path.join(output_dir, MANIFEST)
    with cli.file_access(output_dir, "remove the previous dataset"):
        if tf.io.gfile.exists(manifest):
            tf.io.gfile.remove(manifest)
        for split in _SPLIT_CODES:
            pattern = os.path.join(output_dir, f"{split}-*-of-*.tfrecord*")
            for stale in tf.io.gfile.glob(pattern):
                tf.io.gfile.remove(stale)
    written = {}
    for split, count in (("train", num_train), ("val", num_val)):
        if count:
            written[split] = write_split(
                output_dir,
                split,
                count,
                height=height,
                width=width,
                seed=seed,
                num_shards=num_shards,
            )
    # Written last: its presence means the shards are complete.
    with fileio.atomic_write(manifest) as f:
        json.dump(params, f, indent=2, sort_keys=True)
    return written


def ensure_generated(output_dir: str, generate_fn, manifest: str, what: str, params) -> str:
    """Runs `generate_fn(output_dir, **params)` unless its manifest records these parameters.

    Args:
      output_dir: Where the shards and the manifest live.
      generate_fn: A generator whose keyword-only arguments are its parameters;
        it writes `manifest` (their values) last.
      manifest: The manifest's file name.
      what: What is generated, for messages.
      params: Parameters given; the others keep `generate_fn`'s defaults.

    Returns:
      `output_dir`.
    """
    wanted = {
        name: p.default
        for name, p in inspect.signature(generate_fn).parameters.items()
        if p.kind == p.KEYWORD_ONLY
    }
    unknown = set(params) - set(wanted)
    if unknown:
        raise ValueError(f"unknown {what} parameters {sorted(unknown)}; known: {sorted(wanted)}")
    wanted.update(params)
    path = os.path.join(output_dir, manifest)
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            if json.load(f) == wanted:
                return output_dir
        logging.info("The %s in %s has other parameters; regenerating", what, output_dir)
    generate_fn(output_dir, **wanted)
    return output_dir


def ensure_dataset(output_dir: str, **params) -> str:
    """Generates the dataset in `output_dir` unless it is there with the same parameters.

    Call it from one process (the chief) when several share `output_dir`.

    Args:
      output_dir: Where the shards and the manifest live.
      **params: Keyword arguments of `generate`.

    Returns:
      `output_dir`.
    """
    return ensure_generated(output_dir, generate, MANIFEST, "synthetic dataset", params)


FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    return cli.run_main(
        functools.partial(
            generate,
            FLAGS.output_dir,
            num_train=FLAGS.num_train,
            num_val=FLAGS.num_val,
            height=FLAGS.height,
            width=FLAGS.width,
            seed=FLAGS.seed,
            num_shards=FLAGS.num_shards,
        )
    )


if __name__ == "__main__":
    flags.DEFINE_string("output_dir", None, "Directory for the TFRecord shards.")
    flags.DEFINE_integer("num_train", 500, "Number of training examples.")
    flags.DEFINE_integer("num_val", 50, "Number of validation examples.")
    flags.DEFINE_integer("height", 129, "Image height.")
    flags.DEFINE_integer("width", 129, "Image width.")
    flags.DEFINE_integer("seed", 0, "Seed; the same seed writes byte-identical records.")
    flags.DEFINE_integer("num_shards", 4, "Shards per split (at most one per example).")
    flags.mark_flag_as_required("output_dir")
    app.run(main)
