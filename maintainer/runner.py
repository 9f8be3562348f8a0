"""One run of one job: lock, retries, timing, logging, history.

Every run logs ``job_started`` and then exactly one of ``job_succeeded``, ``job_failed``,
``job_cancelled`` or ``job_skipped`` (another run holds the job's lock); each retry logs ``job_retrying``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
import tenacity

from maintainer import metrics
from maintainer.db import connect
from maintainer.errors import JobFailed, LockHeld, MaintainerError
from maintainer.history import History, RunRecord
from maintainer.job import Clock, Job, Result, RowCount, RunContext
from maintainer.locking import try_lock, unlock
from maintainer.logs import get_logger
from maintainer.notices import watching
from maintainer.settings import RetrySettings, Settings


def utc_now() -> datetime:
    return datetime.now(UTC)


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


@dataclass
class _Progress:
    """What the attempts of one run have done so far."""

    attempts: int = 0
    locked_at: datetime | None = None  # when the run first held its lock: history's started_at
    work_ended_at: datetime | None = None  # when its work ended, before the lock was released
    rows: RowCount = field(default_factory=RowCount)  # committed by every attempt


def run_job(
    settings: Settings,
    job: Job,
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
    job_settings = settings.job_settings(job.name)
    progress = _Progress()
    log.info("job_started")
    started_at, started = clock(), monotonic()

    def attempt() -> Result:
        progress.attempts += 1
        if control.stop.is_set():
            raise Cancelled(f"{job.name}: stopped before it started")
        try:
            with connect(
                settings, job.name, lock_timeout=job_settings.lock_timeout,
                statement_timeout=job_settings.statement_timeout, autocommit=not dry_run,
            ) as conn:
                control.conn = conn
                if dry_run:
                    conn.read_only = True
                    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                else:
                    _take_lock(conn, job.name, progress.attempts)
                    progress.locked_at = progress.locked_at or clock()
                    if tick and history and not history.claim_tick(conn, job.name, tick, run_id):
                        raise LockHeld(f"{job.name}: the run scheduled for {tick} already ran", "already_ran")
                context = RunContext(
                    job=job.name, run_id=run_id, conn=conn, settings=job_settings, clock=clock, log=log,
                    monotonic=monotonic, stop=control.stop,
                    last_complete=history.last_complete(conn, job.name) if history else None,
                    rows=progress.rows,
                    timezone_source="session_timezone" if settings.session_timezone else "database",
                )
                try:
                    with watching(job.name, conn, log):
                        result = job.dry_run(context) if dry_run else job.run(context)
                finally:
                    progress.work_ended_at = clock()
                if dry_run:
                    conn.rollback()
                else:
                    unlock(conn, job.name)
                return result
        except psycopg.Error as error:
            if control.cancelled:
                raise Cancelled(f"{job.name}: cancelled on the server at shutdown") from error
            raise JobFailed.from_database(job.name, error) from error
        finally:
            control.conn = None

    def elapsed_ms() -> int:
        return round((monotonic() - started) * 1000)

    def finish(status: str, **fields: Any) -> int:
        """Count and record a finished real run; returns its duration in ms."""
        duration_ms = elapsed_ms()
        if dry_run:
            return duration_ms
        metrics.RUNS.labels(job.name, status).inc()
        metrics.DURATION.labels(job.name).observe(duration_ms / 1000)
        if job.deletes_rows:
            metrics.ROWS_DELETED.labels(job.name).inc(progress.rows.total)
        if status == "succeeded":
            metrics.LAST_SUCCESS.labels(job.name).set(clock().timestamp())
        if history is not None:
            history.record(RunRecord(
                job.name, run_id, progress.locked_at or started_at, progress.work_ended_at or clock(), status,
                progress.attempts, progress.rows.total, fields.get("sqlstate"), fields.get("error"),
                fields.get("stop_reason"), fields.get("result"),
            ))
        return duration_ms

    try:
        result = _retrying(retry, control.stop, log, job.name)(attempt)
    except LockHeld as skipped:
        metrics.SKIPS.labels(job.name, skipped.reason).inc()
        log.info("job_skipped", reason=skipped.reason, duration_ms=elapsed_ms())
        raise
    except Cancelled as error:
        log.warning("job_cancelled", duration_ms=finish("cancelled", error=str(error)), attempts=progress.attempts,
                    rows_affected=progress.rows.total)
        raise
    except MaintainerError as error:
        sqlstate = getattr(error, "sqlstate", None)
        duration_ms = finish("failed", sqlstate=sqlstate, error=str(error))
        cause = error.__cause__ or error
        log.error("job_failed", duration_ms=duration_ms, attempts=progress.attempts, error_type=type(cause).__name__,
                  sqlstate=sqlstate, error=str(error), rows_affected=progress.rows.total)
        raise
    except Exception as error:
        duration_ms = finish("failed", error=f"{type(error).__name__}: {error}")
        log.exception("job_failed", duration_ms=duration_ms, attempts=progress.attempts,
                      error_type=type(error).__name__, error=str(error), rows_affected=progress.rows.total)
        raise
    if result.stop_reason == "shutdown":
        log.warning("job_cancelled", duration_ms=finish("cancelled"), attempts=progress.attempts, **result.summary)
    else:
        duration_ms = finish("succeeded", stop_reason=result.stop_reason, result=result.summary)
        retried = {"attempts": progress.attempts} if progress.attempts > 1 else {}
        log.info("job_succeeded", duration_ms=duration_ms, **retried, **result.summary)
    return Run(job.name, run_id, dry_run, started_at, elapsed_ms(), result)


def _take_lock(conn: psycopg.Connection[Any], job: str, attempt: int) -> None:
    if try_lock(conn, job):
        return
    if attempt > 1:
        # Most likely the session of our own failed attempt, not yet gone from the server: wait for it.
        raise JobFailed(job, "the lock is still held, probably by the previous attempt's session", transient=True)
    raise LockHeld(f"{job}: another run holds its lock", "lock_held")


def _retrying(policy: RetrySettings | None, stop: threading.Event, log: Any, job: str) -> tenacity.Retrying:
    """Retry transient failures only, with exponential backoff and jitter, bounded in attempts and time."""
    if policy is None:
        return tenacity.Retrying(stop=tenacity.stop_after_attempt(1), reraise=True)

    def log_retry(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        metrics.RETRIES.labels(job).inc()
        log.warning(
            "job_retrying", attempt=state.attempt_number, wait_s=round(state.upcoming_sleep, 2),
            error_type=type(getattr(error, "__cause__", None) or error).__name__,
            sqlstate=getattr(error, "sqlstate", None), error=str(error),
        )

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda error: isinstance(error, JobFailed) and error.transient),
        stop=(
            tenacity.stop_after_attempt(policy.max_attempts)
            | tenacity.stop_after_delay(policy.max_total.total_seconds())
            | tenacity.stop_when_event_set(stop)
        ),
        # initial_wait, doubling each attempt, plus up to initial_wait of jitter so replicas do not retry in step
        wait=tenacity.wait_exponential_jitter(
            multiplier=policy.initial_wait.total_seconds(), jitter=policy.initial_wait.total_seconds(),
            max=policy.max_wait.total_seconds(),
        ),
        sleep=lambda seconds: _interruptible_sleep(stop, seconds),
        before_sleep=log_retry,
        reraise=True,
    )


def _interruptible_sleep(stop: threading.Event, seconds: float) -> None:
    """Wait between attempts, but not past a shutdown: the next attempt then sees the stop and cancels."""
    stop.wait(seconds)
