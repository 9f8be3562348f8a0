"""One run at a time: the job's advisory lock, and one run per scheduled time however many replicas."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from maintainer.errors import LockHeld
from maintainer.history import History
from maintainer.locking import lock_key
from maintainer.runner import run_job
from maintainer.settings import Settings
from tests.support.logs import LogLines
from tests.support.parlant import NOW, fixed_clock
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


def test_run_that_finds_its_lock_held_is_skipped_at_once_without_history(
    database_url: str, conn: psycopg.Connection[Any], log: LogLines
) -> None:
    settings = custom_sql(database_url, "marker", "CREATE TABLE marker_was_here ()",
                          retry={"max_attempts": 5, **FAST_RETRIES})
    History(settings).ensure()
    with psycopg.connect(database_url, autocommit=True) as other_replica:
        other_replica.execute("SELECT pg_advisory_lock(%s, %s)", lock_key("marker"))

        with pytest.raises(LockHeld):
            run_job(settings, settings.job("marker"), retry=settings.retry, history=History(settings))

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
    background = in_background(settings, settings.job(name))
    wait_for(lambda: conn.execute(
        "SELECT 1 FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
        (f"maintainer:{name}",),
    ).fetchone(), 10, "the probe to wait for the application's lock")

    during = _advisory_locks(conn)
    application.commit()
    background.result()

    assert during == [(1835100526, key + (1 << 32), 2, True, f"maintainer:{name}")]
    assert _advisory_locks(conn) == []




def test_a_scheduled_run_another_replica_already_did_is_skipped(
    database_url: str, conn: psycopg.Connection[Any], log: LogLines
) -> None:
    settings = custom_sql(database_url, "tick", "SELECT 1")
    job, history = settings.job("tick"), History(settings)
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

    run_job(settings, settings.job("probe"), history=History(settings), clock=lambda: next(ticks))

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


