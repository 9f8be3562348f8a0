"""One run of one job: its attempts (lock, tick claim, the job's work), retried by the policy in
:mod:`maintainer.retry`, and its end reported by :mod:`maintainer.outcome`.

Every run logs ``job_started``, each retry ``job_retrying`` (warning), and the outcome one line.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
import structlog

from maintainer.clock import Clock, utc_now
from maintainer.db import connect
from maintainer.errors import JobFailed, LockHeld, MaintainerError
from maintainer.history import History
from maintainer.job import Job, JobSettings, Result, RunContext, SkipReason
from maintainer.locking import try_lock, unlock
from maintainer.logs import get_logger
from maintainer.notices import watching
from maintainer.outcome import Progress, RunOutcome
from maintainer.retry import RetrySettings, retrying
from maintainer.settings import Settings


@dataclass(frozen=True)
class Run:
    """One finished run: what the job reported plus when, how long, and under which id."""

    job: str
    run_id: str
    dry_run: bool
    started_at: datetime
    duration_ms: int
    result: Result

    def as_dict(self) -> dict[str, Any]:
        return {
            "job": self.job, "run_id": self.run_id, "dry_run": self.dry_run,
            "started_at": self.started_at.isoformat(), "duration_ms": self.duration_ms, **self.result.summary,
        }


CANCEL_TIMEOUT = 2.0  # seconds: a server that does not take the cancel request by then will not take it


@dataclass
class RunControl:
    """How the scheduler stops a run: first by asking (``stop``), then by cancelling its query on the server."""

    stop: threading.Event = field(default_factory=threading.Event)
    cancelled: bool = False
    conn: psycopg.Connection[Any] | None = None

    def cancel(self) -> bool:
        """Ask the server to cancel the run's query; False when the server did not take the request in time."""
        self.cancelled = True
        if self.conn is None:
            return True
        try:
            self.conn.cancel_safe(timeout=CANCEL_TIMEOUT)
        except psycopg.Error:  # CancellationTimeout, or the server is gone: nothing more to ask of it
            return False
        return True


class Cancelled(MaintainerError):
    """The run was stopped by shutdown before or while it worked."""


def run_job(
    settings: Settings,
    job: Job[Any],
    *,
    dry_run: bool = False,
    clock: Clock = utc_now,
    monotonic: Callable[[], float] = time.monotonic,
    control: RunControl | None = None,
    retry: RetrySettings | None = None,
    history: History | None = None,
    tick: datetime | None = None,
) -> Run:
    """Run ``job`` (or its dry run) once, retrying transient failures when ``retry`` is given.

    A real run holds the job's advisory lock on its working connection; if another run holds it,
    LockHeld is raised at once. With a ``tick`` (the scheduled time this run is for) and a history, the
    run also claims that tick, so replicas run each scheduled run once, not once each. A dry run takes
    no lock and works in one read-only REPEATABLE READ transaction that is rolled back: whatever the
    job's code does, the server refuses to change anything.
    """
    settings.require_database_url()
    control = control or RunControl()
    run_id = str(uuid.uuid4())
    log = get_logger(job=job.name, run_id=run_id, dry_run=dry_run,
                     **({"scheduled_for": tick.isoformat()} if tick else {}))
    log.info("job_started")
    started_at, started = clock(), monotonic()
    attempt = _Attempt(settings, job, run_id, dry_run, clock, monotonic, control, history, tick, log)
    outcome = RunOutcome(job, run_id, dry_run, log, history, clock, monotonic, started, started_at, attempt.progress)
    try:
        result = retrying(retry, control.stop, outcome.retrying)(attempt)
    except LockHeld as skipped:
        outcome.skipped(skipped.reason)
        raise
    except Cancelled as error:
        outcome.cancelled(error)
        raise
    except Exception as error:
        outcome.failed(error)
        raise
    outcome.succeeded(result)
    return Run(job.name, run_id, dry_run, started_at, outcome.elapsed_ms(), result)


@dataclass
class _Attempt:
    """One attempt of a run, called again for each retry: connect, lock and claim (a real run) or open a
    read-only snapshot (a dry run), do the job's work, unlock."""

    settings: Settings
    job: Job[Any]
    run_id: str
    dry_run: bool
    clock: Clock
    monotonic: Callable[[], float]
    control: RunControl
    history: History | None
    tick: datetime | None
    log: structlog.typing.FilteringBoundLogger
    progress: Progress = field(default_factory=Progress)

    def __call__(self) -> Result:
        self.progress.attempts += 1
        if self.control.stop.is_set():
            raise Cancelled(f"{self.job.name}: stopped before it started")
        job_settings = self.settings.job_settings(self.job.name)
        try:
            with connect(self.settings, self.job.name, lock_timeout=job_settings.lock_timeout,
                         statement_timeout=job_settings.statement_timeout, autocommit=not self.dry_run) as conn:
                self.control.conn = conn
                return self._work(conn, job_settings)
        except psycopg.Error as error:
            if self.control.cancelled:
                raise Cancelled(f"{self.job.name}: cancelled on the server at shutdown") from error
            raise JobFailed.from_database(self.job.name, error) from error
        finally:
            self.control.conn = None

    def _work(self, conn: psycopg.Connection[Any], job_settings: JobSettings) -> Result:
        name, history = self.job.name, self.history
        if self.dry_run:
            conn.read_only = True
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        else:
            _take_lock(conn, name, self.progress.attempts)
            self.progress.locked_at = self.progress.locked_at or self.clock()
            if self.tick and history and not history.claim_tick(conn, name, self.tick, self.run_id):
                raise LockHeld(f"{name}: the run scheduled for {self.tick} already ran", SkipReason.ALREADY_RAN)
        context = RunContext(
            job=name, run_id=self.run_id, conn=conn, settings=job_settings, clock=self.clock, log=self.log,
            monotonic=self.monotonic, stop=self.control.stop,
            last_complete=history.last_complete(conn, name) if history else None, rows=self.progress.rows,
            timezone_source="session_timezone" if self.settings.session_timezone else "database",
        )
        try:
            with watching(name, conn, self.log):
                result = self.job.dry_run(context) if self.dry_run else self.job.run(context)
        finally:
            self.progress.work_ended_at = self.clock()
        if self.dry_run:
            conn.rollback()
        else:
            unlock(conn, name)
        return result


def _take_lock(conn: psycopg.Connection[Any], job: str, attempt: int) -> None:
    if try_lock(conn, job):
        return
    if attempt > 1:
        # Most likely the session of our own failed attempt, not yet gone from the server: wait for it.
        raise JobFailed(job, "the lock is still held, probably by the previous attempt's session", transient=True)
    raise LockHeld(f"{job}: another run holds its lock", SkipReason.LOCK_HELD)
