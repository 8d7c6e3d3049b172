"""SIGINT/SIGTERM -> finish the current step, save a checkpoint, exit.

The handler only records the signal; the loop checks it between optimizer steps (all ranks agree
through one all-reduce), so a checkpoint is never taken mid-update. A second Ctrl-C interrupts
at once, as users expect when a save takes too long.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType


class StopRequest:
    """Installs the handlers on ``__enter__`` (main thread only) and restores them on exit."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now
        self.signal = signum
