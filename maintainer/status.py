"""What each job is and did: the rows of ``maintainer list`` (schedules, next runs) and ``maintainer status``
(last run, last success, last error, from the run history)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import psycopg

from maintainer import logs
from maintainer.errors import MaintainerError
from maintainer.history import History
from maintainer.schedule import next_fire_times
from maintainer.settings import Settings


def next_run(settings: Settings, name: str, now: datetime) -> datetime | None:
    """The job's next scheduled run after ``now``; None when it is disabled."""
    return next_fire_times(settings.trigger(name), now, 1)[0] if settings.job_settings(name).enabled else None


def job_table(settings: Settings, now: datetime) -> list[dict[str, Any]]:
    """Each job: its name, schedule, whether it is enabled, its next run and what it does."""
    rows = []
    for job in settings.available_jobs().values():
        job_settings = settings.job_settings(job.name)
        rows.append({"job": job.name, "schedule": job_settings.schedule, "enabled": job_settings.enabled,
                     "next_run": next_run(settings, job.name, now), "description": job.description})
    return rows


class Status(NamedTuple):
    history: str  # what the run history holds: "recorded", or why it holds nothing
    jobs: list[dict[str, Any]]


def job_status(settings: Settings, now: datetime) -> Status:
    """Last run, last success, last error and next run of every job, from the run history: what is known on
    day one too (no history yet, or history off). MaintainerError only when the database cannot be read."""
    last_runs: dict[str, dict[str, Any]] = {}
    history = "recorded"
    if not settings.history.enabled:
        history = "off (history.enabled = false): no runs are recorded"
    else:
        try:
            last_runs = History(settings).last_runs()
        except psycopg.errors.UndefinedTable:
            history = f"empty: no run recorded yet ({settings.history.table} does not exist)"
        except psycopg.Error as error:
            message = " ".join((error.diag.message_primary or str(error)).split())
            raise MaintainerError(f"cannot read the run history ({settings.history.table}):"
                                  f" {logs.redact(message)}") from None
    empty = dict.fromkeys(("last_run_at", "last_status", "last_success_at", "last_error_at", "last_error"))
    return Status(history, [
        {"job": name, "enabled": settings.job_settings(name).enabled, **last_runs.get(name, empty),
         "next_run_at": next_run(settings, name, now)}
        for name in settings.available_jobs()
    ])
