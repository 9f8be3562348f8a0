"""The databases the benchmark works on: one template with the synthetic data, a fresh copy per variant.

The template is built once per benchmark: the fixture schema and ``maintainer.fixture``'s synthetic
events, generated server-side relative to the real time of the build with a fixed seed. Every variant
then starts from ``CREATE DATABASE ... TEMPLATE`` of it, so all of them delete from identical data.

The cleanup job takes its cutoff (now - 90 days) from the real clock when it runs, minutes after the
build; the single DELETE computes its own the same way. So that both name the same rows, the template
keeps a guard band at each retention the benchmark runs (90, 85 and 80 days): no event was created and no
session ended in the day after the build-time cutoff (the few that were are moved one day later). Any
cutoff within that day then selects the same rows, and every variant checks that its cutoff lies there.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from jobs.cleanup_old_events import CleanupSettings
from maintainer.embedded import start_server
from maintainer.fixture import CONTENT_BYTES, add_synthetic_data, create_schema

RETENTION_DAYS = CleanupSettings().retention_days
RETENTION = timedelta(days=RETENTION_DAYS)
STEADY_RETENTIONS = (90, 85, 80)  # nothing newly eligible, a few days' worth, about 2% of a year
GUARD_BAND = timedelta(days=1)
SEED = 0.42
SERVER_SETTINGS = (
    "server_version", "shared_buffers", "wal_buffers", "max_wal_size", "synchronous_commit", "wal_level",
    "full_page_writes", "wal_compression", "checkpoint_timeout", "work_mem", "maintenance_work_mem",
    "effective_io_concurrency", "fsync",
)

_GUARD_BAND = """
UPDATE parlant_event SET created_at = created_at + %(band)s
WHERE created_at >= %(cutoff)s AND created_at < %(cutoff)s + %(band)s;
UPDATE parlant_session SET ended_at = ended_at + %(band)s, last_activity_at = last_activity_at + %(band)s
WHERE ended_at >= %(cutoff)s AND ended_at < %(cutoff)s + %(band)s;
"""

# The surviving template events (the load's own inserts are newer than the data's "now").
_SURVIVORS = """
SELECT count(*), coalesce(sum(hashtext(id::text)), 0) FROM parlant_event WHERE created_at <= %s
"""


@dataclass(frozen=True)
class Template:
    name: str
    events: int
    now: datetime  # the data's "now": naive UTC, like the columns
    cutoff: datetime  # now - retention at build time; any cutoff up to a guard band later selects the same rows
    eligible: int  # events the rule names at that cutoff
    seconds: float

    def check_cutoff(self, cutoff: datetime, variant: str, retention_days: int = RETENTION_DAYS) -> None:
        band_start = self.now - timedelta(days=retention_days)
        if not band_start <= cutoff < band_start + GUARD_BAND:
            raise RuntimeError(
                f"{variant}: its cutoff {cutoff} lies outside the template's guard band starting at {band_start}:"
                " rebuild the template (the benchmark ran longer than the band)"
            )


class Server:
    """A PostgreSQL server the benchmark may create and drop databases on."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = f"bench_{os.getpid()}"

    def url_for(self, database: str) -> str:
        return make_conninfo(self.url, dbname=database)

    def admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, autocommit=True, application_name="bench")

    def settings(self) -> dict[str, str]:
        with self.admin() as conn:
            rows = conn.execute(
                "SELECT name, current_setting(name) FROM unnest(%s::text[]) AS name", (list(SERVER_SETTINGS),)
            ).fetchall()
        return {str(name): str(value) for name, value in rows}

    def build_template(
        self, events: int, days: int = 365, suffix: str = "template", time_ordered: bool = False,
        content_bytes: int = CONTENT_BYTES,
    ) -> Template:
        """``events`` synthetic events, their sessions starting over the ``days`` before now."""
        started = time.monotonic()
        name = f"{self.prefix}_{suffix}"
        now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        cutoff = now - RETENTION
        self.drop(name)
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("ALTER DATABASE {} SET timezone TO 'UTC'").format(sql.Identifier(name)))
        with psycopg.connect(self.url_for(name)) as conn:
            create_schema(conn)
            add_synthetic_data(conn, events=events, now=now, seed=SEED, days=days, time_ordered=time_ordered,
                               content_bytes=content_bytes)
            for retention_days in STEADY_RETENTIONS:
                psycopg.ClientCursor(conn).execute(
                    _GUARD_BAND, {"band": GUARD_BAND, "cutoff": now - timedelta(days=retention_days)})
        with psycopg.connect(self.url_for(name), autocommit=True) as conn:
            # Hint bits and the visibility map set once here, not in every copy.
            conn.execute("VACUUM ANALYZE")
            row = conn.execute(
                "SELECT count(*) FROM parlant_event AS e JOIN parlant_session AS s ON s.id = e.session_id"
                " WHERE s.status = 'completed' AND s.ended_at < %(cutoff)s AND e.created_at < %(cutoff)s",
                {"cutoff": cutoff},
            ).fetchone()
        assert row is not None
        return Template(name, events, now, cutoff, row[0], time.monotonic() - started)

    def copy(self, template: Template, name: str) -> str:
        """A new database copied from the template, its time zone UTC like the data's; its URL."""
        self.drop(name)
        with self.admin() as conn:
            create = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template.name))
            if conn.info.server_version >= 150000:
                # A file copy and a checkpoint rather than WAL-logging the whole copy (15's default; older
                # servers only copy files).
                create += sql.SQL(" STRATEGY FILE_COPY")
            conn.execute(create)
            conn.execute(sql.SQL("ALTER DATABASE {} SET timezone TO 'UTC'").format(sql.Identifier(name)))
        return self.url_for(name)

    @contextlib.contextmanager
    def fresh_copy(self, template: Template, variant: str) -> Iterator[str]:
        """A new database copied from the template, vacuumed, analyzed and checkpointed; dropped after."""
        name = f"{self.prefix}_{variant}"
        url = self.copy(template, name)
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
                # Every variant starts right after a checkpoint: the same full-page images in its WAL.
                with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
                    conn.execute("CHECKPOINT")
            yield url
        finally:
            self.drop(name)

    def drop(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def survivors(conn: psycopg.Connection[Any], template: Template) -> tuple[int, int]:
    """Count and checksum of the template's events still there: equal pairs mean the same rows survived."""
    row = conn.execute(_SURVIVORS, (template.now,)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def wal_lsn(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    return str(row[0])


def wal_bytes_since(conn: psycopg.Connection[Any], lsn: str) -> int:
    row = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (lsn,)).fetchone()
    assert row is not None
    return int(row[0])


@contextlib.contextmanager
def benchmark_server(database_url: str | None) -> Iterator[Server]:
    """The server at ``database_url``, or a throwaway embedded PostgreSQL 18 (stopped and deleted after)."""
    if database_url:
        yield Server(database_url)
        return
    # A short path: the server's Unix socket lives in the data directory, and socket paths are short.
    embedded = start_server(Path(tempfile.mkdtemp(prefix="mb-")) / "pgdata")
    try:
        yield Server(embedded.get_uri())
    finally:
        embedded.cleanup()
