"""Runs of a job in this process, for the engine's tests: settings for a custom job, a run in a thread, and the
run history's rows."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

import jobs
from maintainer.job import Job
from maintainer.runner import Run, run_job
from maintainer.settings import Settings
from tests.support.settings import load_settings

CLEANUP = jobs.REGISTRY.jobs["cleanup-old-events"]
FAST_RETRIES = {"initial_wait": "0.05s", "max_wait": "0.1s"}
HISTORY_TABLE = "maintainer.run_history"  # the default history.table









@dataclass
class BackgroundRun:
    """``run_job`` in a thread, so that the test can act on the database while the job works."""

    thread: threading.Thread = field(init=False)
    run: Run | None = None
    error: BaseException | None = None

    def result(self, timeout: float = 30) -> Run:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the run did not finish within {timeout} s"
        if self.error is not None:
            raise self.error
        assert self.run is not None
        return self.run


def in_background(settings: Settings, job: Job, **options: Any) -> BackgroundRun:
    background = BackgroundRun()

    def work() -> None:
        try:
            background.run = run_job(settings, job, **options)
        except BaseException as error:
            background.error = error

    background.thread = threading.Thread(target=work, name=f"run {job.name}", daemon=True)
    background.thread.start()
    return background


def custom_sql(
    database_url: str, name: str, statement: str, job_settings: dict[str, Any] | None = None, **settings: Any
) -> Settings:
    job = {"schedule": "@daily", "sql": statement, **(job_settings or {})}
    return load_settings(database_url=database_url, custom_jobs={name: job}, **settings)


def history_rows(conn: psycopg.Connection[Any], job: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            "SELECT status, attempts, rows_affected, sqlstate, error FROM maintainer.run_history"
            " WHERE job = %s ORDER BY started_at",
            (job,),
        )
        return cursor.fetchall()


def lock_events(application: psycopg.Connection[Any]) -> None:
    application.execute("LOCK TABLE parlant_event IN ACCESS EXCLUSIVE MODE")


