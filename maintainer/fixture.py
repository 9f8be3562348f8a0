"""The Parlant fixture schema and synthetic data, for the demo, the tests and the benchmark."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from maintainer.db import sql_file


def create_schema(conn: psycopg.Connection[Any]) -> None:
    """The tables, enum and indexes of the application's migrations that maintenance works on."""
    conn.execute(sql_file("maintainer", "parlant_fixture.sql").encode())


# Each event's content text by default: an md5, the width every benchmark figure without --content-bytes has.
CONTENT_BYTES = 32


def add_synthetic_data(
    conn: psycopg.Connection[Any],
    *,
    events: int,
    now: datetime,
    seed: float = 0.42,
    events_per_session: int = 40,
    agents: int = 20,
    days: int = 365,
    time_ordered: bool = False,
    content_bytes: int = CONTENT_BYTES,
) -> None:
    """Insert ``events`` events (and their sessions and agents), sessions starting over the ``days`` before
    ``now``; stored session by session, or ``time_ordered``, in the order they were created. Each event's
    content holds a text of ``content_bytes`` characters (at least 32)."""
    params = {
        "now": now.replace(tzinfo=None),
        "days": days,
        "time_ordered": time_ordered,
        "content_bytes": content_bytes,
        "seed": seed,
        "agents": agents,
        "events": events,
        "per_session": events_per_session,
        "sessions": -(-events // events_per_session),
    }
    # Client-side binding: the script is several statements, which server-side parameters do not allow.
    psycopg.ClientCursor(conn).execute(sql_file("maintainer", "synthetic_data.sql"), params)
