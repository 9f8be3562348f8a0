"""How the daemon is told to stop: SIGTERM, SIGINT and SIGHUP only set an event, and say which signal it was.

SIGHUP (a closed terminal; "reload" to most supervisors) stops the daemon as SIGTERM does: the configuration
is read at start, so a supervisor's reload is a restart.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class StopRequest:
    """``event`` is set once a stop signal arrives; ``signal`` names the first one (``SIGTERM``)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: str | None = None

    def _on_signal(self, received: int, frame: FrameType | None) -> None:
        self.signal = self.signal or signal.Signals(received).name
        self.event.set()


@contextmanager
def stop_on_signals(request: StopRequest) -> Iterator[StopRequest]:
    """Route the stop signals to ``request`` while inside, and restore the earlier handlers after."""
    earlier = {signum: signal.signal(signum, request._on_signal) for signum in STOP_SIGNALS}
    try:
        yield request
    finally:
        for signum, handler in earlier.items():
            signal.signal(signum, handler)
