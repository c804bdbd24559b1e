"""Inference precision: the network in float32 or in bfloat16, and whether bfloat16 pays here.

`precision="bfloat16"` builds the network under Keras' `mixed_bfloat16` policy:
the weights stay float32 (checkpoints load unchanged), convolutions run in
bfloat16 with batch norm folded into them (`layers/conv_bn.py`), the outputs
are float32 (`ResizeToInput`), and the merge and the softmax stay float32.

bfloat16 is only faster where the hardware multiplies in it: on x86 CPUs with
AMX (`amx_bf16`) or AVX512-BF16 (`avx512_bf16`), Arm CPUs with the `bf16`
extension, NVIDIA GPUs of compute capability 8.0 or newer, and TPUs. Elsewhere
TensorFlow converts every operand to float32 and back (its CPU convolutions
then run at about float32 speed, depthwise convolutions several times slower;
docs/latency.md has the numbers), so `resolve_precision` falls back to float32
with a warning unless `allow_emulated=True` asks for the slow path anyway (to
measure its accuracy or its cost).

    precision = precision_lib.resolve_precision("bfloat16")
    with precision_lib.policy_scope(precision):
        model = build_panoptic_deeplab(...)   # then load the weights
"""

import contextlib
import functools
import platform

import keras
from absl import logging

PRECISIONS = ("float32", "bfloat16")
# Keras dtype policy that builds the network in each precision.
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}
# /proc/cpuinfo flags of CPUs that multiply in bfloat16.
_X86_FLAGS = ("amx_bf16", "avx512_bf16")
_ARM_FLAGS = ("bf16",)


def check_precision(precision: str) -> str:
    """Returns `precision` if it is one of `PRECISIONS`; raises `ValueError` otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def cpu_bfloat16_flags(cpuinfo: str | None = None) -> tuple[str, ...]:
    """The CPU feature flags present that give bfloat16 arithmetic.

    Args:
      cpuinfo: Text of `/proc/cpuinfo`; read from the file when None (an
        empty result where it does not exist, e.g. off Linux).

    Returns:
      The flags among `amx_bf16`, `avx512_bf16` (x86) and `bf16` (Arm) that
      the CPU reports, in that order.
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return ()
    present = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            present.update(value.split())
    return tuple(flag for flag in _X86_FLAGS + _ARM_FLAGS if flag in present)


@functools.cache
def accelerator_supports_bfloat16() -> bool | None:
    """Whether the backend's accelerator computes in bfloat16; None without one."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # only on this backend

        if tf.config.list_logical_devices("TPU"):
            return True
        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            return None
        capability = tf.config.experimental.get_device_details(gpus[0]).get(
            "compute_capability", (0, 0)
        )
        return tuple(capability) >= (8, 0)
    if backend == "jax":
        import jax  # only on this backend

        platform_name = jax.devices()[0].platform
        if platform_name == "tpu":
            return True
        if platform_name == "gpu":
            capability = getattr(jax.devices()[0], "compute_capability", "0.0")
            return tuple(int(v) for v in str(capability).split(".")[:2]) >= (8, 0)
    return None


def bfloat16_supported() -> tuple[bool, str]:
    """Whether this machine runs bfloat16 faster than float32, and why (for messages)."""
    accelerator = accelerator_supports_bfloat16()
    if accelerator is not None:
        return accelerator, ("the accelerator " + ("has" if accelerator else "lacks") + " bfloat16")
    flags = cpu_bfloat16_flags()
    if flags:
        return True, f"the CPU has {'/'.join(flags)}"
    return False, (
        f"the CPU ({platform.processor() or platform.machine()}) has none of "
        f"{', '.join(_X86_FLAGS + _ARM_FLAGS)}"
    )


def resolve_precision(precision: str, *, allow_emulated: bool = False) -> str:
    """The precision to run: `precision`, or float32 where bfloat16 would be emulated.

    Args:
      precision: `float32` or `bfloat16`.
      allow_emulated: Run bfloat16 even where the hardware lacks it (slower
        than float32; for accuracy checks and cost measurements).

    Returns:
      `float32` or `bfloat16`.

    Raises:
      ValueError: On an unknown precision.
    """
    check_precision(precision)
    if precision == "float32":
        return precision
    supported, reason = bfloat16_supported()
    if supported:
        return precision
    if allow_emulated:
        logging.warning(
            "Running bfloat16 although %s: TensorFlow emulates it, slower than float32", reason
        )
        return precision
    logging.warning(
        "precision bfloat16 asked for, but %s: falling back to float32 (bfloat16 would be "
        "emulated, slower than float32; --allow_emulated_bfloat16 runs it anyway)",
        reason,
    )
    return "float32"


@contextlib.contextmanager
def policy_scope(precision: str):
    """Sets the Keras global dtype policy of `precision` while models are built.

    Layers take the global policy when they are created, so a model built
    inside computes in `precision`; its variables are float32 either way.
    """
    check_precision(precision)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(POLICIES[precision])
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


@contextlib.contextmanager
def computing_in(model, precision: str):
    """Makes a model built in bfloat16 compute in `precision` while inside.

    Switches the dtype policy of every layer that computes in bfloat16
    (those pinned to float32, such as `ResizeToInput`, stay), and switches
    it back on exit. The variables are the same either way, so functions
    traced inside and outside share them: a SavedModel of both precisions
    holds one copy of the weights.

    Args:
      model: A Keras model, built under `policy_scope`.
      precision: `float32` or `bfloat16`.
    """
    check_precision(precision)
    # Keras has no public walk over nested layers; `_flatten_layers` is its own.
    switched = [
        layer
        for layer in model._flatten_layers(include_self=True)
        if layer.dtype_policy.name == POLICIES["bfloat16"]
    ]
    for layer in switched:
        layer.dtype_policy = POLICIES[precision]
    try:
        yield model
    finally:
        for layer in switched:
            layer.dtype_policy = POLICIES["bfloat16"]


def model_precision(model) -> str:
    """`bfloat16` for a model built under `policy_scope("bfloat16")`, else `float32`."""
    return "bfloat16" if model.compute_dtype == "bfloat16" else "float32"
