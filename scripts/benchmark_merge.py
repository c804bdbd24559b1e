r"""Latency of the Panoptic-DeepLab merge (`swiderrnet_tf.postprocess`).

Prints one table row per (image size, batch, center load, execution mode): the
first call (tracing + compilation), the median and fastest wall times of the
following calls, the fastest process CPU time (all threads; less disturbed than
wall time by other processes on a shared machine) and the median time per
image. Each call includes fetching the outputs to numpy.

Inputs are synthetic but shaped like real outputs: Cityscapes' 19 classes, a
heatmap with Gaussian peaks that all survive NMS, offsets pointing at the peak
of each thing region. Two center loads: `real` (`--real_centers` peaks, ~20 in a
Cityscapes image) and `worst` (more peaks than the `k` slots, so all are used).

  python scripts/benchmark_merge.py                      # TF: eager, tf.function, XLA
  KERAS_BACKEND=jax python scripts/benchmark_merge.py    # JAX: jax.jit
  python scripts/benchmark_merge.py --sizes=641x641 --batches=1 --repeats=3

The backend is fixed when Keras is imported, so each backend needs its own run.
"""

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from swiderrnet_tf.postprocess import panoptic_merge  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["641x641", "1025x2049"], "Image sizes HxW.")
flags.DEFINE_list("batches", ["1", "8"], "Batch sizes.")
flags.DEFINE_list("loads", ["real", "worst"], "Center loads: real and/or worst.")
flags.DEFINE_list(
    "modes", ["eager", "function", "xla", "jax"], "Execution modes the backend allows."
)
flags.DEFINE_integer("real_centers", 20, "Peaks in the `real` load.")
flags.DEFINE_integer("keep_k_centers", 200, "Center slots k.")
flags.DEFINE_integer("nms_kernel", 7, "NMS window.")
flags.DEFINE_integer("num_classes", 19, "Semantic classes (Cityscapes: 19).")
flags.DEFINE_integer("repeats", 5, "Timed calls per row after the first call.")
flags.DEFINE_boolean("semantic_probabilities", False, "Also return the softmax probabilities.")
flags.DEFINE_integer("seed", 0, "Seed of the synthetic inputs.")

_THINGS = tuple(range(11, 19))  # Cityscapes thing classes


def make_inputs(batch, height, width, num_centers, num_classes, seed):
    """Synthetic model outputs with `num_centers` distinct, NMS-surviving peaks.

    Returns:
      `semantic_logits` [b, h, w, c], `center_heatmap` [b, h, w, 1] and `offsets`
      [b, h, w, 2] as float32 numpy arrays.
    """
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.0, (batch, height, width, num_classes)).astype(np.float32)
    heatmap = np.zeros((batch, height, width), np.float32)
    offsets = np.zeros((batch, height, width, 2), np.float32)
    # Peaks on a jittered grid so that every one survives NMS.
    rows = int(np.ceil(np.sqrt(num_centers * height / width)))
    cols = int(np.ceil(num_centers / rows))
    cell_h, cell_w = height // rows, width // cols
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for b in range(batch):
        owner = np.full((height, width), -1)
        for n in range(num_centers):
            r, c = divmod(n, cols)
            cy = r * cell_h + rng.integers(cell_h // 4, max(cell_h * 3 // 4, cell_h // 4 + 1))
            cx = c * cell_w + rng.integers(cell_w // 4, max(cell_w * 3 // 4, cell_w // 4 + 1))
            sigma = max(2.0, min(cell_h, cell_w) / 6.0)
            y0, y1 = r * cell_h, (r + 1) * cell_h
            x0, x1 = c * cell_w, (c + 1) * cell_w
            patch = np.exp(
                -((yy[y0:y1, x0:x1] - cy) ** 2 + (xx[y0:y1, x0:x1] - cx) ** 2) / 2 / sigma**2
            )
            heatmap[b, y0:y1, x0:x1] = np.maximum(heatmap[b, y0:y1, x0:x1], patch)
            owner[y0:y1, x0:x1] = np.where(patch > 0.05, n, owner[y0:y1, x0:x1])
            offsets[b, y0:y1, x0:x1, 0] = cy - yy[y0:y1, x0:x1]
            offsets[b, y0:y1, x0:x1, 1] = cx - xx[y0:y1, x0:x1]
        thing = owner >= 0
        logits[b][thing, np.array(_THINGS)[owner[thing] % len(_THINGS)]] += 6.0
        offsets[b] += rng.normal(0.0, 1.0, offsets[b].shape).astype(np.float32)
    return logits, heatmap[..., None], offsets


def _timed(fn, args, repeats):
    """Times `fn(*args)` with its results fetched to numpy.

    Returns:
      First-call seconds, median and fastest wall seconds, and the fastest
      process CPU seconds (all threads; less disturbed by other processes on a
      shared machine than wall time).
    """
    start = time.perf_counter()
    keras.tree.map_structure(keras.ops.convert_to_numpy, fn(*args))
    first = time.perf_counter() - start
    walls, cpus = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        keras.tree.map_structure(keras.ops.convert_to_numpy, fn(*args))
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - start_cpu)
    return first, statistics.median(walls), min(walls), min(cpus)


def _runners(merge):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return {
            "eager": merge,
            "function": tf.function(merge),
            "xla": tf.function(merge, jit_compile=True),
        }
    if backend == "jax":
        import jax

        return {"jax": jax.jit(merge)}
    raise ValueError(f"KERAS_BACKEND={backend} is not benchmarked; use tensorflow or jax")


def main(argv):
    del argv
    settings = dict(
        thing_classes=_THINGS,
        label_divisor=1000,
        stuff_area_limit=2048,
        nms_kernel=FLAGS.nms_kernel,
        keep_k_centers=FLAGS.keep_k_centers,
        return_semantic_probabilities=FLAGS.semantic_probabilities,
    )

    def merge(logits, heatmap, offsets):
        return panoptic_merge.panoptic_merge(logits, heatmap, offsets, **settings)

    runners = {m: r for m, r in _runners(merge).items() if m in FLAGS.modes}
    print(f"backend {keras.backend.backend()}, {os.cpu_count()} CPUs, settings {settings}")
    header = f"{'size':>10} {'batch':>5} {'load':>5} {'centers':>7} {'mode':>8} "
    header += f"{'first s':>8} {'median s':>9} {'min s':>8} {'cpu s':>8} {'s/image':>8}"
    print(header)
    for size in FLAGS.sizes:
        height, width = (int(v) for v in size.split("x"))
        for batch in (int(b) for b in FLAGS.batches):
            for load in FLAGS.loads:
                # 'worst' asks for more peaks than slots, so every slot is used.
                centers = FLAGS.real_centers if load == "real" else FLAGS.keep_k_centers + 8
                inputs = make_inputs(batch, height, width, centers, FLAGS.num_classes, FLAGS.seed)
                inputs = [keras.ops.convert_to_tensor(x) for x in inputs]
                for mode, runner in runners.items():
                    logging.info("running %s batch %d %s %s", size, batch, load, mode)
                    first, median, fastest, cpu = _timed(runner, inputs, FLAGS.repeats)
                    print(
                        f"{size:>10} {batch:>5} {load:>5} {centers:>7} {mode:>8} "
                        f"{first:8.3f} {median:9.4f} {fastest:8.4f} {cpu:8.4f} "
                        f"{median / batch:8.4f}",
                        flush=True,
                    )


if __name__ == "__main__":
    app.run(main)
