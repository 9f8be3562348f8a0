"""Retries, the per-job lock, run history and the overdue alert, against a real PostgreSQL.

What an operator sees in the log and in ``maintainer.run_history`` when a run's connection is killed,
when the application holds a lock past the job's ``lock_timeout``, when the SQL is simply wrong, when
another replica already runs the job, and when a job has stopped succeeding.
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg.rows import dict_row

import jobs
from maintainer import logs, metrics
from maintainer.errors import JobFailed, LockHeld
from maintainer.history import History, RunRecord
from maintainer.job import Job
from maintainer.locking import lock_key
from maintainer.runner import Run, run_job
from maintainer.scheduler import Daemon, overdue_jobs
from maintainer.settings import Settings, load_settings
from tests.parlant import NOW, add_session, days_ago, event_ids, fixed_clock

CLEANUP = jobs.REGISTRY["cleanup-old-events"]
FAST_RETRIES = {"initial_wait": "0.05s", "max_wait": "0.1s"}
HISTORY_TABLE = "maintainer.run_history"  # the default history.table

T = TypeVar("T")


def wait_for(condition: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``condition`` until it returns something truthy, which is returned; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout} s waiting for {what}")
        time.sleep(0.02)  # the polling pace, not a guess at how long the thing takes


class LogLines:
    """The JSON lines maintainer logs while a test runs, parsed."""

    def __init__(self) -> None:
        self._stream = io.StringIO()
        logs.configure("json", stream=self._stream)

    def all(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self._stream.getvalue().splitlines()]

    def events(self) -> list[str]:
        return [line["event"] for line in self.all()]

    def named(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.all() if line["event"] == event]


@pytest.fixture
def log() -> LogLines:
    return LogLines()


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


@pytest.fixture
def application(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """The Parlant application's connection, in a transaction: what it locks stays locked until it ends."""
    with psycopg.connect(database_url) as connection:
        yield connection


def lock_events(application: psycopg.Connection[Any]) -> None:
    application.execute("LOCK TABLE parlant_event IN ACCESS EXCLUSIVE MODE")


# Retries


def test_run_whose_connection_is_killed_is_retried_and_succeeds(
    database_url: str, conn: psycopg.Connection[Any], log: LogLines
) -> None:
    settings = custom_sql(database_url, "victim", "SELECT pg_sleep(2)",
                          retry={"max_attempts": 3, **FAST_RETRIES})
    background = in_background(settings, jobs.get("victim", settings), retry=settings.retry,
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
        run_job(settings, jobs.get("broken", settings), retry=settings.retry, history=History(settings))

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


# The job's advisory lock


def test_run_that_finds_its_lock_held_is_skipped_at_once_without_history(
    database_url: str, conn: psycopg.Connection[Any], log: LogLines
) -> None:
    settings = custom_sql(database_url, "marker", "CREATE TABLE marker_was_here ()",
                          retry={"max_attempts": 5, **FAST_RETRIES})
    History(settings).ensure()
    with psycopg.connect(database_url, autocommit=True) as other_replica:
        other_replica.execute("SELECT pg_advisory_lock(%s, %s)", lock_key("marker"))

        with pytest.raises(LockHeld):
            run_job(settings, jobs.get("marker", settings), retry=settings.retry, history=History(settings))

    assert log.events() == ["job_started", "job_skipped"]
    (skipped,) = log.named("job_skipped")
    assert (skipped["level"], skipped["reason"], skipped["job"]) == ("info", "lock_held", "marker")
    assert conn.execute("SELECT to_regclass('marker_was_here')").fetchone() == (None,)
    assert conn.execute("SELECT count(*) FROM maintainer.run_history").fetchone() == (0,)


def _advisory_locks(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT l.classid::bigint, l.objid::bigint, l.objsubid, l.granted, a.application_name"
        " FROM pg_locks AS l LEFT JOIN pg_stat_activity AS a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory'"
        " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ).fetchall()


def test_running_job_holds_exactly_one_advisory_lock_that_operators_can_find(
    database_url: str, conn: psycopg.Connection[Any], application: psycopg.Connection[Any]
) -> None:
    name = "probe"
    _, key = lock_key(name)
    assert key < 0  # a name whose key only matches pg_locks.objid after the conversion to unsigned
    settings = custom_sql(database_url, name, "SELECT count(*) FROM parlant_event", {"lock_timeout": "30s"})
    lock_events(application)
    background = in_background(settings, jobs.get(name, settings))
    wait_for(lambda: conn.execute(
        "SELECT 1 FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
        (f"maintainer:{name}",),
    ).fetchone(), 10, "the probe to wait for the application's lock")

    during = _advisory_locks(conn)
    application.commit()
    background.result()

    assert during == [(1835100526, key + (1 << 32), 2, True, f"maintainer:{name}")]
    assert _advisory_locks(conn) == []


# History


def test_role_that_may_not_create_the_history_table_runs_on_with_history_disabled(
    other_role_url: str, conn: psycopg.Connection[Any], log: LogLines
) -> None:
    _, doomed = add_session(conn, "completed", days_ago(150), [days_ago(200)])
    _, kept = add_session(conn, "completed", days_ago(10), [days_ago(200)])
    settings = load_settings(database_url=other_role_url)

    run = run_job(settings, CLEANUP, clock=fixed_clock, history=History(settings))

    assert run.result.summary["rows_deleted"] == len(doomed)
    assert event_ids(conn) == set(kept)
    assert log.events() == ["job_started", "cleanup_path_chosen", "replica_claims_unavailable", "history_disabled",
                            "job_succeeded"]
    (disabled,) = log.named("history_disabled")
    assert (disabled["level"], disabled["table"], disabled["sqlstate"]) == ("warning", HISTORY_TABLE, "42501")
    assert "GRANT CREATE ON DATABASE" in disabled["fix"]
    assert conn.execute("SELECT to_regclass(%s)", (HISTORY_TABLE,)).fetchone() == (None,)


def record(history: History, job: str, started_at: datetime, status: str, **details: Any) -> None:
    history.record(RunRecord(job, str(uuid.uuid4()), started_at, started_at + timedelta(minutes=5), status,
                             attempts=1, **details))


def test_prune_deletes_history_older_than_the_retention_and_keeps_the_rest(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    history = History(load_settings(database_url=database_url, history={"retention": "30d"}))
    for age_days in (400, 45, 31, 29, 1):
        record(history, CLEANUP.name, NOW - timedelta(days=age_days), "succeeded")

    pruned = history.prune(NOW)

    assert pruned == 3
    remaining = conn.execute("SELECT started_at FROM maintainer.run_history ORDER BY started_at").fetchall()
    assert [row[0] for row in remaining] == [NOW - timedelta(days=29), NOW - timedelta(days=1)]


def test_last_runs_reports_last_success_last_error_and_last_status_per_job(database_url: str) -> None:
    history = History(load_settings(database_url=database_url))
    record(history, "cleanup-old-events", NOW - timedelta(days=3), "succeeded")
    record(history, "cleanup-old-events", NOW - timedelta(days=2), "failed", sqlstate="55P03", error="lock timeout")
    record(history, "cleanup-old-events", NOW - timedelta(days=1), "succeeded")
    record(history, "update-statistics", NOW - timedelta(days=9), "failed", error="first failure")
    record(history, "update-statistics", NOW - timedelta(days=7), "succeeded")
    record(history, "update-statistics", NOW - timedelta(hours=2), "failed", error="permission denied")
    record(history, "maintain-parlant-events", NOW - timedelta(hours=1), "cancelled")

    last = history.last_runs()

    ended = timedelta(minutes=5)
    assert last == {
        "cleanup-old-events": {
            "last_run_at": NOW - timedelta(days=1), "last_status": "succeeded",
            "last_success_at": NOW - timedelta(days=1) + ended,
            "last_error_at": NOW - timedelta(days=2) + ended, "last_error": "lock timeout",
        },
        "update-statistics": {
            "last_run_at": NOW - timedelta(hours=2), "last_status": "failed",
            "last_success_at": NOW - timedelta(days=7) + ended,
            "last_error_at": NOW - timedelta(hours=2) + ended, "last_error": "permission denied",
        },
        "maintain-parlant-events": {
            "last_run_at": NOW - timedelta(hours=1), "last_status": "cancelled",
            "last_success_at": None, "last_error_at": None, "last_error": None,
        },
    }


# Overdue jobs

DAY, GRACE = timedelta(days=1), timedelta(hours=1)


def test_job_that_never_succeeded_is_measured_from_when_the_daemon_started() -> None:
    assert overdue_jobs(NOW, {"daily": DAY}, {}, NOW - timedelta(hours=24), GRACE) == {}
    assert overdue_jobs(NOW, {"daily": DAY}, {"daily": None}, NOW - timedelta(hours=26), GRACE) == {
        "daily": {"last_success_at": None, "expected_interval_s": 86400.0, "overdue_by_s": 3600}
    }


def test_job_that_succeeded_within_its_interval_is_not_overdue() -> None:
    last_success: dict[str, datetime | None] = {"daily": NOW - timedelta(hours=23)}

    assert overdue_jobs(NOW, {"daily": DAY}, last_success, NOW - timedelta(days=30), GRACE) == {}


def test_job_is_overdue_once_its_interval_and_the_grace_have_passed_since_its_last_success() -> None:
    just_within: dict[str, datetime | None] = {"daily": NOW - DAY - GRACE}
    past: dict[str, datetime | None] = {"daily": NOW - DAY - GRACE - timedelta(seconds=90)}

    assert overdue_jobs(NOW, {"daily": DAY}, just_within, NOW - timedelta(days=30), GRACE) == {}
    assert overdue_jobs(NOW, {"daily": DAY}, past, NOW - timedelta(days=30), GRACE) == {
        "daily": {"last_success_at": past["daily"], "expected_interval_s": 86400.0, "overdue_by_s": 90}
    }


def _daemon_settings(database_url: str) -> Settings:
    """Two jobs only: the daily cleanup and the six-hourly VACUUM of parlant_event."""
    return load_settings(database_url=database_url, scheduler={"overdue_grace": "1h"}, jobs={
        "cleanup_old_events": {"schedule": "0 2 * * *"},
        "maintain_parlant_events": {"schedule": "0 */6 * * *"},
        "update_statistics": {"enabled": False},
        "refresh_agent_analytics": {"enabled": False},
        "maintain_parlant_indexes": {"enabled": False},
    })


def test_daemon_reports_the_job_whose_last_success_on_any_replica_is_too_old(
    database_url: str, log: LogLines
) -> None:
    # Successes another replica wrote: the cleanup three hours ago, the VACUUM two days ago.
    history = History(_daemon_settings(database_url))
    assert history.ensure()
    record(history, "cleanup-old-events", NOW - timedelta(hours=3), "succeeded")
    record(history, "maintain-parlant-events", NOW - timedelta(days=2), "succeeded")

    Daemon(_daemon_settings(database_url), clock=fixed_clock)._check_overdue()

    overdue = log.named("job_overdue")
    assert [(line["job"], line["level"]) for line in overdue] == [("maintain-parlant-events", "error")]
    last_success = NOW - timedelta(days=2) + timedelta(minutes=5)
    assert datetime.fromisoformat(overdue[0]["last_success_at"]) == last_success
    assert overdue[0]["expected_interval_s"] == 6 * 3600
    # every 6 hours, plus an hour of grace
    assert overdue[0]["overdue_by_s"] == (NOW - last_success - timedelta(hours=7)).total_seconds()


# one run per scheduled time, however many replicas


def test_a_scheduled_run_another_replica_already_did_is_skipped(
    database_url: str, conn: psycopg.Connection[Any], log: LogLines
) -> None:
    settings = custom_sql(database_url, "tick", "SELECT 1")
    job, history = jobs.get("tick", settings), History(settings)
    tick = NOW.replace(hour=2)

    run_job(settings, job, history=history, tick=tick)  # replica A
    with pytest.raises(LockHeld) as skipped:
        run_job(settings, job, history=history, tick=tick)  # replica B, a moment later
    run_job(settings, job, history=history, tick=tick + timedelta(days=1))  # the next scheduled run

    assert skipped.value.reason == "already_ran"
    assert [line["reason"] for line in log.named("job_skipped")] == ["already_ran"]
    assert [row["status"] for row in history_rows(conn, "tick")] == ["succeeded", "succeeded"]


def test_a_run_can_reclaim_its_own_scheduled_time_when_it_retries(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    history = History(load_settings(database_url=database_url))
    tick = NOW.replace(hour=2)

    assert history.claim_tick(conn, "tick", tick, "00000000-0000-0000-0000-00000000000a")
    assert history.claim_tick(conn, "tick", tick, "00000000-0000-0000-0000-00000000000a")  # its own retry
    assert not history.claim_tick(conn, "tick", tick, "00000000-0000-0000-0000-00000000000b")
    assert not history.claim_tick(conn, "tick", tick - timedelta(days=1), "00000000-0000-0000-0000-00000000000c")
    assert history.claim_tick(conn, "tick", tick + timedelta(days=1), "00000000-0000-0000-0000-00000000000b")


def test_history_records_the_time_a_run_held_its_lock(
    database_url: str, conn: psycopg.Connection[Any], log: LogLines
) -> None:
    settings = custom_sql(database_url, "probe", "SELECT 1")
    ticks = iter(NOW + timedelta(seconds=second) for second in range(10))

    run_job(settings, jobs.get("probe", settings), history=History(settings), clock=lambda: next(ticks))

    row = conn.execute("SELECT started_at, ended_at FROM maintainer.run_history WHERE job = 'probe'").fetchone()
    # clock calls: run start (0), lock taken (1), work ended (2): the record spans the lock, not the run
    assert row == (NOW + timedelta(seconds=1), NOW + timedelta(seconds=2))


def test_a_history_table_of_an_earlier_version_gains_the_result_columns_and_records_results(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    conn.execute("""
        CREATE SCHEMA maintainer;
        CREATE TABLE maintainer.run_history (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, job text NOT NULL, run_id uuid NOT NULL,
            host text NOT NULL, started_at timestamptz NOT NULL, ended_at timestamptz NOT NULL,
            status text NOT NULL, attempts integer NOT NULL, rows_affected bigint, sqlstate text, error text);
        INSERT INTO maintainer.run_history (job, run_id, host, started_at, ended_at, status, attempts)
        VALUES ('cleanup-old-events', gen_random_uuid(), 'old', now(), now(), 'succeeded', 1);
    """)
    history = History(settings)

    run = run_job(settings, CLEANUP, clock=fixed_clock, history=history)

    with psycopg.connect(settings.require_database_url()) as reader:
        assert history.last_complete(reader, CLEANUP.name) == json.loads(json.dumps(run.result.summary))
    rows = conn.execute("SELECT host, result IS NULL FROM maintainer.run_history ORDER BY id").fetchall()
    assert rows == [("old", True), (rows[1][0], False)]


# Counts across attempts


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
