"""Progress of a training run: console lines and TensorBoard scalars.

Every log interval prints one line with the step, each loss (mean over the
interval), the learning rate, steps/s, images/s and the estimated time left,
and writes the same numbers as TensorBoard scalars (`losses/*`,
`learning_rate`, `throughput/*`) into `model_dir/train`.
"""

import time

import numpy as np
from absl import logging

from swiderrnet_tf.training import summaries


def format_duration(seconds: float) -> str:
    """`1h02m`, `3m05s` or `42s`."""
    seconds = max(int(round(seconds)), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class Progress:
    """Accumulates loss sums and timing between log lines.

    Args:
      num_steps: Final step of the run.
      global_batch_size: Images per step.
      loss_keys: Names of the losses, in the order of the sums.
      writer: A `tf.summary` writer, or None (non-chief workers).
    """

    def __init__(self, num_steps: int, global_batch_size: int, loss_keys, writer=None):
        self.num_steps = num_steps
        self.global_batch_size = global_batch_size
        self.loss_keys = tuple(loss_keys)
        self.writer = writer
        self._sums = np.zeros(len(self.loss_keys))
        self._steps = 0
        self._seconds = 0.0
        self._started = None
        self._first = True

    def start(self) -> None:
        """Marks the start of a host loop."""
        self._started = time.perf_counter()

    def add(self, loss_sums, steps: int) -> None:
        """Adds a host loop's loss sums (`loss_keys` order) and step count."""
        self._seconds += time.perf_counter() - self._started
        self._sums += np.asarray(loss_sums, dtype=np.float64)
        self._steps += int(steps)

    def report(self, step: int, learning_rate: float) -> dict:
        """Logs and writes the interval's numbers; returns them and starts a new interval."""
        if not self._steps:
            return {}
        means = self._sums / self._steps
        steps_per_second = self._steps / max(self._seconds, 1e-9)
        values = {key: float(v) for key, v in zip(self.loss_keys, means, strict=True)}
        values["learning_rate"] = float(learning_rate)
        values["steps_per_second"] = steps_per_second
        values["images_per_second"] = steps_per_second * self.global_batch_size
        eta = (self.num_steps - step) / steps_per_second
        losses = " ".join(
            f"{key.removesuffix('_loss')} {values[key]:.4f}" for key in self.loss_keys
        )
        logging.info(
            "step %d/%d | %s | lr %.3g | %.2f steps/s %.1f img/s | ETA %s%s",
            step,
            self.num_steps,
            losses,
            values["learning_rate"],
            steps_per_second,
            values["images_per_second"],
            format_duration(eta),
            " (this interval includes compiling the loop)" if self._first else "",
        )
        self._first = False
        if self.writer is not None:
            with self.writer.as_default():
                for key in self.loss_keys:
                    summaries.scalar(f"losses/{key}", values[key], step)
                summaries.scalar("learning_rate", values["learning_rate"], step)
                summaries.scalar("throughput/steps_per_second", steps_per_second, step)
                summaries.scalar("throughput/images_per_second", values["images_per_second"], step)
            self.writer.flush()
        self._sums[:] = 0.0
        self._steps = 0
        self._seconds = 0.0
        return values
