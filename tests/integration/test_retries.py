"""Retries: what another attempt can cure is retried, with backoff, within bounds; the rows every attempt
committed are counted."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from maintainer import metrics
from maintainer.errors import JobFailed
from maintainer.history import History
from maintainer.runner import run_job
from maintainer.settings import Settings
from tests.support.logs import LogLines
from tests.support.parlant import add_session, days_ago, event_ids, fixed_clock
from tests.support.runs import (
    CLEANUP,
    FAST_RETRIES,
    custom_sql,
    history_rows,
    in_background,
    lock_events,
)
from tests.support.settings import load_settings
from tests.support.waiting import wait_for


def test_run_whose_connection_is_killed_is_retried_and_succeeds(
    database_url: str, conn: psycopg.Connection[Any], log: LogLines
) -> None:
    settings = custom_sql(database_url, "victim", "SELECT pg_sleep(2)",
                          retry={"max_attempts": 3, **FAST_RETRIES})
    background = in_background(settings, settings.job("victim"), retry=settings.retry,
                               history=History(settings))

    (pid,) = wait_for(lambda: conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'maintainer:victim' AND state = 'active'"
        " AND query LIKE %s", ("%pg_sleep%",),
    ).fetchone(), 10, "the victim's query to run")
    # With a timeout, pg_terminate_backend returns once the backend is gone (and its locks with it).
    assert conn.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,)).fetchone() == (True,)
    background.result()

    assert log.events() == ["job_started", "job_retrying", "job_succeeded"]
    (retrying,) = log.named("job_retrying")
    assert (retrying["attempt"], retrying["sqlstate"], retrying["error_type"]) == (1, "57P01", "AdminShutdown")
    assert retrying["level"] == "warning"
    assert "terminating connection due to administrator command" in retrying["error"]
    assert log.named("job_succeeded")[0]["attempts"] == 2
    assert [(row["status"], row["attempts"], row["error"]) for row in history_rows(conn, "victim")] == [
        ("succeeded", 2, None)
    ]


def test_cleanup_blocked_past_its_lock_timeout_is_retried_and_finishes_once_the_lock_is_gone(
    database_url: str, conn: psycopg.Connection[Any], application: psycopg.Connection[Any], log: LogLines
) -> None:
    _, doomed = add_session(conn, "completed", days_ago(150), [days_ago(200), days_ago(160), days_ago(151)])
    _, recently_ended = add_session(conn, "completed", days_ago(10), [days_ago(200)])
    _, active = add_session(conn, "active", None, [days_ago(300), days_ago(1)])
    settings = load_settings(database_url=database_url, jobs={"cleanup_old_events": {"lock_timeout": "200ms"}},
                             retry={"max_attempts": 10, **FAST_RETRIES})
    lock_events(application)
    background = in_background(settings, CLEANUP, clock=fixed_clock, retry=settings.retry,
                               history=History(settings))

    first_retry = wait_for(lambda: log.named("job_retrying"), 10, "the first job_retrying line")[0]
    application.commit()
    run = background.result()

    assert (first_retry["attempt"], first_retry["sqlstate"]) == (1, "55P03")
    assert first_retry["error_type"] == "LockNotAvailable"
    assert event_ids(conn) == {*recently_ended, *active}
    assert run.result.summary["rows_deleted"] == len(doomed)
    retries = log.named("job_retrying")
    assert [line["attempt"] for line in retries] == list(range(1, len(retries) + 1))
    assert {line["sqlstate"] for line in retries} == {"55P03"}
    (succeeded,) = log.named("job_succeeded")
    assert succeeded["attempts"] == len(retries) + 1
    assert history_rows(conn, CLEANUP.name) == [
        {"status": "succeeded", "attempts": len(retries) + 1, "rows_affected": len(doomed), "sqlstate": None,
         "error": None}
    ]


def test_permanent_failure_is_not_retried(database_url: str, conn: psycopg.Connection[Any], log: LogLines) -> None:
    settings = custom_sql(database_url, "broken", "SELECT * FROM no_such_table",
                          retry={"max_attempts": 5, **FAST_RETRIES})

    with pytest.raises(JobFailed) as failure:
        run_job(settings, settings.job("broken"), retry=settings.retry, history=History(settings))

    assert failure.value.sqlstate == "42P01"
    assert log.events() == ["job_started", "job_failed"]
    (failed,) = log.named("job_failed")
    assert (failed["attempts"], failed["sqlstate"], failed["error_type"]) == (1, "42P01", "UndefinedTable")
    assert history_rows(conn, "broken") == [
        {"status": "failed", "attempts": 1, "rows_affected": 0, "sqlstate": "42P01", "error": str(failure.value)}
    ]
    assert 'relation "no_such_table" does not exist' in str(failure.value)


def test_retries_stop_at_max_attempts(
    database_url: str, conn: psycopg.Connection[Any], application: psycopg.Connection[Any], log: LogLines
) -> None:
    _, doomed = add_session(conn, "completed", days_ago(150), [days_ago(200)])
    settings = load_settings(database_url=database_url, jobs={"cleanup_old_events": {"lock_timeout": "200ms"}},
                             retry={"max_attempts": 3, **FAST_RETRIES})
    lock_events(application)

    with pytest.raises(JobFailed) as failure:
        run_job(settings, CLEANUP, clock=fixed_clock, retry=settings.retry, history=History(settings))

    assert failure.value.sqlstate == "55P03"
    assert log.events() == ["job_started", "job_retrying", "job_retrying", "job_failed"]
    assert [line["attempt"] for line in log.named("job_retrying")] == [1, 2]
    (failed,) = log.named("job_failed")
    assert (failed["level"], failed["attempts"], failed["sqlstate"]) == ("error", 3, "55P03")
    application.rollback()
    assert event_ids(conn) == set(doomed)
    assert [(row["status"], row["attempts"]) for row in history_rows(conn, CLEANUP.name)] == [("failed", 3)]




def slow_cleanup(database_url: str, **retry: Any) -> Settings:
    """A cleanup of 40 rows in batches of 2, a pause after each: it is still deleting when it is killed."""
    return load_settings(database_url=database_url, retry={**FAST_RETRIES, **retry}, jobs={
        "cleanup_old_events": {"batch_size": 2, "pause_between_batches": "100ms", "path": "walk"}})


def kill_after_some_deletes(conn: psycopg.Connection[Any], total: int) -> int:
    """Terminate the cleanup's backend once it has deleted some rows but not all; the rows it had deleted."""
    wait_for(lambda: conn.execute("SELECT count(*) < %s - 4 FROM parlant_event", (total,)).fetchone() == (True,),
             20, "the cleanup to delete a few rows")
    (pid,) = wait_for(lambda: conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'maintainer:cleanup-old-events'").fetchone(),
        10, "the cleanup's backend")
    assert conn.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,)).fetchone() == (True,)
    row = conn.execute("SELECT %s - count(*) FROM parlant_event", (total,)).fetchone()
    assert row is not None
    return int(row[0])


def test_a_retried_cleanup_reports_the_rows_every_attempt_deleted(
    database_url: str, conn: psycopg.Connection[Any], log: LogLines
) -> None:
    for _ in range(20):
        add_session(conn, "completed", days_ago(150), [days_ago(160), days_ago(155)])
    settings = slow_cleanup(database_url, max_attempts=3)
    deleted_before = metrics.ROWS_DELETED.labels(CLEANUP.name)._value.get()
    background = in_background(settings, CLEANUP, clock=fixed_clock, retry=settings.retry,
                               history=History(settings))

    first_attempt = kill_after_some_deletes(conn, 40)
    run = background.result(60)

    assert event_ids(conn) == set()
    assert 0 < first_attempt < 40
    (succeeded,) = log.named("job_succeeded")
    reported = succeeded["rows_deleted"]
    # A batch whose commit the killed backend never got to report (at most one, of 2 rows) goes uncounted:
    # a count may fall short of the work, never exceed it.
    assert 40 - 2 <= reported <= 40
    assert (succeeded["attempts"], run.result.summary["rows_deleted"]) == (2, reported)
    assert [(row["status"], row["rows_affected"]) for row in history_rows(conn, CLEANUP.name)] == [
        ("succeeded", reported)]
    assert metrics.ROWS_DELETED.labels(CLEANUP.name)._value.get() - deleted_before == reported


def test_a_failed_cleanup_records_the_rows_it_deleted_before_it_failed(
    database_url: str, conn: psycopg.Connection[Any], log: LogLines
) -> None:
    for _ in range(20):
        add_session(conn, "completed", days_ago(150), [days_ago(160), days_ago(155)])
    settings = slow_cleanup(database_url)
    background = in_background(settings, CLEANUP, clock=fixed_clock, history=History(settings))  # no retries

    deleted = kill_after_some_deletes(conn, 40)
    with pytest.raises(JobFailed):
        background.result(60)

    (failed,) = log.named("job_failed")
    assert deleted - 2 <= failed["rows_affected"] <= deleted  # at most one unreported batch, as above
    assert failed["rows_affected"] > 0
    assert [(row["status"], row["rows_affected"]) for row in history_rows(conn, CLEANUP.name)] == [
        ("failed", failed["rows_affected"])]
