"""Progress of long work on the console: one bar for every command, one duration format.

`ProgressBar` draws `description [#####.....] done/total rate unit/s, elapsed
1m05s, ETA 3m10s` on stderr: redrawn in place on a terminal, one line per
tenth of the work otherwise (log files, CI). The converters, `predict` and
the evaluation use it; the trainer's log lines (`training.progress`) and the
bar format times with `format_duration`.
"""

import sys
import time


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


class ProgressBar:
    """A progress bar with rate, elapsed time and ETA.

    Args:
      total: Units of work (images, records).
      description: What is being done, e.g. `val: 4 shards`.
      unit: Name of a unit, in the rate.
      stream: Where to draw (default `sys.stderr`).
      clock: Seconds since some origin (tests pass a fake clock).
    """

    WIDTH = 30

    def __init__(self, total: int, description: str, *, unit="img", stream=None, clock=None):
        self.total = max(int(total), 1)
        self.description = description
        self.unit = unit
        self._stream = stream or sys.stderr
        self._clock = clock or time.monotonic
        self._start = self._clock()
        self.done = 0
        self._last_tenth = -1
        self._tty = bool(getattr(self._stream, "isatty", lambda: False)())

    def update(self, count: int = 1) -> None:
        """Adds `count` finished units and redraws."""
        self.done = min(self.done + count, self.total)
        tenth = 10 * self.done // self.total
        if self._tty:
            self._draw(end="")
        elif tenth != self._last_tenth:
            self._last_tenth = tenth
            self._draw(end="\n")

    def close(self) -> None:
        """Ends the bar's line on a terminal."""
        if self._tty:
            self._draw(end="\n")

    def line(self) -> str:
        """The bar as text, without line ending."""
        elapsed = self._clock() - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        filled = self.WIDTH * self.done // self.total
        bar = "#" * filled + "." * (self.WIDTH - filled)
        text = (
            f"{self.description} [{bar}] {self.done}/{self.total} {rate:.1f} {self.unit}/s, "
            f"elapsed {format_duration(elapsed)}"
        )
        if 0 < self.done < self.total:
            text += f", ETA {format_duration((self.total - self.done) / rate)}"
        return text

    def _draw(self, end: str) -> None:
        prefix = "\r" if self._tty else ""
        self._stream.write(f"{prefix}{self.line()}{end}")
        self._stream.flush()
