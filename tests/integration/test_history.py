"""The run history: what it records, its pruning, a role that may not create it, and the overdue check that
reads every replica's successes from it."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import psycopg

from maintainer.history import History, RunRecord
from maintainer.runner import run_job
from maintainer.scheduler import Daemon
from maintainer.settings import Settings
from tests.support.logs import LogLines
from tests.support.parlant import NOW, add_session, days_ago, event_ids, fixed_clock
from tests.support.runs import (
    CLEANUP,
    HISTORY_TABLE,
)
from tests.support.settings import load_settings


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


