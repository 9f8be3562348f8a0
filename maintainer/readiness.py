"""What the daemon's probes answer: ``/healthz`` (alive: a fresh heartbeat, not stopping) and ``/readyz``
(ready: the database answers and every prerequisite of ``maintainer check`` holds)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from maintainer.check import run_checks
from maintainer.settings import Settings

Answer = tuple[bool, dict[str, Any]]


def liveness(now: datetime, last_heartbeat: datetime | None, started_at: datetime, heartbeat_interval: timedelta,
             stopping: bool, running: list[str]) -> Answer:
    """Alive: not stopping, and the heartbeat (run by the scheduler itself) at most three intervals old.

    Before the first heartbeat the start counts as one: the listener opens before the scheduler's first
    beat, and a probe in that gap must not restart a daemon that is only starting."""
    fresh = now - (last_heartbeat or started_at) <= 3 * heartbeat_interval
    ok = fresh and not stopping
    return ok, {"status": "ok" if ok else "unhealthy", "stopping": stopping, "last_heartbeat": last_heartbeat,
                "running": running}


def readiness(settings: Settings) -> Answer:
    failed = [dataclasses.asdict(check) for check in run_checks(settings) if not check.ok]
    return not failed, {"status": "ready" if not failed else "not ready", "failed_checks": failed}
