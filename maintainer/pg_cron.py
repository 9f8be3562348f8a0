"""pg_cron beside maintainer: the jobs ``cron.job`` schedules in this database, and those that do the work of
an enabled maintainer job (both would run it).

A job recognises its own statements (each built-in job the guide's, each custom job its ``sql``), with case,
whitespace, trailing semicolons and the ``$$`` quoting ignored. pg_cron's row security shows a role only the
jobs it scheduled itself; what the role cannot see is said, with the grant that shows the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row

from maintainer import logs, metrics
from maintainer.db import connect_service, sql_file
from maintainer.job import normalized
from maintainer.settings import Settings

_LAST_RUN = ("SELECT d.status, d.start_time, d.return_message FROM cron.job_run_details AS d"
             " WHERE d.jobid = j.jobid ORDER BY d.start_time DESC NULLS LAST LIMIT 1")
_NO_RUN = "SELECT NULL::text AS status, NULL::timestamptz AS start_time, NULL::text AS return_message"


@dataclass(frozen=True)
class CronJob:
    """One row of ``cron.job``, with the last outcome ``cron.job_run_details`` has of it (when it has one)."""

    jobid: int
    jobname: str | None
    schedule: str
    command: str
    database: str
    username: str
    active: bool
    last_status: str | None = None
    last_start: datetime | None = None
    last_message: str | None = None



Visibility = Literal["not installed", "unreadable", "own jobs", "all jobs"]


@dataclass(frozen=True)
class CronTable:
    """What the role can know of pg_cron here: its jobs (those it may see) and how many it may see."""

    visibility: Visibility
    jobs: list[CronJob]
    timezone: str = "UTC"  # the zone pg_cron reads schedules in: cron.timezone from pg_cron 1.5, GMT before

    def blind_spot(self, role: str) -> tuple[str, str] | None:
        """What the role cannot see of pg_cron's jobs, and the grant that shows them; None if nothing."""
        policy = f"CREATE POLICY maintainer_reads_jobs ON cron.job FOR SELECT TO {role} USING (true);"
        if self.visibility == "unreadable":
            return (f"pg_cron is installed, but role {role} may not read cron.job: a pg_cron job doing a"
                    f" maintainer job's work cannot be found",
                    f"as a superuser: GRANT USAGE ON SCHEMA cron TO {role}; {policy}")
        if self.visibility == "own jobs":
            return (f"role {role} sees only the pg_cron jobs it scheduled itself (row security on cron.job):"
                    f" those of other roles cannot be compared", f"as a superuser: {policy}")
        return None


def read_jobs(conn: psycopg.Connection[Any]) -> CronTable:
    """Every pg_cron job the role may see, oldest first."""
    row = conn.execute(sql_file("maintainer", "pg_cron_visibility.sql").encode()).fetchone()
    assert row is not None
    installed, readable, sees_all = row
    if not installed or not readable:
        return CronTable("not installed" if not installed else "unreadable", [])
    details = conn.execute("SELECT to_regclass('cron.job_run_details') IS NOT NULL,"
                           " coalesce(current_setting('cron.timezone', true), 'GMT')").fetchone()
    assert details is not None
    has_run_details, timezone = details
    query = sql_file("maintainer", "pg_cron_jobs.sql").format(last_run=_LAST_RUN if has_run_details else _NO_RUN)
    with conn.cursor(row_factory=dict_row) as cursor:
        cron_jobs = [CronJob(**values) for values in cursor.execute(query)]
    return CronTable("all jobs" if sees_all else "own jobs", cron_jobs,
                     "UTC" if timezone.upper() in ("GMT", "UTC", "ETC/UTC", "Z") else timezone)


@dataclass(frozen=True)
class Overlap:
    cron: CronJob
    job: str  # the enabled maintainer job it does the work of


def overlaps(cron: CronTable, database: str, settings: Settings) -> list[Overlap]:
    """Active pg_cron jobs of this database doing the work of an enabled maintainer job: both would run it."""
    available = settings.available_jobs()  # built-in first: the guide's statement is theirs
    found = []
    for job in cron.jobs:
        if not job.active or job.database != database:
            continue
        sql = normalized(job.command)
        name = next((name for name, candidate in available.items() if candidate.recognises(sql) is not None), None)
        if name is not None and settings.job_settings(name).enabled:
            found.append(Overlap(job, name))
    return found


class OverlapWatch:
    """The daemon's look at pg_cron, at start and with every heartbeat: while pg_cron still does an enabled
    job's work in this database it says so (``pg_cron_overlap``) and shows it on /metrics; what the role
    cannot see of pg_cron's jobs it says once (``pg_cron_unchecked``)."""

    def __init__(self, settings: Settings, enabled: list[str]) -> None:
        self.settings, self.enabled = settings, enabled
        self._blind_spot_told = False
        self._log = logs.get_logger()

    def check(self) -> None:
        try:
            with connect_service(self.settings, "pg-cron-check") as conn:
                cron = read_jobs(conn)
                found = overlaps(cron, conn.info.dbname, self.settings)
                blind_spot = cron.blind_spot(conn.info.user)
        except psycopg.Error:
            return  # the database is away: the runs say so
        for name in self.enabled:
            metrics.PG_CRON_OVERLAP.labels(name).set(1 if any(overlap.job == name for overlap in found) else 0)
        for overlap in found:
            self._log.warning("pg_cron_overlap", job=overlap.job, pg_cron_jobid=overlap.cron.jobid,
                              pg_cron_jobname=overlap.cron.jobname, schedule=overlap.cron.schedule,
                              fix=f"SELECT cron.unschedule({overlap.cron.jobid});")
        if blind_spot and not self._blind_spot_told:
            self._blind_spot_told = True
            self._log.warning("pg_cron_unchecked", reason=blind_spot[0], fix=blind_spot[1])
