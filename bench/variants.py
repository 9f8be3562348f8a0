"""The ways of deleting old events that the benchmark compares, each measured the same way.

(a) ``single_delete``: the guide's rule as one statement, one transaction, as pg_cron ran it.
(b) ``maintainer_cleanup``: ``python -m maintainer run-once cleanup-old-events`` as an operator runs it,
    a subprocess with its default settings (or those given, such as another ``batch_size``), logging every batch.
``dry_run_audit`` times the retention audit, ``--dry-run --format json``.

Wall time is the cleanup's own: the DELETE statement (autocommit, so its commit included), or the job's
``duration_ms`` (connect, lock, cutoff, every batch, unlock); the maintainer process's time from spawn to
exit, interpreter start included, is reported beside it. Peak RSS is the kernel's high-water mark for the
subprocess (``ru_maxrss`` from ``os.wait4`` on its pid), not a sampled value.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import psycopg

from bench.database import RETENTION_DAYS, Template, survivors, wal_bytes_since, wal_lsn
from bench.measure import BatchStats, batch_series
from jobs.cleanup_old_events import JOB as CLEANUP

PROJECT_ROOT = Path(__file__).resolve().parent.parent

SINGLE_DELETE = """
DELETE FROM parlant_event e USING parlant_session s
WHERE e.session_id = s.id AND s.status = 'completed' AND s.ended_at < %(cutoff)s AND e.created_at < %(cutoff)s
"""


@dataclass(frozen=True)
class CleanupOutcome:
    """One cleanup run, measured."""

    rows_deleted: int
    seconds: float
    wal_bytes: int
    survivors: tuple[int, int]  # count and checksum of the template's events left
    window: tuple[float, float]  # time.monotonic() at the cleanup's start and end, for the load's numbers
    batches: BatchStats | None = None
    batch_ms: tuple[float, ...] = ()  # each batch's time and rows, in order (--details)
    batch_rows: tuple[int, ...] = ()
    process_seconds: float | None = None
    rss_mb: float | None = None
    path: str | None = None  # the path maintainer chose

    @property
    def rows_per_s(self) -> float:
        return self.rows_deleted / self.seconds if self.seconds > 0 else float("nan")


@dataclass(frozen=True)
class AuditOutcome:
    seconds: float  # the dry run's own duration_ms
    process_seconds: float
    would_delete: int
    rss_mb: float


def single_delete(url: str, template: Template, retention_days: int = RETENTION_DAYS) -> CleanupOutcome:
    with psycopg.connect(url, autocommit=True, application_name="bench:single-delete") as conn:
        conn.execute("SET TimeZone = 'UTC'")
        row = conn.execute("SELECT (now() - make_interval(days => %s))::timestamp", (retention_days,)).fetchone()
        assert row is not None
        cutoff: datetime = row[0]
        template.check_cutoff(cutoff, "single DELETE", retention_days)
        before = wal_lsn(conn)
        started = time.monotonic()
        rows_deleted = conn.execute(SINGLE_DELETE, {"cutoff": cutoff}).rowcount
        ended = time.monotonic()
        wal_bytes = wal_bytes_since(conn, before)
        return CleanupOutcome(rows_deleted, ended - started, wal_bytes, survivors(conn, template), (started, ended))


def maintainer_cleanup(url: str, template: Template, job_settings: Mapping[str, str] | None = None) -> CleanupOutcome:
    """``job_settings``: cleanup-old-events settings by name (``batch_size``), as strings, over its defaults."""
    job_settings = {**(job_settings or {}), "progress_every_batches": "1"}  # every batch logs its elapsed_ms
    settings = {f"JOBS__{CLEANUP.settings_key}__{name}".upper(): value for name, value in job_settings.items()}
    with psycopg.connect(url, autocommit=True, application_name="bench") as conn:
        before = wal_lsn(conn)
        process = run_maintainer(url, ["run-once", "cleanup-old-events"], settings)
        wal_bytes = wal_bytes_since(conn, before)
        left = survivors(conn, template)
    started, succeeded = process.event("job_started"), process.event("job_succeeded")
    result = succeeded[1]
    batch_ms, batch_rows = batch_series([line for _, line in process.events("cleanup_progress")])
    template.check_cutoff(datetime.fromisoformat(result["cutoff"]), "maintainer", result["retention_days"])
    return CleanupOutcome(
        rows_deleted=result["rows_deleted"], seconds=result["duration_ms"] / 1000, wal_bytes=wal_bytes,
        survivors=left, window=(started[0], succeeded[0]),
        batches=BatchStats.from_times(batch_ms), batch_ms=tuple(batch_ms), batch_rows=tuple(batch_rows),
        process_seconds=process.seconds, rss_mb=process.rss_mb, path=result["path"],
    )


def dry_run_audit(url: str, template: Template) -> AuditOutcome:
    process = run_maintainer(url, ["run-once", "cleanup-old-events", "--dry-run", "--format", "json"], {})
    report = json.loads(process.stdout)
    template.check_cutoff(datetime.fromisoformat(report["cutoff"]), "dry run")
    return AuditOutcome(
        seconds=report["duration_ms"] / 1000, process_seconds=process.seconds,
        would_delete=report["would_delete"]["events"], rss_mb=process.rss_mb,
    )


@dataclass(frozen=True)
class MaintainerProcess:
    stdout: str
    log: list[tuple[float, dict[str, Any]]]  # (time.monotonic() when read, the JSON log line)
    seconds: float
    rss_mb: float

    def events(self, name: str) -> list[tuple[float, dict[str, Any]]]:
        return [(at, line) for at, line in self.log if line.get("event") == name]

    def event(self, name: str) -> tuple[float, dict[str, Any]]:
        found = self.events(name)
        if len(found) != 1:
            raise RuntimeError(f"maintainer logged {len(found)} {name} lines, expected one")
        return found[0]


def run_maintainer(
    url: str, arguments: list[str], settings: dict[str, str], timeout: float = 3600
) -> MaintainerProcess:
    """Run ``python -m maintainer`` with only our settings (``MAINTAINER_<key>``), its JSON logs read live."""
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("MAINTAINER_") and key != "DATABASE_URL"
    }
    environment |= {"MAINTAINER_DATABASE_URL": url, "MAINTAINER_LOG_FORMAT": "json"}
    environment |= {f"MAINTAINER_{key}": value for key, value in settings.items()}
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "maintainer", *arguments], cwd=PROJECT_ROOT, env=environment,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    stdout: list[str] = []
    stderr: list[tuple[float, str]] = []
    readers = [
        threading.Thread(target=_read, args=(process.stdout, stdout, False), daemon=True),
        threading.Thread(target=_read, args=(process.stderr, stderr, True), daemon=True),
    ]
    for reader in readers:
        reader.start()
    deadline = started + timeout
    while True:
        # wait4, not Popen.wait: it also returns the child's resource usage, ru_maxrss included.
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            process.kill()
            os.wait4(process.pid, 0)
            raise RuntimeError(f"maintainer {' '.join(arguments)} ran longer than {timeout:.0f} s and was killed")
        time.sleep(0.005)
    seconds = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join(30)
    lines = [text for _, text in stderr]
    if process.returncode != 0:
        raise RuntimeError(
            f"maintainer {' '.join(arguments)} exited {process.returncode}:\n" + "".join(lines[-20:])
        )
    log = [(at, json.loads(text)) for at, text in stderr if text.startswith("{")]
    return MaintainerProcess("".join(stdout), log, seconds, usage.ru_maxrss / 1024)  # Linux: ru_maxrss in KiB


def _read(stream: IO[str], into: list[Any], timestamped: bool) -> None:
    for line in stream:
        into.append((time.monotonic(), line) if timestamped else line)
