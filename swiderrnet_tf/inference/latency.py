"""Latency of Panoptic-DeepLab inference: network, merge and end to end.

`measure(network_fn, merge_fn, images)` returns the median wall times of
  * `network`: images (already a tensor) -> network outputs, finished;
  * `merge`: network outputs -> panoptic map as a numpy array;
  * `end_to_end`: a uint8 numpy batch -> tensor -> network -> merge -> numpy
    panoptic map (image in, panoptic map out);
so a grid search can call it for many candidates. `build_pipeline(model,
info)` compiles the two functions the way inference runs them on the current
backend: on TensorFlow the network as a `tf.function` (XLA would slow it on
CPU, DESIGN 8) and the merge as its own XLA cluster (`PanopticMerge`); on JAX
both under `jax.jit`, with the weights passed as arguments.

The merge's cost follows the number of centers it finds, and a network with
random weights finds none or too many; `synthetic_outputs` makes outputs with
a realistic number of instances that `measure(..., merge_inputs=...)` feeds
to the merge instead (in `merge` and in `end_to_end`).
"""

import dataclasses
import statistics
import time

import keras
import numpy as np

from swiderrnet_tf import common
from swiderrnet_tf.inference import precision as precision_lib
from swiderrnet_tf.meta_arch import panoptic_deeplab
from swiderrnet_tf.postprocess import merge_layer

# The backbone the paper measured: its layout, with SE and SAC.
PAPER_BACKBONE_OPTIONS = {"layout": "paper", "squeeze_excite": True, "sac": True}


@dataclasses.dataclass(frozen=True)
class Latency:
    """Median seconds per call (a whole batch) and what was measured.

    Attributes:
      network: Network only, input already on the device.
      merge: Merge, including fetching the panoptic map.
      end_to_end: Numpy images in, numpy panoptic map out.
      end_to_end_cpu: Median process CPU seconds (all threads) of the end-to-end
        calls; on a shared CPU less disturbed by other processes than wall time.
      first_call: The first end-to-end call (tracing, compilation).
      batch_size: Images per call.
      repeats: Timed calls per median.
    """

    network: float
    merge: float
    end_to_end: float
    end_to_end_cpu: float
    first_call: float
    batch_size: int
    repeats: int

    @property
    def merge_share(self) -> float:
        """Merge time as a fraction of the end-to-end time."""
        return self.merge / self.end_to_end if self.end_to_end > 0 else float("nan")

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "merge_share": self.merge_share}


def _block(tree) -> None:
    """Waits until every array in `tree` is computed."""
    if keras.backend.backend() == "jax":
        import jax

        jax.block_until_ready(tree)
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.test.experimental.sync_devices()
    else:
        keras.tree.map_structure(keras.ops.convert_to_numpy, tree)


def _timed(fn) -> tuple[float, float]:
    """Wall and process CPU seconds of one call of `fn`."""
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - start_cpu


def measure(
    network_fn, merge_fn, images, *, repeats: int = 5, warmup: int = 1, merge_inputs=None
) -> Latency:
    """Median latencies of the network, the merge and the two end to end.

    Args:
      network_fn: `network_fn(images tensor) -> dict` of network outputs.
      merge_fn: `merge_fn(outputs dict) -> dict` with `common.PANOPTIC`.
      images: uint8 numpy `[batch, height, width, 3]`.
      repeats: Timed calls per median (>= 1).
      warmup: Untimed calls before timing, after the first call.
      merge_inputs: Optional dict of network outputs fed to the merge instead
        of the network's own (see `synthetic_outputs`).

    Returns:
      A `Latency`.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be [batch, height, width, 3], got {images.shape}")
    if merge_inputs is not None:
        merge_inputs = {k: keras.ops.convert_to_tensor(v) for k, v in merge_inputs.items()}

    def end_to_end():
        outputs = network_fn(keras.ops.convert_to_tensor(images))
        merged = merge_fn(outputs if merge_inputs is None else merge_inputs)
        return keras.ops.convert_to_numpy(merged[common.PANOPTIC])

    start = time.perf_counter()
    end_to_end()
    first_call = time.perf_counter() - start
    for _ in range(warmup):
        end_to_end()
    tensor = keras.ops.convert_to_tensor(images)
    outputs = network_fn(tensor)
    _block(outputs)
    to_merge = outputs if merge_inputs is None else merge_inputs
    parts = {
        "network": lambda: _block(network_fn(tensor)),
        "merge": lambda: keras.ops.convert_to_numpy(merge_fn(to_merge)[common.PANOPTIC]),
        "end_to_end": end_to_end,
    }
    # Interleaved, so that a change in the machine's load affects all three alike.
    walls = {name: [] for name in parts}
    cpus = {name: [] for name in parts}
    for _ in range(repeats):
        for name, fn in parts.items():
            wall, cpu = _timed(fn)
            walls[name].append(wall)
            cpus[name].append(cpu)
    return Latency(
        network=statistics.median(walls["network"]),
        merge=statistics.median(walls["merge"]),
        end_to_end=statistics.median(walls["end_to_end"]),
        end_to_end_cpu=statistics.median(cpus["end_to_end"]),
        first_call=first_call,
        batch_size=int(images.shape[0]),
        repeats=repeats,
    )


def build_pipeline(model, info, **merge_settings):
    """`(network_fn, merge_fn)` compiled as inference runs them on this backend.

    Args:
      model: A Panoptic-DeepLab Keras model. Under JAX it may be built inside
        `keras.StatelessScope(initialize_variables=False)` with its weights
        assigned afterwards; they are passed to the jitted function.
      info: The `DatasetInfo`: thing classes, divisor, void and the merge
        settings (`DatasetInfo.merge_settings`).
      **merge_settings: Settings that replace the dataset's (`nms_kernel`, ...).

    Returns:
      `network_fn(images) -> outputs`, `merge_fn(outputs) -> merged`.
    """
    merge = merge_layer.PanopticMerge.from_dataset_info(info, **merge_settings)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        network_fn = tf.function(lambda x: model(x, training=False), autograph=False)
        return network_fn, merge
    if backend == "jax":
        import jax

        weights = model.weights

        @jax.jit
        def network(values, x):
            mapping = list(zip(weights, values, strict=True))
            with keras.StatelessScope(state_mapping=mapping, initialize_variables=False):
                return model(x, training=False)

        merge_jit = jax.jit(merge)
        values = [w.value for w in weights]
        return (lambda x: network(values, x)), merge_jit
    raise ValueError(f"latency is measured on tensorflow or jax, not KERAS_BACKEND={backend}")


def synthetic_outputs(
    batch: int,
    height: int,
    width: int,
    info,
    *,
    num_instances: int = 20,
    seed: int = 0,
) -> dict:
    """Network outputs shaped like a trained model's, with `num_instances` instances.

    Instances are discs on a jittered grid, each with a Gaussian center peak
    (sigma 8, as the targets) that survives NMS, offsets pointing at its
    center and logits favouring one thing class; the rest is split between
    two stuff classes.

    Args:
      batch, height, width: Output size.
      info: The `DatasetInfo` (needs thing and stuff classes).
      num_instances: Instances per image.
      seed: Random seed.

    Returns:
      Dict of float32 numpy `semantic_logits` `[b, h, w, classes]`,
      `center_heatmap` `[b, h, w, 1]` and `offsets` `[b, h, w, 2]`.
    """
    if not info.thing_classes or not info.stuff_classes:
        raise ValueError(f"dataset {info.name!r} needs thing and stuff classes")
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.0, (batch, height, width, info.num_classes)).astype(np.float32)
    heatmap = np.zeros((batch, height, width), np.float32)
    offsets = rng.normal(0.0, 1.0, (batch, height, width, 2)).astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    stuff = info.stuff_classes
    logits[..., stuff[0]] += 4.0 * (yy < height / 2)
    logits[..., stuff[-1]] += 4.0 * (yy >= height / 2)
    rows = max(1, int(round(np.sqrt(num_instances * height / width))))
    cols = -(-num_instances // rows)
    cell_h, cell_w = height / rows, width / cols
    radius = max(1.0, 0.35 * min(cell_h, cell_w))
    for b in range(batch):
        for n in range(num_instances):
            row, col = divmod(n, cols)
            cy = (row + rng.uniform(0.4, 0.6)) * cell_h
            cx = (col + rng.uniform(0.4, 0.6)) * cell_w
            distance2 = (yy - cy) ** 2 + (xx - cx) ** 2
            inside = distance2 <= radius**2
            heatmap[b] = np.maximum(heatmap[b], np.exp(-distance2 / (2 * 8.0**2)))
            offsets[b, inside, 0] += cy - yy[inside]
            offsets[b, inside, 1] += cx - xx[inside]
            thing = info.thing_classes[n % len(info.thing_classes)]
            logits[b, inside, thing] += 8.0
    return {
        common.SEMANTIC_LOGITS: logits,
        common.CENTER_HEATMAP: heatmap[..., None],
        common.OFFSETS: offsets,
    }


def random_weights(model, seed: int) -> list[np.ndarray]:
    """Random values for every weight; positive for BN variances and scales."""
    rng = np.random.default_rng(seed)
    values = []
    for weight in model.weights:
        shape, dtype = tuple(weight.shape), keras.backend.standardize_dtype(weight.dtype)
        if not dtype.startswith("float"):
            values.append(np.zeros(shape, dtype))
        elif weight.path.endswith(("moving_variance", "gamma")):
            values.append(rng.uniform(0.5, 1.5, shape).astype(dtype))
        else:
            fan_in = np.prod(shape[:-1]) if len(shape) > 1 else 1
            values.append((rng.normal(0.0, 1.0, shape) / np.sqrt(fan_in)).astype(dtype))
    return values


def build_random_model(
    variant: str, regime: str, num_classes: int, seed: int = 0, precision: str = "float32"
):
    """Panoptic-DeepLab on `variant` (paper backbone) with random weights.

    Latency does not depend on the weights. Under JAX the model is built
    without running its initializers (each would cost a JAX compilation).
    `precision` is the network's compute precision (`precision.policy_scope`).
    """

    def build():
        with precision_lib.policy_scope(precision):
            return panoptic_deeplab.build_panoptic_deeplab(
                variant, num_classes, regime, backbone_options=dict(PAPER_BACKBONE_OPTIONS)
            )

    if keras.backend.backend() == "jax":
        with keras.StatelessScope(initialize_variables=False):
            model = build()
    else:
        model = build()
    for weight, value in zip(model.weights, random_weights(model, seed), strict=True):
        weight.assign(value)
    return model


def matmul_gflops(precision: str, *, size: int = 2048, repeats: int = 5) -> float:
    """Median GFLOP/s of a `size` x `size` matmul in `precision`, compiled as the network.

    The yardstick for the network's achieved GFLOP/s: what this machine's
    matrix unit gives the backend's own kernels, measured in the same run
    (on a shared CPU the peak moves with the load).
    """
    precision_lib.check_precision(precision)
    a = keras.ops.cast(
        np.random.default_rng(0).normal(size=(size, size)).astype(np.float32), precision
    )
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        matmul = tf.function(keras.ops.matmul, autograph=False)
    elif backend == "jax":
        import jax

        matmul = jax.jit(keras.ops.matmul)
    else:
        raise ValueError(f"the matmul peak is measured on tensorflow or jax, not {backend}")
    _block(matmul(a, a))
    times = []
    for _ in range(repeats):
        wall, _ = _timed(lambda: _block(matmul(a, a)))
        times.append(wall)
    return 2 * size**3 / statistics.median(times) / 1e9
