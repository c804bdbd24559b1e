"""Random masks that differ between replicas: the seeds of drop path and dropout.

Keras draws random numbers from a `SeedGenerator` whose state is a variable.
Under `tf.distribute` that variable is mirrored: every replica starts from the
same state and advances it alike, so every replica would draw the same masks,
and with one crop per core every crop of a step would drop the same blocks.
Here the seed drawn from the generator has the replica's id folded in
(TensorFlow backend, several replicas), and the masks are drawn with stateless
ops from that seed. The run stays reproducible from its seed
(`keras.utils.set_random_seed` before the model is built fixes the generators'
initial states); the numbers differ with and without XLA, whose stateless
random ops use another algorithm.

Under JAX, whose distribution API shards one global batch, the generator's
seed is used as it is.

The seed is a tensor, drawn once per call, so that a caller can draw it
outside a recomputed function and reuse it in the recomputation
(`residual_blocks`).
"""

import keras
from keras import ops


def draw_seed(generator: keras.random.SeedGenerator):
    """Advances `generator` and returns this replica's seed `[2]` (int32 under TF)."""
    seed = generator.next()
    if keras.backend.backend() != "tensorflow":
        return seed
    import tensorflow as tf  # only on this backend

    # As Keras' TensorFlow backend: stateless ops take int32 seeds (XLA needs them).
    seed = tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        seed = tf.random.experimental.stateless_fold_in(seed, context.replica_id_in_sync_group)
    return seed


def uniform(shape, seed):
    """Float32 uniform noise in [0, 1) of `shape`, a pure function of `seed` (`draw_seed`)."""
    if keras.backend.backend() != "tensorflow":
        return keras.random.uniform(shape, seed=seed, dtype="float32")
    import tensorflow as tf  # only on this backend

    return tf.random.stateless_uniform(shape, seed=seed, dtype=tf.float32)


def keep_mask(shape, keep_prob: float, seed, dtype):
    """`1 / keep_prob` with probability `keep_prob`, else 0, of `shape` and `dtype`.

    The comparison is made in float32: in bfloat16 the keep rate would be off
    by the rounding of `keep_prob`.
    """
    kept = ops.cast(uniform(shape, seed) < keep_prob, "float32")
    return ops.cast(kept / keep_prob, dtype)


@keras.saving.register_keras_serializable(package="swiderrnet_tf")
class Dropout(keras.layers.Layer):
    """Element-wise dropout whose mask differs between replicas (see the module docstring).

    In training each element is zeroed with probability `rate` and the others
    are scaled by `1 / (1 - rate)`. Input and output: any shape.

    Args:
      rate: Probability of zeroing an element, in [0, 1).
      seed: Initial seed of the layer's generator (None: from Python's global
        random state, which `keras.utils.set_random_seed` fixes).
    """

    def __init__(self, rate: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"{self.name}: dropout rate must be in [0, 1), got {rate}")
        self.rate = rate
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if rate > 0.0 else None

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        seed = draw_seed(self.seed_generator)
        return inputs * keep_mask(ops.shape(inputs), 1.0 - self.rate, seed, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
