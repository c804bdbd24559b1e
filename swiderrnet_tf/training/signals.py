"""SIGTERM (preemption) handling for the training loop.

A cluster scheduler, Kubernetes or a preemptible VM ends a job with SIGTERM
and a short grace period. The handler only records the request; the training
loop looks at it between host loops, agrees with the other workers, saves a
checkpoint and stops. Keep a host loop (`steps_per_loop` steps) well under the
grace period (30 s on preemptible Cloud VMs).
"""

import signal
import threading

from absl import logging

# Exit status of a run stopped by SIGTERM after saving (128 + SIGTERM).
PREEMPTED_EXIT_CODE = 128 + signal.SIGTERM


class StopRequest:
    """Records SIGTERM while installed; `requested` tells whether it came."""

    def __init__(self):
        self.requested = False
        self._previous = None
        self._installed = False

    def _handle(self, signum, frame):
        del frame
        logging.warning(
            "Received signal %d: saving a checkpoint after the current host loop", signum
        )
        self.requested = True

    def install(self) -> None:
        """Installs the handler (only possible from the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            logging.warning("Not in the main thread: SIGTERM will not save a checkpoint")
            return
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        self._installed = True

    def uninstall(self) -> None:
        """Restores the previous handler."""
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False
