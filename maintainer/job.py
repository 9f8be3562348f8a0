"""The contract between the engine and the jobs: what a job is, what it is given, what it returns.

A job is data plus two functions: ``run`` does the work, ``dry_run`` reports what ``run`` would do
without changing anything. Both receive a :class:`RunContext` and return a :class:`Result`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any

import psycopg
import structlog
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, field_validator

from maintainer.schedule import parse_schedule

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware. Injected so tests can fix the time."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "min": 60, "h": 3600, "d": 86400}


def _parse_duration(value: Any) -> Any:
    """Accept PostgreSQL-style durations (``500ms``, ``5s``, ``2min``, ``1h``, ``1d``) or plain seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError("must be a duration such as 500ms, 5s, 2min, 1h or 1d (0 turns it off)")
        amount, unit = match.groups()
        return timedelta(seconds=float(amount) * _UNIT_SECONDS[unit or "s"])
    return value


Duration = Annotated[timedelta, BeforeValidator(_parse_duration)]

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_$]{0,62}"
_RELATION = re.compile(rf"^{_IDENTIFIER}(\.{_IDENTIFIER})?$")


def _relation_name(value: str) -> str:
    if not _RELATION.match(value):
        raise ValueError("must be a table, view, index or function name, optionally schema-qualified"
                         " (parlant_event, public.parlant_event): letters, digits, _ and $, at most 63 each")
    return value


RelationName = Annotated[str, AfterValidator(_relation_name)]
"""A relation (or function) as configuration names it: ``name`` or ``schema.name``, quoted as written."""


def milliseconds(duration: timedelta) -> int:
    return round(duration.total_seconds() * 1000)


class JobSettings(BaseModel):
    """Settings every job has; each job extends this with its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    schedule: str
    # Maintenance must give way to the application, never queue in front of it holding a lock request.
    lock_timeout: Duration = timedelta(seconds=5)
    statement_timeout: Duration = timedelta(minutes=30)

    @field_validator("schedule")
    @classmethod
    def _valid_schedule(cls, schedule: str) -> str:
        parse_schedule(schedule)
        return schedule


@dataclass
class RowCount:
    """Rows a run has changed and committed, over all its attempts: a job adds them as it commits, and the
    history, the log and the metrics report the total, whether the run succeeded or not."""

    total: int = 0

    def add(self, rows: int) -> None:
        self.total += rows


@dataclass
class RunContext:
    """Everything one run of a job may use. The job never opens connections or reads the clock itself."""

    job: str
    run_id: str
    conn: psycopg.Connection[Any]
    settings: Any  # the job's own JobSettings subclass
    clock: Clock
    log: structlog.typing.FilteringBoundLogger
    monotonic: Callable[[], float]
    stop: threading.Event = field(default_factory=threading.Event)
    # The summary of this job's last run that did all its work (succeeded, not stopped early), from the run
    # history; None without one, or without a history.
    last_complete: dict[str, Any] | None = None
    rows: RowCount = field(default_factory=RowCount)
    # Where the session's TimeZone came from: "session_timezone" (the setting) or "database" (its own default).
    timezone_source: str = "database"


@dataclass
class Result:
    """What a run did: ``summary`` goes into the log line and the JSON report, ``report`` is for people."""

    summary: dict[str, Any]
    report: str
    stop_reason: str | None = None  # "shutdown" when the run stopped early because it was asked to


@dataclass(frozen=True)
class Check:
    """One prerequisite of a job, as ``maintainer check`` reports it.

    ``warning`` marks an ok line that still deserves the operator's attention: the job works, but worse
    than it could (the ``fix`` says how).
    """

    job: str
    subject: str
    ok: bool
    detail: str
    fix: str | None = None
    warning: bool = False


@dataclass(frozen=True)
class Job:
    name: str
    description: str
    settings_model: type[JobSettings]
    run: Callable[[RunContext], Result]
    dry_run: Callable[[RunContext], Result]
    check: Callable[[RunContext], list[Check]]
    deletes_rows: bool = False  # the rows it counts are deleted rows: maintainer_rows_deleted_total counts them
    # Given a pg_cron command, normalized (lower case, no runs of whitespace, no spaces around punctuation, no
    # trailing semicolon): this job's settings if it is the guide's statement for this job, else None.
    recognises: Callable[[str], dict[str, Any] | None] = lambda statement: None

    @property
    def settings_key(self) -> str:
        """The key under ``[jobs]`` in TOML and in environment variables (``cleanup_old_events``)."""
        return self.name.replace("-", "_")
