"""Drop path (stochastic depth, Huang et al. 2016) for residual branches.

The SWideRNet paper trains with a constant survival probability of 0.8;
deeplab2's SWideRNet configs decrease it linearly by stage. Both schedules are
offered by `keep_prob_for_stage`.

Deviations from Keras' random layers:
  1. The masks differ between replicas under `tf.distribute` (the seed has the
     replica id folded in, see `replica_random`).
  2. The seed can be drawn before the call (`draw_seed`) and passed in, so that
     a recomputed forward pass draws the same masks as the first one.
"""

import keras
from keras import ops

from swiderrnet_tf.layers import replica_random

SCHEDULES = ("constant", "linear")


def keep_prob_for_stage(keep_prob: float, schedule: str, stage: int, num_stages: int = 4) -> float:
    """Survival probability of a residual branch.

    Args:
      keep_prob: Survival probability of the last stage.
      schedule: `constant` (every stage uses `keep_prob`) or `linear` (1.0 at
        stage 0, `keep_prob` at stage `num_stages`, as deeplab2).
      stage: `log2(nominal stride of the block) - 1`, e.g. 1 at stride 4 and 4 at
        stride 32.
      num_stages: Stage at which `keep_prob` is reached.

    Returns:
      The survival probability.
    """
    if not 0.0 < keep_prob <= 1.0:
        raise ValueError(f"drop path keep probability must be in (0, 1], got {keep_prob}")
    if schedule == "constant":
        return keep_prob
    if schedule == "linear":
        return 1.0 - (1.0 - keep_prob) * stage / num_stages
    raise ValueError(f"unknown drop path schedule {schedule!r}; expected one of {SCHEDULES}")


@keras.saving.register_keras_serializable(package="swiderrnet_tf")
class DropPath(keras.layers.Layer):
    """Zeroes a whole sample's branch with probability `1 - keep_prob` in training.

    Kept samples are scaled by `1 / keep_prob` so the expectation is unchanged.
    Input and output: `[batch, ...]`.
    """

    def __init__(self, keep_prob: float = 1.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < keep_prob <= 1.0:
            raise ValueError(f"DropPath keep_prob must be in (0, 1], got {keep_prob}")
        self.keep_prob = keep_prob
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if keep_prob < 1.0 else None

    @property
    def active(self) -> bool:
        """Whether the layer drops anything in training."""
        return self.keep_prob < 1.0

    def draw_seed(self):
        """The seed of one training call's masks `[2]`; advances the layer's generator."""
        return replica_random.draw_seed(self.seed_generator)

    def call(self, inputs, training=None, seed=None):
        """Applies the masks; `seed` from `draw_seed` (None: draw one now)."""
        if not training or not self.active:
            return inputs
        if seed is None:
            seed = self.draw_seed()
        shape = (ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
        return inputs * replica_random.keep_mask(shape, self.keep_prob, seed, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "keep_prob": self.keep_prob, "seed": self.seed}
