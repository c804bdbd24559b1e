"""Why a training run stopped early: a non-finite value, or a SIGTERM."""


class NonFiniteError(RuntimeError):
    """A loss, weight or optimizer slot became NaN or infinite; the loop was discarded.

    Attributes:
      step: The first step whose loss was not finite, or the last step of the
        discarded loop when only the update overflowed.
      losses: The losses of that step, by name.
      variable: The first weight or optimizer slot that was not finite after
        the loop, or None.
      last_checkpoint: The newest checkpoint, which holds only finite values.
    """

    def __init__(self, step: int, losses: dict, variable: str | None, last_checkpoint: str | None):
        self.step = step
        self.losses = losses
        self.variable = variable
        self.last_checkpoint = last_checkpoint
        values = ", ".join(f"{k}={v:.4g}" for k, v in losses.items())
        what = f"non-finite loss at step {step} ({values})"
        if all(v == v and abs(v) != float("inf") for v in losses.values()):
            what = f"the update of step {step} made {variable} non-finite (losses {values})"
        elif variable:
            what += f", and {variable} is no longer finite"
        good = last_checkpoint or "none (the run restarts from step 0)"
        super().__init__(
            f"{what}; the loop was discarded and nothing was saved. "
            f"Last good checkpoint: {good}. Running the same command again resumes from it; "
            "if it recurs, lower train.learning_rate or set train.clip_gradient_norm."
        )


class PreemptedError(RuntimeError):
    """SIGTERM arrived; a checkpoint was saved and the run stopped."""

    def __init__(self, step: int, checkpoint: str | None):
        self.step = step
        self.checkpoint = checkpoint
        super().__init__(f"stopped by SIGTERM at step {step}; saved {checkpoint}")
