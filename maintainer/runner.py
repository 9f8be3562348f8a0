"""One run of one job: connection, timing, logging, and turning database errors into JobFailed."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from maintainer.db import connect
from maintainer.errors import JobFailed, MaintainerError
from maintainer.job import Clock, Job, Result, RunContext
from maintainer.logs import get_logger
from maintainer.settings import Settings


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


def run_job(
    settings: Settings,
    job: Job,
    *,
    dry_run: bool = False,
    clock: Clock = utc_now,
    monotonic: Callable[[], float] = time.monotonic,
    stop: threading.Event | None = None,
) -> Run:
    """Run ``job`` (or its dry run) once and log ``job_started`` then ``job_succeeded`` or ``job_failed``.

    A dry run works in one read-only REPEATABLE READ transaction that is rolled back: whatever the job's
    code does, the server refuses to change anything, and every number comes from one snapshot.
    """
    settings.require_database_url()
    run_id = str(uuid.uuid4())
    log = get_logger(job=job.name, run_id=run_id, dry_run=dry_run)
    job_settings = settings.job_settings(job.name)
    log.info("job_started")
    started_at, started = clock(), monotonic()
    try:
        with connect(
            settings, job.name, lock_timeout=job_settings.lock_timeout,
            statement_timeout=job_settings.statement_timeout, autocommit=not dry_run,
        ) as conn:
            if dry_run:
                conn.read_only = True
                conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            context = RunContext(
                job=job.name, run_id=run_id, conn=conn, settings=job_settings, clock=clock, log=log,
                monotonic=monotonic, stop=stop or threading.Event(),
            )
            result = job.dry_run(context) if dry_run else job.run(context)
            if dry_run:
                conn.rollback()
    except (psycopg.Error, MaintainerError) as error:
        failure = JobFailed.from_database(job.name, error) if isinstance(error, psycopg.Error) else error
        log.error(
            "job_failed", duration_ms=_elapsed_ms(started, monotonic), error_type=type(error).__name__,
            sqlstate=getattr(failure, "sqlstate", None), error=str(failure),
        )
        if failure is error:
            raise
        raise failure from error
    except Exception as error:
        log.exception(
            "job_failed", duration_ms=_elapsed_ms(started, monotonic), error_type=type(error).__name__,
            error=str(error),
        )
        raise
    run = Run(job.name, run_id, dry_run, started_at, _elapsed_ms(started, monotonic), result)
    log.info("job_succeeded", duration_ms=run.duration_ms, **result.summary)
    return run


def _elapsed_ms(started: float, monotonic: Callable[[], float]) -> int:
    return round((monotonic() - started) * 1000)

