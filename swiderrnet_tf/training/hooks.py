"""What the trainer does between two compiled loops: small hooks, called in order.

After each loop the `Trainer` calls `after_loop(step, result)` of every hook,
in the order given: the non-finite check first (it raises, so that nothing
after it sees a discarded loop), then progress, image summaries, checkpoints
and evaluation. A hook's `every` makes the loops end on its multiples of the
step (0: the hook only cares about the end of the run).
"""

import numpy as np

from swiderrnet_tf.training import errors
from swiderrnet_tf.training import progress as progress_lib
from swiderrnet_tf.training import train_loop


class Hook:
    """Base class: does nothing; `every` steps between the calls it acts on."""

    every = 0

    def before_loop(self, step: int) -> None:
        """Called before a loop that starts after `step`."""

    def after_loop(self, step: int, result: train_loop.LoopResult, at_end: bool) -> None:
        """Called after a loop that ended at `step` (`at_end`: the run's last step)."""

    def due(self, step: int, at_end: bool) -> bool:
        return at_end or bool(self.every and step % self.every == 0)


class NonFiniteCheck(Hook):
    """Raises `NonFiniteError` when a loop produced a non-finite loss or value.

    Args:
      loss_keys: Names of the loss columns.
      variable_names: Names of `TrainLoop.checked_variables`, in order.
      last_checkpoint: `fn() -> str | None`, the newest saved checkpoint.
    """

    def __init__(self, loss_keys, variable_names, last_checkpoint):
        self.loss_keys = tuple(loss_keys)
        self.variable_names = list(variable_names)
        self.last_checkpoint = last_checkpoint

    def after_loop(self, step, result, at_end):
        bad_step = result.first_nonfinite_step
        bad_variables = np.flatnonzero(~result.finite)
        if bad_step is None and not bad_variables.size:
            return
        steps = len(result.losses)
        row = steps - 1 if bad_step is None else bad_step
        losses = dict(zip(self.loss_keys, result.losses[row].tolist(), strict=True))
        variable = self.variable_names[bad_variables[0]] if bad_variables.size else None
        raise errors.NonFiniteError(
            step - steps + 1 + row, losses, variable, self.last_checkpoint()
        )


class ProgressHook(Hook):
    """Console line and TensorBoard scalars every `every` steps and at the end.

    Args:
      progress: A `progress.Progress`.
      every: The log interval.
      learning_rate: `fn() -> float`, the optimizer's current rate.
    """

    def __init__(self, progress: progress_lib.Progress, every: int, learning_rate):
        self.progress = progress
        self.every = every
        self.learning_rate = learning_rate
        self.values = {}

    def before_loop(self, step):
        self.progress.start()

    def after_loop(self, step, result, at_end):
        self.progress.add(result.losses.sum(axis=0), len(result.losses))
        if self.due(step, at_end):
            self.values = self.progress.report(step, self.learning_rate()) or self.values


class ImageSummaryHook(Hook):
    """Panoptic overlays (or the task's images) every `every` steps."""

    def __init__(self, images, writer, every: int):
        self.images = images
        self.writer = writer
        self.every = every

    def after_loop(self, step, result, at_end):
        if self.every and step % self.every == 0:
            self.images.write(self.writer, step)


class CheckpointHook(Hook):
    """Saves every `every` steps (0: only at the end) and at the end.

    Args:
      checkpoints: A `checkpointing.TrainCheckpoints` (every worker saves).
      every: The checkpoint interval.
    """

    def __init__(self, checkpoints, every: int):
        self.checkpoints = checkpoints
        self.every = every

    def after_loop(self, step, result, at_end):
        if self.due(step, at_end):
            self.checkpoints.save()


class EvaluationHook(Hook):
    """Runs `evaluate_fn(model=..., step=...)` every `every` steps, before the end.

    The evaluation at the end of the run is the trainer's own (its result is
    returned).
    """

    def __init__(self, evaluate_fn, model, every: int):
        self.evaluate_fn = evaluate_fn
        self.model = model
        self.every = every

    def after_loop(self, step, result, at_end):
        if self.every and step % self.every == 0 and not at_end:
            self.evaluate_fn(model=self.model, step=step)
