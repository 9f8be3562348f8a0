"""How cleanup-old-events chooses its path, and the high-water mark that keeps a nightly run to what
became eligible since the last complete run, including what such a mark cannot see."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

import jobs
from maintainer.check import run_checks
from maintainer.errors import JobFailed
from maintainer.fixture import add_synthetic_data
from maintainer.history import History
from maintainer.runner import Run, run_job
from maintainer.settings import Settings
from tests.support.parlant import NOW, add_session, days_ago, event_ids
from tests.support.settings import load_settings

CLEANUP = jobs.REGISTRY.jobs["cleanup-old-events"]


def nightly(settings: Settings, days_before: float = 0, **kwargs: Any) -> Run:
    """A run of the cleanup, with its history, as the daemon runs it ``days_before`` today's."""
    at = NOW - timedelta(days=days_before)
    return run_job(settings, CLEANUP, clock=lambda: at, history=History(settings), **kwargs)


def with_cleanup(database_url: str, **job_settings: Any) -> Settings:
    return load_settings(database_url=database_url, jobs={"cleanup_old_events": job_settings})


def eligible_now(conn: psycopg.Connection[Any], cutoff: datetime) -> set[Any]:
    return {row[0] for row in conn.execute(
        "SELECT e.id FROM parlant_event AS e JOIN parlant_session AS s ON s.id = e.session_id"
        " WHERE s.status = 'completed' AND s.ended_at < %(cutoff)s AND e.created_at < %(cutoff)s",
        {"cutoff": cutoff})}


@pytest.mark.parametrize("created_at_index", ["(created_at)", "(created_at, session_id)"])
def test_a_nightly_run_deletes_what_became_eligible_since_the_last_complete_run(
    database_url: str, conn: psycopg.Connection[Any], created_at_index: str
) -> None:
    # The window's sessions come from the table's pages, or from the index alone when it holds session_id.
    conn.execute(f"DROP INDEX parlant_event_created_at_idx; CREATE INDEX ON parlant_event {created_at_index}")
    settings = with_cleanup(database_url, path="sessions")  # on tables this small "auto" walks
    add_session(conn, "completed", days_ago(150), [days_ago(160)])
    first = nightly(settings, days_before=1)
    assert first.result.summary["since"] is None  # nothing to start from: every candidate session
    # Since then: a session that ended in the last day's window, and a late event of a long-ended one.
    add_session(conn, "completed", days_ago(90.5), [days_ago(200), days_ago(95)])
    _, late = add_session(conn, "completed", days_ago(150), [days_ago(90.5), days_ago(89)])
    _, kept = add_session(conn, "completed", days_ago(89), [days_ago(120)])

    second = nightly(settings)

    summary = second.result.summary
    assert (summary["path"], summary["since"]) == ("sessions", first.result.summary["cutoff"])
    assert "since the last complete run" in summary["path_reason"]
    assert summary["rows_deleted"] == 3
    assert event_ids(conn) == {late[1], *kept}
    # Only the sessions that could hold newly eligible events were looked at.
    assert summary["sessions_visited"] == 2


def test_a_run_that_stopped_early_leaves_the_mark_where_the_last_complete_run_put_it(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    settings = with_cleanup(database_url, path="sessions", batch_size=2, max_run_time="1s")
    complete = nightly(settings, days_before=2)
    for _ in range(6):
        add_session(conn, "completed", days_ago(91.5), [days_ago(95), days_ago(94), days_ago(93)])
    ticks = itertools.count()

    stopped = nightly(settings, days_before=1, monotonic=lambda: float(next(ticks)))
    assert stopped.result.summary["stopped_early"] is True
    assert len(event_ids(conn)) > 0

    last = nightly(settings)

    assert last.result.summary["since"] == complete.result.summary["cutoff"]
    assert event_ids(conn) == set()


def test_a_failed_run_leaves_the_mark_where_the_last_complete_run_put_it(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    settings = with_cleanup(database_url, path="sessions", lock_timeout="100ms")
    complete = nightly(settings, days_before=2)
    _, events = add_session(conn, "completed", days_ago(91), [days_ago(95)])
    with psycopg.connect(database_url) as application:
        application.execute("LOCK TABLE parlant_event IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(JobFailed):
            nightly(settings, days_before=1)

    last = nightly(settings)

    assert last.result.summary["since"] == complete.result.summary["cutoff"]
    assert not set(events) & event_ids(conn)


def test_what_a_mark_cannot_see_waits_for_the_next_full_pass_and_the_audit_counts_it(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    settings = with_cleanup(database_url, path="sessions", full_pass_every="3d")
    first = nightly(settings, days_before=3)
    # After that run: an abandoned session long over is marked completed, and an event is inserted with an
    # old timestamp into a session that ended long ago. Both were not eligible, or not there, at its cutoff.
    reopened, _ = add_session(conn, "abandoned", days_ago(150), [days_ago(160)])
    conn.execute("UPDATE parlant_session SET status = 'completed' WHERE id = %s", (reopened,))
    ended_long_ago, _ = add_session(conn, "completed", days_ago(150), [])
    conn.execute("INSERT INTO parlant_event (id, session_id, \"offset\", created_at)"
                 " VALUES (gen_random_uuid(), %s, 0, %s)", (ended_long_ago, days_ago(155)))
    missed = eligible_now(conn, days_ago(90))

    incremental = nightly(settings, days_before=1)
    assert incremental.result.summary["since"] == first.result.summary["cutoff"]
    assert incremental.result.summary["rows_deleted"] == 0
    audit = nightly(settings, days_before=1, dry_run=True).result.summary
    assert audit["left_by_last_run"] == audit["would_delete"]["events"] == len(missed) == 2

    full = nightly(settings)

    assert full.result.summary["since"] is None
    assert "a full pass is due" in full.result.summary["path_reason"]
    assert full.result.summary["rows_deleted"] == 2
    assert not missed & event_ids(conn)


def test_a_changed_rule_or_time_zone_starts_from_every_candidate_session(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    nightly(with_cleanup(database_url, path="sessions"), days_before=1)
    _, abandoned = add_session(conn, "abandoned", days_ago(150), [days_ago(160)])

    wider = nightly(with_cleanup(database_url, path="sessions", session_statuses=["completed", "abandoned"]))
    elsewhere = nightly(load_settings(database_url=database_url, timezone="Asia/Tokyo",
                                      jobs={"cleanup_old_events": {"path": "sessions"}}))

    assert wider.result.summary["since"] is None
    assert "rule changed" in wider.result.summary["path_reason"]
    assert not set(abandoned) & event_ids(conn)
    assert elsewhere.result.summary["since"] is None


def test_auto_walks_a_backlog_and_then_follows_the_sessions(database_url: str, conn: psycopg.Connection[Any]) -> None:
    add_synthetic_data(conn, events=20_000, now=NOW, seed=0.3)
    conn.execute("ANALYZE")
    settings = with_cleanup(database_url)

    backlog = nightly(settings, days_before=1).result.summary
    nightly_run = nightly(settings).result.summary

    assert backlog["path"] == "walk" and "eligible" in backlog["path_reason"]
    assert backlog["rows_deleted"] > 5000
    assert (nightly_run["path"], nightly_run["since"]) == ("sessions", backlog["cutoff"])
    assert eligible_now(conn, days_ago(90)) == set()


def test_without_an_index_on_session_id_the_cleanup_walks_and_check_says_how_to_help(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    conn.execute("DROP INDEX parlant_event_session_id_idx, parlant_event_session_offset_idx,"
                 " parlant_event_timeline_idx")
    _, events = add_session(conn, "completed", days_ago(150), [days_ago(160)])

    summary = nightly(settings).result.summary

    assert summary["path"] == "walk"
    assert summary["path_reason"] == "parlant_event has no index on session_id"
    assert not set(events) & event_ids(conn)
    advice = {check.subject: check for check in run_checks(settings) if check.job == CLEANUP.name}
    assert advice["parlant_event (session_id)"].ok and advice["parlant_event (session_id)"].warning
    assert advice["parlant_event (session_id)"].fix == (
        "CREATE INDEX CONCURRENTLY parlant_event_session_id_cleanup_idx ON parlant_event (session_id, created_at)")
    assert advice["parlant_event (created_at)"].fix == (  # the fixture's index lacks session_id
        "CREATE INDEX CONCURRENTLY parlant_event_created_at_cleanup_idx ON parlant_event (created_at, session_id)")


def test_without_an_index_on_created_at_every_run_looks_at_every_candidate_session(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    settings = with_cleanup(database_url, path="sessions")
    conn.execute("DROP INDEX parlant_event_created_at_idx")
    nightly(settings, days_before=1)

    summary = nightly(settings).result.summary

    assert (summary["path"], summary["since"]) == ("sessions", None)
    assert summary["path_reason"] == "every candidate session: parlant_event has no index on created_at"
    advice = {check.subject: check for check in run_checks(settings) if check.job == CLEANUP.name}
    assert advice["parlant_event (created_at)"].warning
    assert advice["parlant_event (created_at)"].fix == (
        "CREATE INDEX CONCURRENTLY parlant_event_created_at_cleanup_idx ON parlant_event (created_at, session_id)")


def test_check_is_content_with_an_index_on_created_at_that_holds_session_id(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    # A wider index on created_at without session_id beside it does not hide it.
    conn.execute("CREATE INDEX parlant_event_window_idx ON parlant_event (created_at, session_id);"
                 " CREATE INDEX parlant_event_wider_idx ON parlant_event (created_at, event_type, \"offset\")")

    advice = {check.subject: check for check in run_checks(settings) if check.job == CLEANUP.name}

    assert (advice["parlant_event (created_at)"].detail, advice["parlant_event (created_at)"].fix) == (
        "index parlant_event_window_idx", None)


def test_the_audit_says_which_path_a_run_would_take_and_why(database_url: str) -> None:
    settings = with_cleanup(database_url, path="sessions")
    nightly(settings, days_before=1)

    audit = nightly(settings, dry_run=True)

    summary = audit.result.summary
    assert (summary["path"], summary["since"]) == ("sessions", days_ago(91).isoformat())
    assert summary["last_run_cutoff"] == days_ago(91).isoformat()
    assert summary["left_by_last_run"] == 0
    assert "path          sessions: what became eligible since the last complete run's cutoff" in audit.result.report
