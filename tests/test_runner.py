"""What the engine guarantees every job, whatever the job's own code does."""

from __future__ import annotations

import dataclasses
import io
import json
from typing import Any

import psycopg
import pytest

import jobs
from maintainer import logs
from maintainer.db import failing_on_warnings
from maintainer.errors import JobFailed
from maintainer.job import Result, RunContext
from maintainer.runner import run_job
from maintainer.settings import Settings, load_settings
from tests.parlant import add_session, days_ago, event_ids

CLEANUP = jobs.REGISTRY["cleanup-old-events"]


def _session_state(ctx: RunContext) -> Result:
    row = ctx.conn.execute(
        "SELECT application_name, current_setting('TimeZone'), current_setting('lock_timeout'),"
        " current_setting('statement_timeout') FROM pg_stat_activity WHERE pid = pg_backend_pid()"
    ).fetchone()
    assert row is not None
    names = ("application_name", "timezone", "lock_timeout", "statement_timeout")
    return Result(summary=dict(zip(names, row, strict=True)), report="")


def test_connection_names_the_job_and_sets_time_zone_and_timeouts(database_url: str) -> None:
    probe = dataclasses.replace(CLEANUP, run=_session_state)
    settings = load_settings(
        database_url=database_url, timezone="Europe/Berlin",
        jobs={"cleanup_old_events": {"lock_timeout": "3s", "statement_timeout": "2min"}},
    )

    state = run_job(settings, probe).result.summary

    assert state == {
        "application_name": "maintainer:cleanup-old-events", "timezone": "Europe/Berlin",
        "lock_timeout": "3s", "statement_timeout": "2min",
    }


def _delete_everything(ctx: RunContext) -> Result:
    ctx.conn.execute("DELETE FROM parlant_event")
    return Result(summary={}, report="")


def test_dry_run_cannot_change_anything_even_if_the_job_tries(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    add_session(conn, "completed", days_ago(150), [days_ago(160)])
    careless = dataclasses.replace(CLEANUP, dry_run=_delete_everything)

    with pytest.raises(JobFailed) as failure:
        run_job(settings, careless, dry_run=True)

    assert failure.value.sqlstate == "25006"  # read_only_sql_transaction
    assert len(event_ids(conn)) == 1


def test_failure_is_logged_with_sqlstate_and_error_type(database_url: str) -> None:
    stream = io.StringIO()
    logs.configure("json", stream=stream)
    settings = load_settings(database_url=database_url, jobs={"cleanup_old_events": {"event_table": "missing"}})

    with pytest.raises(JobFailed):
        run_job(settings, CLEANUP)

    started, failed = (json.loads(line) for line in stream.getvalue().splitlines())
    assert started["event"] == "job_started"
    assert failed["event"] == "job_failed"
    assert failed["level"] == "error"
    assert failed["sqlstate"] == "42P01"
    assert failed["error_type"] == "UndefinedTable"
    assert '"missing" does not exist' in failed["error"]
    assert failed["run_id"] == started["run_id"]
    assert failed["timestamp"].endswith("Z")


def test_a_server_warning_during_maintenance_fails_the_job(conn: psycopg.Connection[Any]) -> None:
    # What VACUUM and ANALYZE do when they skip a table: a WARNING, and the statement "succeeds".
    with pytest.raises(JobFailed) as failure, failing_on_warnings("update-statistics", conn):
        conn.execute("""DO $$ BEGIN
            RAISE WARNING 'skipping "parlant_event" --- only table or database owner can analyze it'
            USING HINT = 'run as the owner';
        END $$""")

    assert 'PostgreSQL warned: skipping "parlant_event"' in str(failure.value)
    assert failure.value.fix == "run as the owner"
