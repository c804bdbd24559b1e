"""Learning-rate schedules: poly (the paper's), step and cosine, with a linear warmup.

SWideRNet (Chen, Wang, Qiao 2020, section 4) trains with Adam and the "poly"
schedule, `lr = base * (1 - step / total_steps) ** 0.9`, which reaches 0 at the
last step. google-research/deeplab2 (`trainer/trainer.py`) optionally wraps it in
a linear warmup: for `step < warmup_steps` the rate is
`base * step / warmup_steps`; from `warmup_steps` on it is the poly value of the
*absolute* step, so the warmup does not shift the decay. This module keeps both
rules. The decay itself is Keras 3's `PolynomialDecay` (steps past the end give
the end rate).

The schedule runs on `keras.ops`, so it works under the TensorFlow and JAX
backends, and its config holds plain numbers, so optimizers that use it
serialise and reload.

Deliberate deviations from deeplab2: none. Note that, as there, the rate is 0 at
step 0 when a warmup is used, so the first update only fills Adam's moments.

ImageNet pre-training uses the step schedule of the TPU ResNet reference
(`StepDecayWithWarmup`) or a cosine decay (`CosineDecayWithWarmup`).
"""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="swiderrnet_tf")
class PolynomialDecayWithWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """`base * (1 - step / decay_steps) ** power`, after an optional linear warmup.

    Args:
      initial_learning_rate: Base rate, reached at the end of the warmup.
      decay_steps: Step at which the rate reaches `end_learning_rate`
        (the total number of training steps).
      power: Exponent of the poly decay.
      end_learning_rate: Rate at and after `decay_steps`.
      warmup_steps: Length of the linear warmup from 0; 0 disables it.
      name: Name scope of the ops.

    Raises:
      ValueError: On non-positive `decay_steps`, a negative rate or power, or a
        warmup that is negative or not shorter than `decay_steps`.
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        power: float = 0.9,
        end_learning_rate: float = 0.0,
        warmup_steps: int = 0,
        name: str = "PolynomialDecayWithWarmup",
    ):
        super().__init__()
        if decay_steps <= 0:
            raise ValueError(f"decay_steps must be positive, got {decay_steps}")
        if initial_learning_rate < 0 or end_learning_rate < 0:
            raise ValueError(
                "learning rates must be >= 0, got initial_learning_rate="
                f"{initial_learning_rate}, end_learning_rate={end_learning_rate}"
            )
        if power < 0:
            raise ValueError(f"power must be >= 0, got {power}")
        if not 0 <= warmup_steps < decay_steps:
            raise ValueError(
                f"warmup_steps must lie in [0, decay_steps={decay_steps}), got {warmup_steps}"
            )
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.power = power
        self.end_learning_rate = end_learning_rate
        self.warmup_steps = warmup_steps
        self.name = name
        self._decay = keras.optimizers.schedules.PolynomialDecay(
            initial_learning_rate=initial_learning_rate,
            decay_steps=decay_steps,
            end_learning_rate=end_learning_rate,
            power=power,
            cycle=False,
            name=f"{name}_decay",
        )

    def __call__(self, step):
        """Learning rate at `step`.

        Args:
          step: Scalar int or float training step (the optimizer's iterations).

        Returns:
          Scalar float32 learning rate.
        """
        decayed = ops.cast(self._decay(step), "float32")
        if not self.warmup_steps:
            return decayed
        with keras.name_scope(self.name):
            step = ops.cast(step, "float32")
            warmup = self.initial_learning_rate * step / float(self.warmup_steps)
            return ops.where(ops.less(step, float(self.warmup_steps)), warmup, decayed)

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "power": self.power,
            "end_learning_rate": self.end_learning_rate,
            "warmup_steps": self.warmup_steps,
            "name": self.name,
        }


def _warmup(step, base: float, warmup_steps: int, after):
    """`base * step / warmup_steps` before `warmup_steps`, else `after`."""
    if not warmup_steps:
        return after
    step = ops.cast(step, "float32")
    return ops.where(ops.less(step, float(warmup_steps)), base * step / warmup_steps, after)


@keras.saving.register_keras_serializable(package="swiderrnet_tf")
class StepDecayWithWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """`base * factors[i]` from `boundaries[i]` on, after a linear warmup from 0.

    The TPU ResNet reference schedule (tensorflow/tpu, `resnet_main.py`):
    warmup over 5 epochs, then x0.1 at epochs 30, 60 and 80 of 90.

    Args:
      initial_learning_rate: Rate from the end of the warmup to the first boundary.
      boundaries: Increasing steps at which the rate changes.
      factors: Multiplier of `initial_learning_rate` from each boundary on.
      warmup_steps: Length of the linear warmup (0: none); before the first boundary.
    """

    def __init__(self, initial_learning_rate, boundaries, factors, warmup_steps=0):
        super().__init__()
        boundaries, factors = [int(b) for b in boundaries], [float(f) for f in factors]
        if len(boundaries) != len(factors):
            raise ValueError(
                f"{len(boundaries)} step boundaries {boundaries} but {len(factors)} factors "
                f"{factors}: give one factor per boundary"
            )
        if boundaries != sorted(set(boundaries)) or (boundaries and boundaries[0] <= warmup_steps):
            raise ValueError(
                f"step boundaries {boundaries} must increase and come after the warmup "
                f"({warmup_steps} steps)"
            )
        self.initial_learning_rate = float(initial_learning_rate)
        self.boundaries = boundaries
        self.factors = factors
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        rate = ops.cast(self.initial_learning_rate, "float32")
        for boundary, factor in zip(self.boundaries, self.factors, strict=True):
            rate = ops.where(
                ops.greater_equal(ops.cast(step, "float32"), float(boundary)),
                self.initial_learning_rate * factor,
                rate,
            )
        return _warmup(step, self.initial_learning_rate, self.warmup_steps, rate)

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "boundaries": self.boundaries,
            "factors": self.factors,
            "warmup_steps": self.warmup_steps,
        }


@keras.saving.register_keras_serializable(package="swiderrnet_tf")
class CosineDecayWithWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """`end + (base - end) * (1 + cos(pi * step / decay_steps)) / 2`, after a warmup.

    As for the poly schedule, the decay follows the absolute step: the warmup
    does not shift it.

    Args:
      initial_learning_rate: Base rate.
      decay_steps: Step at which the rate reaches `end_learning_rate`.
      end_learning_rate: Rate at and after `decay_steps`.
      warmup_steps: Length of the linear warmup from 0 (0: none).
    """

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0, warmup_steps=0):
        super().__init__()
        if not 0 <= warmup_steps < decay_steps:
            raise ValueError(
                f"warmup_steps must lie in [0, decay_steps={decay_steps}), got {warmup_steps}"
            )
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = int(decay_steps)
        self.end_learning_rate = float(end_learning_rate)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        progress = ops.minimum(ops.cast(step, "float32") / self.decay_steps, 1.0)
        cosine = 0.5 * (1.0 + ops.cos(math.pi * progress))
        rate = (
            self.end_learning_rate + (self.initial_learning_rate - self.end_learning_rate) * cosine
        )
        return _warmup(step, self.initial_learning_rate, self.warmup_steps, rate)

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "end_learning_rate": self.end_learning_rate,
            "warmup_steps": self.warmup_steps,
        }


SCHEDULES = ("poly", "step", "cosine")


def build_schedule(
    kind: str,
    *,
    learning_rate: float,
    num_steps: int,
    warmup_steps: int = 0,
    power: float = 0.9,
    end_learning_rate: float = 0.0,
    step_boundaries=(),
    step_factors=(),
) -> keras.optimizers.schedules.LearningRateSchedule:
    """The schedule `train.lr_schedule` names: `poly`, `step` or `cosine`."""
    if kind == "poly":
        return PolynomialDecayWithWarmup(
            learning_rate,
            num_steps,
            power=power,
            end_learning_rate=end_learning_rate,
            warmup_steps=warmup_steps,
        )
    if kind == "step":
        return StepDecayWithWarmup(learning_rate, step_boundaries, step_factors, warmup_steps)
    if kind == "cosine":
        return CosineDecayWithWarmup(learning_rate, num_steps, end_learning_rate, warmup_steps)
    raise ValueError(f"train.lr_schedule must be one of {SCHEDULES}, got {kind!r}")
