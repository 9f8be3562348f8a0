"""Time as an argument: the clocks runs, the daemon and the commands are given, so that tests can fix them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware."""


def utc_now() -> datetime:
    return datetime.now(UTC)
