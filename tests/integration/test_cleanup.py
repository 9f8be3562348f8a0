"""cleanup-old-events against a real PostgreSQL: exactly the guide's rule, in bounded batches."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

import jobs
from maintainer.errors import JobFailed
from maintainer.fixture import add_synthetic_data
from maintainer.job import RunContext
from maintainer.logs import get_logger
from maintainer.runner import Run, run_job
from maintainer.settings import Settings
from tests.support.logs import LogLines
from tests.support.parlant import CUTOFF, NOW, add_session, days_ago, event_ids, fixed_clock
from tests.support.settings import load_settings

CLEANUP = jobs.REGISTRY.jobs["cleanup-old-events"]


@pytest.fixture(autouse=True, params=["walk", "sessions"])
def cleanup_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs on both paths: each must delete exactly the rule's rows, with the same manners."""
    monkeypatch.setenv("MAINTAINER_JOBS__CLEANUP_OLD_EVENTS__PATH", request.param)
    return str(request.param)


def cleanup(settings: Settings, *, dry_run: bool = False, **kwargs: Any) -> Run:
    return run_job(settings, CLEANUP, dry_run=dry_run, clock=fixed_clock, **kwargs)


def with_cleanup(database_url: str, **job_settings: Any) -> Settings:
    return load_settings(database_url=database_url, jobs={"cleanup_old_events": job_settings})


def record_deletes(conn: psycopg.Connection[Any]) -> None:
    """A statement-level trigger that sees every DELETE of at least one row with the transaction that ran it
    (a DELETE of none takes no transaction id, and its record must not take one: the walk counts them)."""
    conn.execute("""
        CREATE TABLE deletes_seen (xid xid8, rows bigint, synchronous_commit text);
        CREATE FUNCTION record_deletes() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO deletes_seen SELECT pg_current_xact_id(), count(*), current_setting('synchronous_commit')
            FROM gone HAVING count(*) > 0;
            RETURN NULL;
        END $$;
        CREATE TRIGGER record_deletes AFTER DELETE ON parlant_event
            REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION record_deletes();
    """)


def rows_per_transaction(conn: psycopg.Connection[Any]) -> list[int]:
    """Rows deleted by each committed transaction, in the order the transactions began."""
    return [rows for _, rows in conn.execute(
        "SELECT xid::text::bigint, sum(rows)::int FROM deletes_seen GROUP BY 1 ORDER BY 1")]


def doomed_by_the_rule(conn: psycopg.Connection[Any]) -> set[Any]:
    rule = """
        SELECT e.id FROM parlant_event AS e JOIN parlant_session AS s ON s.id = e.session_id
        WHERE s.status = 'completed' AND s.ended_at < %(cutoff)s AND e.created_at < %(cutoff)s"""
    return {row[0] for row in conn.execute(rule, {"cutoff": CUTOFF})}


@contextlib.contextmanager
def application_writing(database_url: str, commits: int = 100_000, seconds: float = 120) -> Iterator[None]:
    """Another session committing small writes back to back (as an application does) for the whole block."""
    stop, writing = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        try:
            with psycopg.connect(database_url, autocommit=True) as application:
                # Commits that do not wait for the disk keep coming however slow a flush is on a busy machine.
                application.execute("SET synchronous_commit = off")
                deadline = time.monotonic() + seconds
                for done in range(commits):
                    if stop.is_set() or time.monotonic() > deadline:
                        return
                    application.execute("INSERT INTO parlant_agent (id, name) VALUES (gen_random_uuid(), 'app')")
                    if done == 20:
                        writing.set()
        except BaseException as error:
            failures.append(error)
            writing.set()

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    assert writing.wait(30) and not failures, failures
    try:
        yield
    finally:
        stop.set()
        thread.join(30)
    assert not failures, failures


@pytest.fixture
def mixed_sessions(conn: psycopg.Connection[Any]) -> dict[str, list[Any]]:
    """One session of each kind the rule must tell apart, keyed by what should happen to its events."""
    _, doomed = add_session(conn, "completed", days_ago(150), [days_ago(200), days_ago(160), days_ago(151)])
    _, late = add_session(conn, "completed", days_ago(120), [days_ago(130), days_ago(5)])
    _, recent_end = add_session(conn, "completed", days_ago(10), [days_ago(200), days_ago(100)])
    _, abandoned = add_session(conn, "abandoned", days_ago(200), [days_ago(210), days_ago(205)])
    _, active = add_session(conn, "active", None, [days_ago(300), days_ago(1)])
    _, at_cutoff = add_session(conn, "completed", days_ago(90), [days_ago(95)])
    _, event_at_cutoff = add_session(conn, "completed", days_ago(95), [CUTOFF, days_ago(96)])
    return {
        "deleted": [*doomed, late[0], event_at_cutoff[1]],
        "kept": [late[1], *recent_end, *abandoned, *active, *at_cutoff, event_at_cutoff[0]],
    }


def test_cleanup_deletes_exactly_the_events_the_policy_names(
    settings: Settings, conn: psycopg.Connection[Any], mixed_sessions: dict[str, list[Any]]
) -> None:
    run = cleanup(settings)

    assert event_ids(conn) == set(mixed_sessions["kept"])
    assert run.result.summary["rows_deleted"] == len(mixed_sessions["deleted"])
    assert run.result.summary["cutoff"] == CUTOFF.isoformat()
    assert run.result.summary["stopped_early"] is False


def test_cleanup_keeps_sessions_themselves(settings: Settings, conn: psycopg.Connection[Any]) -> None:
    session_id, _ = add_session(conn, "completed", days_ago(150), [days_ago(200)])

    cleanup(settings)

    assert conn.execute("SELECT count(*) FROM parlant_session WHERE id = %s", (session_id,)).fetchone() == (1,)


def test_cleanup_deletes_old_abandoned_sessions_events_only_when_configured(
    database_url: str, conn: psycopg.Connection[Any], mixed_sessions: dict[str, list[Any]]
) -> None:
    _, abandoned = add_session(conn, "abandoned", days_ago(100), [days_ago(110)])

    cleanup(with_cleanup(database_url, session_statuses=["completed", "abandoned"]))

    assert not set(abandoned) & event_ids(conn)


def test_cleanup_honours_a_longer_retention(database_url: str, conn: psycopg.Connection[Any]) -> None:
    add_session(conn, "completed", days_ago(125), [days_ago(130)])
    _, kept = add_session(conn, "completed", days_ago(100), [days_ago(130)])  # gone under the default 90 days

    run = cleanup(with_cleanup(database_url, retention_days=120))

    assert event_ids(conn) == set(kept)
    assert run.result.summary["cutoff"] == days_ago(120).isoformat()


def test_cutoff_is_taken_in_the_configured_session_time_zone(database_url: str, conn: psycopg.Connection[Any]) -> None:
    # 90 days before 12:00 UTC is 2026-08-25 12:00 in UTC but 07:00 in New York: a naive 09:00 is old in UTC only.
    _, events = add_session(conn, "completed", days_ago(120), [CUTOFF - timedelta(hours=3)])

    cleanup(load_settings(database_url=database_url, timezone="America/New_York"))
    assert event_ids(conn) == set(events)

    cleanup(load_settings(database_url=database_url, timezone="UTC"))
    assert event_ids(conn) == set()


def test_each_batch_is_its_own_transaction_of_at_most_batch_size_rows(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    record_deletes(conn)
    add_session(conn, "completed", days_ago(150), [days_ago(200) + timedelta(minutes=i) for i in range(23)])
    for _ in range(12):
        add_session(conn, "completed", days_ago(150), [days_ago(160), days_ago(155)])

    run = cleanup(with_cleanup(database_url, batch_size=4))

    per_transaction = rows_per_transaction(conn)
    assert event_ids(conn) == set()
    assert sum(per_transaction) == 23 + 24
    assert max(per_transaction) <= 4
    assert len(per_transaction) >= (23 + 24) // 4
    assert run.result.summary["largest_batch"] <= 4


def test_cleanup_of_thousands_of_sessions_across_many_pages_deletes_exactly_the_rule(
    database_url: str, conn: psycopg.Connection[Any], cleanup_path: str
) -> None:
    # The generator's tricky cases (late events in old sessions, long sessions completed recently, active
    # and abandoned sessions with old events), over hundreds of pages, walked in many batches and round trips.
    add_synthetic_data(conn, events=20_000, now=NOW, seed=0.3)
    # Nothing else writes on this database meanwhile, not even an autovacuum's ANALYZE: no reason to yield.
    conn.execute("ALTER TABLE parlant_event SET (autovacuum_enabled = off);"
                 " ALTER TABLE parlant_session SET (autovacuum_enabled = off)")
    doomed = doomed_by_the_rule(conn)
    kept = event_ids(conn) - doomed

    run = cleanup(with_cleanup(database_url, batch_size=300))

    assert event_ids(conn) == kept
    assert run.result.summary["rows_deleted"] == len(doomed) > 5000
    assert run.result.summary["largest_batch"] <= 300
    assert run.result.summary["path"] == cleanup_path
    if cleanup_path == "walk":
        assert run.result.summary["blocks_walked"] >= run.result.summary["blocks"] > 100
    else:
        sessions = conn.execute("SELECT count(*) FROM parlant_session WHERE status = 'completed' AND ended_at < %s",
                                (CUTOFF,)).fetchone()
        assert (run.result.summary["sessions_visited"],) == sessions
    # (not == 0: an autovacuum analyzing tables one after another elsewhere on the server also writes)
    assert run.result.summary["batches_yielded"] <= run.result.summary["batches"] // 2


def test_cleanup_takes_small_batches_and_pauses_while_the_application_writes(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    # Enough rows that deleting them at full speed takes longer than a busy machine may keep the writer (a
    # thread of this process) from committing: with 20,000 the whole run once fit in such a pause, unyielding.
    add_synthetic_data(conn, events=60_000, now=NOW, seed=0.3)
    record_deletes(conn)
    kept = event_ids(conn) - doomed_by_the_rule(conn)
    settings = with_cleanup(database_url, batch_size=2000, yield_batch_size=100, yield_pause="5ms")

    with application_writing(database_url):
        run = cleanup(settings)

    assert event_ids(conn) == kept
    per_transaction = rows_per_transaction(conn)
    # The walk notices the writes after its first batch, and yields from then on; a pause in the writer's
    # commits (a thread of this process) may let a batch or two run at full size.
    small = [rows for rows in per_transaction if rows <= 100]
    assert len(small) >= 0.9 * len(per_transaction) > 30
    summary = run.result.summary
    assert summary["batches_yielded"] >= 0.9 * summary["batches"]
    assert run.duration_ms >= summary["batches_yielded"] * 5
    # Yielding batches commit durably (the session's synchronous_commit, on here); full-speed ones do not.
    durable, committed = conn.execute(
        "SELECT count(*) FILTER (WHERE synchronous_commit = 'on'), count(*) FROM deletes_seen").fetchone() or (0, 0)
    assert committed > durable >= 0.9 * committed


def test_cleanup_with_yield_pause_zero_keeps_full_batches_while_the_application_writes(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    record_deletes(conn)
    add_session(conn, "completed", days_ago(150), [days_ago(200) + timedelta(minutes=i) for i in range(40)])

    with application_writing(database_url):
        run = cleanup(with_cleanup(database_url, batch_size=10, yield_batch_size=2, yield_pause="0s"))

    assert event_ids(conn) == set()
    assert max(rows_per_transaction(conn)) > 2
    assert run.result.summary["batches_yielded"] == 0


def test_cleanup_stops_at_max_run_time_and_the_next_run_finishes(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    for _ in range(10):
        add_session(conn, "completed", days_ago(150), [days_ago(160), days_ago(155), days_ago(151)])
    ticks = itertools.count()
    settings = with_cleanup(database_url, batch_size=3, max_run_time="1s")

    first = cleanup(settings, monotonic=lambda: float(next(ticks)))

    assert first.result.summary["stopped_early"] is True
    assert first.result.summary["stop_reason"] == "max_run_time"
    assert 0 < first.result.summary["rows_deleted"] < 30
    assert len(event_ids(conn)) == 30 - first.result.summary["rows_deleted"]

    second = cleanup(settings)

    assert second.result.summary["stopped_early"] is False
    assert event_ids(conn) == set()


def test_cleanup_asked_to_stop_before_it_deletes_anything_stops_at_once(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    for _ in range(5):
        add_session(conn, "completed", days_ago(150), [days_ago(160), days_ago(155)])
    stop = threading.Event()
    stop.set()  # as the scheduler does on SIGTERM
    settings = with_cleanup(database_url, batch_size=2).jobs.cleanup_old_events
    with psycopg.connect(database_url, autocommit=True) as work:
        context = RunContext(job=CLEANUP.name, run_id="test", conn=work, settings=settings, clock=fixed_clock,
                             log=get_logger(), monotonic=time.monotonic, stop=stop)

        result = CLEANUP.run(context)

    assert (result.stop_reason, result.summary["batches"]) == ("shutdown", 0)
    assert len(event_ids(conn)) == 10


class _StopOnFirstProgress:
    """A logger that sets ``stop`` when the first cleanup_progress line is logged, as a SIGTERM would then."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop

    def info(self, event: str, **fields: Any) -> None:
        if event == "cleanup_progress":
            self.stop.set()


def test_cleanup_stops_between_round_trips_when_asked_to(database_url: str, conn: psycopg.Connection[Any]) -> None:
    for _ in range(5):
        add_session(conn, "completed", days_ago(150), [days_ago(160), days_ago(155)])
    stop = threading.Event()
    # A pause between batches makes every batch its own round trip.
    settings = with_cleanup(database_url, batch_size=2, pause_between_batches="1ms",
                            progress_every_batches=1).jobs.cleanup_old_events
    with psycopg.connect(database_url, autocommit=True) as work:
        context = RunContext(job=CLEANUP.name, run_id="test", conn=work, settings=settings, clock=fixed_clock,
                             log=_StopOnFirstProgress(stop), monotonic=time.monotonic,  # type: ignore[arg-type]
                             stop=stop)

        result = CLEANUP.run(context)

    assert (result.stop_reason, result.summary["batches"]) == ("shutdown", 1)
    assert len(event_ids(conn)) == 8


def test_cleanup_gives_way_to_a_conflicting_lock(database_url: str, conn: psycopg.Connection[Any]) -> None:
    add_session(conn, "completed", days_ago(150), [days_ago(160)])
    with psycopg.connect(database_url) as application:
        application.execute("LOCK TABLE parlant_event IN ACCESS EXCLUSIVE MODE")

        with pytest.raises(JobFailed) as failure:
            cleanup(with_cleanup(database_url, lock_timeout="200ms"))

    assert failure.value.sqlstate == "55P03"
    assert "lock timeout" in str(failure.value)


def test_dry_run_reports_the_audit_and_changes_nothing(
    settings: Settings, conn: psycopg.Connection[Any], mixed_sessions: dict[str, list[Any]]
) -> None:
    before = event_ids(conn)

    audit = cleanup(settings, dry_run=True).result.summary

    assert event_ids(conn) == before
    assert audit["cutoff"] == CUTOFF.isoformat()
    assert audit["would_delete"] == {
        "events": len(mixed_sessions["deleted"]), "sessions": 3, "oldest_event_at": days_ago(200).isoformat()
    }
    kept = audit["kept_older_than_cutoff"]
    assert kept["active"] == {"events": 1, "sessions": 1, "oldest_event_at": days_ago(300).isoformat()}
    assert kept["abandoned"] == {"events": 2, "sessions": 1, "oldest_event_at": days_ago(210).isoformat()}
    # completed but ended after the cutoff: the session ended 10 days ago and the one ended exactly at it
    assert kept["completed_recent"] == {"events": 3, "sessions": 2, "oldest_event_at": days_ago(200).isoformat()}


def test_dry_run_agrees_with_what_the_cleanup_then_deletes(
    settings: Settings, conn: psycopg.Connection[Any], mixed_sessions: dict[str, list[Any]]
) -> None:
    audit = cleanup(settings, dry_run=True).result.summary

    deleted = cleanup(settings).result.summary["rows_deleted"]

    assert deleted == audit["would_delete"]["events"]
    after = cleanup(settings, dry_run=True).result.summary
    assert after["would_delete"]["events"] == 0
    assert after["kept_older_than_cutoff"] == audit["kept_older_than_cutoff"]


def test_the_cutoff_is_read_in_the_databases_own_time_zone_unless_one_is_set(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    # What the guide's NOW() - INTERVAL '90 days' means under pg_cron: the database's zone, New York's here.
    name = conninfo_to_dict(database_url)["dbname"]
    conn.execute(sql.SQL("ALTER DATABASE {} SET timezone TO 'America/New_York'").format(sql.Identifier(name)))
    _, events = add_session(conn, "completed", days_ago(120), [CUTOFF - timedelta(hours=3)])  # UTC-old only

    audit = cleanup(load_settings(database_url=database_url), dry_run=True)
    cleanup(load_settings(database_url=database_url))

    assert (audit.result.summary["timezone"], audit.result.summary["timezone_source"]) == (
        "America/New_York", "database")
    assert audit.result.summary["cutoff"] == (CUTOFF - timedelta(hours=5)).isoformat()
    assert "America/New_York (now - 90 days; the zone is the database's own)" in audit.result.report
    assert event_ids(conn) == set(events)

    set_zone = cleanup(load_settings(database_url=database_url, session_timezone="UTC"))

    assert (set_zone.result.summary["timezone"], set_zone.result.summary["timezone_source"]) == (
        "UTC", "session_timezone")
    assert event_ids(conn) == set()


def test_progress_lines_say_how_much_is_done_and_how_long_the_rest_should_take(
    database_url: str, conn: psycopg.Connection[Any], cleanup_path: str, log: LogLines) -> None:
    for _ in range(10):
        add_session(conn, "completed", days_ago(150), [days_ago(160), days_ago(155)])

    cleanup(with_cleanup(database_url, batch_size=2, progress_every_batches=1))

    progress = [line for line in log.all() if line["event"] == "cleanup_progress"]
    percents = [line["percent"] for line in progress]
    assert len(progress) >= 10  # 20 rows in batches of at most 2
    assert percents == sorted(percents) and percents[-1] == 100
    assert any(0 < percent < 100 for percent in percents)
    # Known as soon as any of the work is done: the time so far, scaled to what is left.
    assert all(line["eta_s"] is not None and line["eta_s"] >= 0 for line in progress if line["percent"] > 0)
    assert progress[-1]["eta_s"] == 0
