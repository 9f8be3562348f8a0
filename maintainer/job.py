"""The contract between the engine and the jobs: what a job is, what it is given, what it returns.

A job is data plus two functions: ``run`` does the work, ``dry_run`` reports what ``run`` would do
without changing anything. Both receive a :class:`RunContext` and return a :class:`Result`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Generic, Literal, TypeVar

import psycopg
import structlog
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, field_validator

from maintainer.clock import Clock
from maintainer.schedule import parse_schedule

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


class Outcome(StrEnum):
    """How a real run ended: the ``outcome`` label of ``maintainer_runs_total`` and the history's ``status``."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # stopped by shutdown, before or while it worked


class StopReason(StrEnum):
    """Why a run that did not fail stopped before it had done all its work."""

    SHUTDOWN = "shutdown"  # the daemon was told to stop: the run counts as cancelled
    MAX_RUN_TIME = "max_run_time"  # the job's own time limit: the run succeeded, the next one does the rest


class SkipReason(StrEnum):
    """Why a scheduled run did not run: the ``reason`` of ``job_skipped`` and of ``maintainer_skips_total``."""

    LOCK_HELD = "lock_held"  # another run holds the job's lock
    ALREADY_RAN = "already_ran"  # another replica already ran this scheduled time
    STILL_RUNNING = "still_running"  # this process's previous run of the job was still running
    MISSED = "missed"  # the scheduler woke too late for it (past misfire_grace_time)


@dataclass
class RowCount:
    """Rows a run has changed and committed, over all its attempts.

    ``total``: the sum; a job calls ``add`` as it commits, and the history, the log and the metrics report
    the total whether the run succeeded or not.
    """

    total: int = 0

    def add(self, rows: int) -> None:
        self.total += rows


S = TypeVar("S", bound=JobSettings)


@dataclass(frozen=True)
class RunContext(Generic[S]):
    """Everything one run of a job may use: the job never opens connections or reads the clock itself.

    - ``job``, ``run_id``: the job's name and this run's id, as the log lines carry them;
    - ``conn``: the run's connection (autocommit for a real run; a read-only transaction for a dry run);
    - ``settings``: the job's own settings;
    - ``clock``, ``monotonic``: the time, injected so tests can fix it;
    - ``log``: a logger bound to the job and the run;
    - ``stop``: set when the run should stop between batches (shutdown);
    - ``last_complete``: the result fields of the job's last run that did all its work, from the run
      history (the cleanup's high-water mark); None without one, or without a history;
    - ``rows``: where the job adds the rows it commits;
    - ``timezone_source``: where the session TimeZone came from, ``session_timezone`` (the setting) or
      ``database`` (the database's own default).
    """

    job: str
    run_id: str
    conn: psycopg.Connection[Any]
    settings: S
    clock: Clock
    log: structlog.typing.FilteringBoundLogger
    monotonic: Callable[[], float]
    stop: threading.Event = field(default_factory=threading.Event)
    last_complete: dict[str, Any] | None = None
    rows: RowCount = field(default_factory=RowCount)
    timezone_source: Literal["session_timezone", "database"] = "database"

    def should_stop(self) -> bool:
        """True once the run is asked to stop: a batched job checks it between batches."""
        return self.stop.is_set()


@dataclass(frozen=True)
class Result:
    """What a run did.

    - ``summary``: the result fields, for the outcome log line, the JSON report and the run history;
    - ``report``: the same for people (``run-once`` prints it);
    - ``stop_reason``: why the run stopped before doing all its work, or None when it did it all.
    """

    summary: dict[str, Any]
    report: str
    stop_reason: StopReason | None = None


@dataclass(frozen=True)
class Check:
    """One prerequisite of a job, as ``maintainer check`` prints it on one line.

    - ``job``: the job it is for (or ``server``), ``subject``: what was checked (a table, a privilege);
    - ``ok``: whether the job can work; ``detail``: what was found;
    - ``fix``: what to do about it, a statement to paste where there is one;
    - ``warning``: an ok line that still deserves the operator's attention: the job works, but worse than
      it could (the ``fix`` says how).
    """

    job: str
    subject: str
    ok: bool
    detail: str
    fix: str | None = None
    warning: bool = False


def normalized(statement: str) -> str:
    """SQL as pg_cron commands are compared: case, runs of whitespace, spaces around punctuation, ``$$`` quoting
    and trailing semicolons gone."""
    text = " ".join(statement.strip().strip("$").split()).lower()
    text = re.sub(r"\s*([(),;=<>+*/-])\s*", r"\1", text)
    return text.rstrip(";").strip()


def _recognises_nothing(statement: str) -> dict[str, Any] | None:
    return None


@dataclass(frozen=True)
class Job(Generic[S]):
    """One job: data plus three functions of a :class:`RunContext` over its settings.

    - ``name``: as commands, logs, metrics and the history name it (``cleanup-old-events``);
    - ``description``: one line for ``maintainer list``;
    - ``settings_model``: its settings, with the default schedule; ``[jobs.<settings_key>]`` in TOML;
    - ``run``: does the work; ``dry_run``: reports what ``run`` would do, changing nothing;
    - ``check``: its prerequisites, for ``maintainer check`` and ``/readyz``;
    - ``deletes_rows``: the rows it counts are deleted rows (``maintainer_rows_deleted_total`` counts them);
    - ``recognises``: given a pg_cron command, :func:`normalized`, this job's settings if it is the guide's
      statement for this job, else None (``maintainer import-pg-cron``).
    """

    name: str
    description: str
    settings_model: type[S]
    run: Callable[[RunContext[S]], Result]
    dry_run: Callable[[RunContext[S]], Result]
    check: Callable[[RunContext[S]], list[Check]]
    deletes_rows: bool = False
    recognises: Callable[[str], dict[str, Any] | None] = _recognises_nothing

    @property
    def settings_key(self) -> str:
        """The key under ``[jobs]`` in TOML and in environment variables (``cleanup_old_events``)."""
        return self.name.replace("-", "_")
