"""Build Parlant rows with exact timestamps, relative to the fixed time the tests run at."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
CUTOFF = (NOW - timedelta(days=90)).replace(tzinfo=None)  # the default retention, in UTC


def fixed_clock() -> datetime:
    return NOW


def days_ago(days: float) -> datetime:
    """A naive UTC timestamp, as the application stores them in TIMESTAMP WITHOUT TIME ZONE."""
    return (NOW - timedelta(days=days)).replace(tzinfo=None)


def add_session(
    conn: psycopg.Connection[Any], status: str, ended_at: datetime | None, event_times: list[datetime]
) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """One session with one event per timestamp; returns the session id and the event ids in order."""
    agent_id = uuid.uuid4()
    session_id = uuid.uuid4()
    conn.execute("INSERT INTO parlant_agent (id, name) VALUES (%s, 'test agent')", (agent_id,))
    conn.execute(
        "INSERT INTO parlant_session (id, agent_id, status, started_at, ended_at) VALUES (%s, %s, %s, %s, %s)",
        (session_id, agent_id, status, min(event_times, default=days_ago(400)), ended_at),
    )
    event_ids = [uuid.uuid4() for _ in event_times]
    with conn.cursor() as cursor:
        cursor.executemany(
            'INSERT INTO parlant_event (id, session_id, "offset", created_at) VALUES (%s, %s, %s, %s)',
            [(event_id, session_id, offset, at) for offset, event_id, at in zip(
                itertools.count(), event_ids, event_times, strict=False)],
        )
    return session_id, event_ids


def event_ids(conn: psycopg.Connection[Any]) -> set[uuid.UUID]:
    return {row[0] for row in conn.execute("SELECT id FROM parlant_event")}


def days_before_now(days: float) -> datetime:
    """A naive UTC timestamp ``days`` before the real now: for tests that run the CLI, whose clock is real."""
    return (datetime.now(UTC) - timedelta(days=days)).replace(tzinfo=None)
