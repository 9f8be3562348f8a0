"""Connections as maintenance needs them: named, bounded in time, in a fixed time zone."""

from __future__ import annotations

from datetime import timedelta
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from maintainer.job import milliseconds
from maintainer.settings import Settings

# A dead peer (failover, dropped NAT entry) is noticed within about a minute instead of hanging a run.
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}


def connect(
    settings: Settings, purpose: str, *, lock_timeout: timedelta, statement_timeout: timedelta, autocommit: bool
) -> psycopg.Connection[Any]:
    """Open a connection for ``purpose`` (a job name, or ``check``).

    ``application_name`` shows DBAs who is working. The session ``TimeZone`` is ``session_timezone`` when it
    is set, else the database's own: the zone the application's sessions and pg_cron read the ``TIMESTAMP
    WITHOUT TIME ZONE`` columns in.
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
            "SELECT set_config('TimeZone', coalesce(%s, current_setting('TimeZone')), false),"
            " set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)",
            (
                settings.session_timezone,
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


# Service connections (check, history, pg_cron, import) read catalogs and small tables: they wait for no lock
# and take no long statement.
_SERVICE_LOCK_TIMEOUT = timedelta(seconds=5)
_SERVICE_STATEMENT_TIMEOUT = timedelta(seconds=30)


def connect_service(settings: Settings, purpose: str, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    """A connection for the program's own reading and bookkeeping, with the service timeouts."""
    return connect(settings, purpose, lock_timeout=_SERVICE_LOCK_TIMEOUT,
                   statement_timeout=_SERVICE_STATEMENT_TIMEOUT, autocommit=autocommit)


def table(name: str) -> sql.Identifier:
    """A table or view name from configuration, optionally schema-qualified (``public.parlant_event``)."""
    return sql.Identifier(*name.split("."))


def sql_file(package: str, name: str) -> str:
    """The text of ``<package>/sql/<name>``: SQL of more than a few lines lives in a file beside the code that
    runs it. Composed with :mod:`psycopg.sql` where it names a configured table."""
    return resources.files(package).joinpath("sql", name).read_text()
