"""Per-replica state under MirroredStrategy on two CPU devices (run by test_per_replica).

    python tests/training/per_replica_run.py OUT

Writes OUT/masks.npz (drop-path and dropout masks of each replica and step,
as a `tf.function` and under XLA, for two builds with the same seed and one
with another), OUT/batch_norm.npz (each replica's input and its copies of the
moving statistics after one training call) and OUT/recompute.npz (gradients
and moving statistics of small residual blocks with and without
recomputation, per replica).

TensorFlow must be configured (logical devices) before it runs an op, hence a
process of its own.
"""

import os
import sys

import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from swiderrnet_tf.layers import conv_bn  # noqa: E402
from swiderrnet_tf.layers import drop_path  # noqa: E402
from swiderrnet_tf.layers import normalization  # noqa: E402
from swiderrnet_tf.layers import replica_random  # noqa: E402
from swiderrnet_tf.layers import residual_blocks  # noqa: E402

REPLICAS = 2
STEPS = 3
SAMPLES = 512  # per replica and step


def _per_replica(strategy, make):
    """Distributed value whose replica r holds `make(r)`."""
    return strategy.experimental_distribute_values_from_function(
        lambda context: make(context.replica_id_in_sync_group)
    )


def _copies(variable):
    """Each replica's copy of a Keras variable, as numpy."""
    return np.stack([v.numpy() for v in variable.value.values])


def _masks(strategy, seed, jit_compile):
    """[steps, replicas, ...] masks of a DropPath and a Dropout built after `seed`."""
    keras.utils.set_random_seed(seed)
    with strategy.scope():
        path = drop_path.DropPath(0.5)
        dropout = replica_random.Dropout(0.5)
    ones = _per_replica(strategy, lambda r: tf.ones([SAMPLES, 1, 1, 1]))
    elements = _per_replica(strategy, lambda r: tf.ones([4, 64]))
    compiled = tf.function(
        lambda a, b: (path(a, training=True), dropout(b, training=True)), jit_compile=jit_compile
    )

    def replica_fn(a, b):
        # An XLA call is compiled for the device it is placed on, which inside
        # `strategy.run` is not the replica's unless said.
        replica = tf.get_static_value(tf.distribute.get_replica_context().replica_id_in_sync_group)
        with tf.device(f"/cpu:{replica}"):
            return compiled(a, b)

    @tf.function
    def step(a, b):
        return strategy.run(replica_fn, args=(a, b))

    paths, drops = [], []
    for _ in range(STEPS):
        a, b = step(ones, elements)
        paths.append([v.numpy()[:, 0, 0, 0] for v in a.values])
        drops.append([v.numpy() for v in b.values])
    return np.array(paths), np.array(drops)


def masks(strategy, out):
    results = {}
    for mode, jit in (("function", False), ("xla", True)):
        for name, seed in (("first", 7), ("again", 7), ("other", 8)):
            path, drop = _masks(strategy, seed, jit)
            results[f"{mode}_{name}_drop_path"] = path
            results[f"{mode}_{name}_dropout"] = drop
    np.savez(os.path.join(out, "masks.npz"), **results)


def batch_norm(strategy, out):
    """One training call of an unsynchronised BN on different data per replica."""
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(REPLICAS, 3, 5, 5, 4)).astype(np.float32)
    inputs += np.arange(REPLICAS, dtype=np.float32)[:, None, None, None, None] * 2.0
    with strategy.scope():
        layer = normalization.batch_norm("bn", sync=False)
        layer.build((None, 5, 5, 4))
    data = _per_replica(strategy, lambda r: tf.constant(inputs[r]))

    @tf.function
    def step(x):
        return strategy.run(lambda x: layer(x, training=True), args=(x,))

    step(data)
    np.savez(
        os.path.join(out, "batch_norm.npz"),
        inputs=inputs,
        moving_mean=_copies(layer.moving_mean),
        moving_variance=_copies(layer.moving_variance),
    )


def _small_model(recompute, sync):
    """Stem, a basic block and a SAC bottleneck, with drop path; built at seed 3."""
    keras.utils.set_random_seed(3)
    images = keras.Input((None, None, 3))
    x = conv_bn.ConvBN(8, 3, strides=2, sync_batch_norm=sync, name="stem")(images)
    common = dict(drop_path_keep_prob=0.5, sync_batch_norm=sync, recompute=recompute)
    x = residual_blocks.BasicBlock((8, 8), squeeze_excite=True, name="basic", **common)(x)
    x = residual_blocks.BottleneckBlock(
        (4, 8, 16), switchable_atrous=True, strides=1, name="bottleneck", **common
    )(x)
    return keras.Model(images, x)


def recompute(strategy, out):
    rng = np.random.default_rng(1)
    inputs = rng.uniform(0, 255, size=(REPLICAS, 4, 17, 17, 3)).astype(np.float32)
    data = _per_replica(strategy, lambda r: tf.constant(inputs[r]))
    results = {}
    for sync in (False, True):
        for setting in (False, True):
            with strategy.scope():
                model = _small_model(setting, sync)
            variables = model.trainable_variables

            def replica_step(x, model=model, variables=variables):
                with tf.GradientTape() as tape:
                    y = model(x, training=True)
                    loss = tf.reduce_sum(tf.square(y)) * 1e-3
                return tape.gradient(loss, variables)

            @tf.function
            def step(x, replica_step=replica_step):
                return strategy.run(replica_step, args=(x,))

            grads = step(data)
            key = f"sync{int(sync)}_recompute{int(setting)}"
            for i, grad in enumerate(grads):
                results[f"{key}_grad{i}"] = np.stack([g.numpy() for g in grad.values])
            for v in model.non_trainable_variables:
                if "moving" in v.path:
                    results[f"{key}_{v.path}"] = _copies(v)
    np.savez(os.path.join(out, "recompute.npz"), **results)


def main(out: str) -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * REPLICAS
    )
    strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(REPLICAS)])
    masks(strategy, out)
    batch_norm(strategy, out)
    recompute(strategy, out)


if __name__ == "__main__":
    main(sys.argv[1])
