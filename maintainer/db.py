"""Connections as maintenance needs them: named, bounded in time, in a fixed time zone."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.errors import Diagnostic

from maintainer.errors import JobFailed
from maintainer.job import milliseconds

if TYPE_CHECKING:
    from maintainer.settings import Settings

# A dead peer (failover, dropped NAT entry) is noticed within about a minute instead of hanging a run.
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}


def connect(
    settings: Settings, purpose: str, *, lock_timeout: timedelta, statement_timeout: timedelta, autocommit: bool
) -> psycopg.Connection[Any]:
    """Open a connection for ``purpose`` (a job name, or ``check``).

    ``application_name`` shows DBAs who is working; the session ``TimeZone`` makes comparisons of
    ``TIMESTAMP WITHOUT TIME ZONE`` columns with computed cutoffs independent of the server's default.
    """
    params: dict[str, Any] = {
        "connect_timeout": max(1, round(settings.connect_timeout.total_seconds())),
        **_KEEPALIVES,
        **conninfo_to_dict(settings.require_database_url()),
        "application_name": f"maintainer:{purpose}",
    }
    conn = psycopg.connect(**params, autocommit=autocommit)
    try:
        # set_config() rather than startup options: connection poolers reject unknown startup parameters.
        conn.execute(
            "SELECT set_config('TimeZone', %s, false), set_config('lock_timeout', %s, false),"
            " set_config('statement_timeout', %s, false)",
            (
                settings.timezone,
                f"{milliseconds(lock_timeout)}ms",
                f"{milliseconds(statement_timeout)}ms",
            ),
        )
        if not autocommit:
            conn.commit()
    except BaseException:
        conn.close()
        raise
    return conn


def table(name: str) -> sql.Identifier:
    """A table or view name from configuration, optionally schema-qualified (``public.parlant_event``)."""
    return sql.Identifier(*name.split("."))


@contextmanager
def failing_on_warnings(job: str, conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Turn a WARNING the server sends while the block runs into JobFailed.

    VACUUM and ANALYZE report a table they skipped (no privilege) with a WARNING, not an error:
    maintenance that PostgreSQL did not do must not be logged as done.
    """
    warnings: list[tuple[str | None, str | None, str | None]] = []

    def keep(diagnostic: Diagnostic) -> None:
        # The diagnostic lives only during this callback: copy what the error will need.
        if diagnostic.severity_nonlocalized == "WARNING":
            fix = diagnostic.message_hint or diagnostic.message_detail
            warnings.append((diagnostic.message_primary, diagnostic.sqlstate, fix))

    conn.add_notice_handler(keep)
    try:
        yield
    finally:
        conn.remove_notice_handler(keep)
    if warnings:
        message, sqlstate, fix = warnings[0]
        raise JobFailed(job, f"PostgreSQL warned: {message}", sqlstate=sqlstate, fix=fix)
