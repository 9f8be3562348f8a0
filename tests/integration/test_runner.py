"""What the engine guarantees every job, whatever the job's own code does."""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg
import pytest

import jobs
from maintainer.errors import JobFailed
from maintainer.job import Result, RunContext
from maintainer.runner import run_job
from maintainer.settings import Settings
from tests.support.logs import LogLines
from tests.support.parlant import add_session, days_ago, event_ids
from tests.support.settings import load_settings

CLEANUP = jobs.REGISTRY.jobs["cleanup-old-events"]


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


def test_failure_is_logged_with_sqlstate_and_error_type(database_url: str, log: LogLines) -> None:
    settings = load_settings(database_url=database_url, jobs={"cleanup_old_events": {"event_table": "missing"}})

    with pytest.raises(JobFailed):
        run_job(settings, CLEANUP)

    started, failed = log.all()
    assert started["event"] == "job_started"
    assert failed["event"] == "job_failed"
    assert failed["level"] == "error"
    assert failed["sqlstate"] == "42P01"
    assert failed["error_type"] == "UndefinedTable"
    assert '"missing" does not exist' in failed["error"]
    assert failed["run_id"] == started["run_id"]
    assert failed["timestamp"].endswith("Z")


def custom(database_url: str, name: str, sql: str | list[str], **options: Any) -> Settings:
    return load_settings(database_url=database_url, custom_jobs={name: {"schedule": "@daily", "sql": sql, **options}})


@pytest.mark.parametrize("statement", ["VACUUM (ANALYZE) parlant_event", "ANALYZE parlant_agent, parlant_event"])
def test_a_custom_job_whose_work_the_server_skipped_fails_with_the_warning_and_the_fix(
    other_role_url: str, statement: str
) -> None:
    # The role may read and write the tables but owns none: VACUUM and ANALYZE skip them with a WARNING.
    settings = custom(other_role_url, "custom-maintenance", statement, autocommit=True)

    with pytest.raises(JobFailed) as failure:
        run_job(settings, settings.job("custom-maintenance"))

    message = str(failure.value)
    assert "PostgreSQL warned: " in message and "skipping" in message and "parlant_" in message
    assert failure.value.fix is not None
    assert ("GRANT MAINTAIN ON" in failure.value.fix) or ("connect as the owner of" in failure.value.fix)


def test_notices_are_logged_and_do_not_fail_the_job(database_url: str, log: LogLines) -> None:
    settings = custom(database_url, "noisy", "DO $$ BEGIN RAISE NOTICE 'index maintenance completed'; END $$")

    run_job(settings, settings.job("noisy"))

    notices = [line for line in log.all() if line["event"] == "server_notice"]
    assert [(line["message"], line["level"], line["job"]) for line in notices] == [
        ("index maintenance completed", "info", "noisy")]
