"""Moving off pg_cron: what ``cron.job`` schedules in this database, as maintainer's configuration, and the
jobs pg_cron would run beside maintainer.

The guide's jobs are recognised by their SQL (each built-in job says which statements are its own), with
case, whitespace, trailing semicolons and the ``$$`` quoting ignored; every other job becomes a custom SQL
job. pg_cron's row security shows a role only the jobs it scheduled itself; what the role cannot see is said,
with the grant that shows the rest.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row

import jobs
from maintainer.job import Job
from maintainer.schedule import parse_schedule
from maintainer.settings import Settings

# What PostgreSQL refuses inside a transaction block: such a custom job needs autocommit.
_OUTSIDE_A_TRANSACTION = re.compile(
    r"\b(VACUUM|CONCURRENTLY|CREATE\s+DATABASE|DROP\s+DATABASE|ALTER\s+SYSTEM|CREATE\s+TABLESPACE)\b", re.IGNORECASE)
_NAME = re.compile(r"[^a-z0-9_-]+")

_JOBS = """
SELECT j.jobid, j.jobname, j.schedule, j.command, j.database, j.username, j.active,
       last.status AS last_status, last.start_time AS last_start, last.return_message AS last_message
FROM cron.job AS j
LEFT JOIN LATERAL ({last_run}) AS last ON true
ORDER BY j.jobid
"""
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


Kind = Literal["built-in", "custom", "not imported"]


@dataclass(frozen=True)
class Imported:
    """What the import makes of one pg_cron job: a built-in job's settings, a custom job, or a reason not to."""

    cron: CronJob
    kind: Kind
    job: str | None  # maintainer's name for it
    settings: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None  # why it is not imported, or what to know about it


def normalized(statement: str) -> str:
    """The SQL with case, runs of whitespace, spaces around punctuation and trailing semicolons gone."""
    text = " ".join(statement.strip().strip("$").split()).lower()
    text = re.sub(r"\s*([(),;=<>+*/-])\s*", r"\1", text)
    return text.rstrip(";").strip()


# Whether pg_cron is installed here, and whether the role may read cron.job, all of it or (row security,
# the extension's own policy) only the jobs it scheduled itself. Catalogs only: no privilege on cron needed.
_VISIBILITY = """
SELECT c.oid IS NOT NULL AS installed,
       coalesce(has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT'), false) AS readable,
       coalesce(NOT c.relrowsecurity OR r.rolsuper OR r.rolbypassrls
                OR (pg_has_role(c.relowner, 'USAGE') AND NOT c.relforcerowsecurity)
                OR EXISTS (SELECT FROM pg_policies AS p
                           WHERE p.schemaname = 'cron' AND p.tablename = 'job' AND p.permissive = 'PERMISSIVE'
                             AND p.cmd IN ('SELECT', 'ALL') AND p.qual = 'true'
                             AND EXISTS (SELECT FROM unnest(p.roles) AS role
                                         WHERE CASE role WHEN 'public' THEN true
                                                         ELSE pg_has_role(role, 'USAGE') END)), false) AS sees_all
FROM pg_roles AS r
LEFT JOIN pg_namespace AS n ON n.nspname = 'cron'
LEFT JOIN pg_class AS c ON c.relnamespace = n.oid AND c.relname = 'job'
WHERE r.rolname = current_user
"""

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
    row = conn.execute(_VISIBILITY).fetchone()
    assert row is not None
    installed, readable, sees_all = row
    if not installed or not readable:
        return CronTable("not installed" if not installed else "unreadable", [])
    details = conn.execute("SELECT to_regclass('cron.job_run_details') IS NOT NULL,"
                           " coalesce(current_setting('cron.timezone', true), 'GMT')").fetchone()
    assert details is not None
    has_run_details, timezone = details
    query = _JOBS.format(last_run=_LAST_RUN if has_run_details else _NO_RUN)
    with conn.cursor(row_factory=dict_row) as cursor:
        cron_jobs = [CronJob(**values) for values in cursor.execute(query)]
    return CronTable("all jobs" if sees_all else "own jobs", cron_jobs,
                     "UTC" if timezone.upper() in ("GMT", "UTC", "ETC/UTC", "Z") else timezone)


def plan_import(cron_jobs: list[CronJob], settings: Settings, database: str, role: str) -> list[Imported]:
    """What each pg_cron job becomes in maintainer's configuration."""
    plan: list[Imported] = []
    taken: set[str] = set(jobs.REGISTRY)
    for cron in cron_jobs:
        plan.append(_one(cron, settings, database, role, taken))
        if plan[-1].job:
            taken.add(plan[-1].job)
    return plan


def _one(cron: CronJob, settings: Settings, database: str, role: str, taken: set[str]) -> Imported:
    if cron.database != database:
        return Imported(cron, "not imported", None, reason=f"it runs in database {cron.database}, not {database}:"
                        f" a maintainer pointed at {cron.database} can run it")
    try:
        parse_schedule(cron.schedule, settings.scheduler.schedule_timezone)
    except ValueError as error:
        return Imported(cron, "not imported", None, reason=f"its schedule is one maintainer refuses: {error}")
    sql = normalized(cron.command)
    for job in jobs.REGISTRY.values():
        if (recognised := job.recognises(sql)) is not None:
            return Imported(cron, "built-in", job.name, {**_schedule(job, cron), **recognised,
                                                         **({} if cron.active else {"enabled": False})},
                            reason=None if cron.username == role else
                            f"pg_cron ran it as {cron.username}; maintainer runs it as {role}: see maintainer check")
    if cron.username != role:
        return Imported(cron, "not imported", None, reason=f"it runs as {cron.username}, and maintainer connects as"
                        f" {role}: import it as {cron.username}, or run it from a maintainer connecting as that role")
    name = _custom_name(cron, taken)
    custom: dict[str, Any] = {"schedule": cron.schedule, "sql": cron.command.strip()}
    if _OUTSIDE_A_TRANSACTION.search(cron.command):
        custom["autocommit"] = True
    if not cron.active:
        custom["enabled"] = False
    return Imported(cron, "custom", name, custom)


def _schedule(job: Job, cron: CronJob) -> dict[str, Any]:
    default = job.settings_model.model_fields["schedule"].default
    return {} if " ".join(cron.schedule.split()) == default else {"schedule": " ".join(cron.schedule.split())}


def _custom_name(cron: CronJob, taken: set[str]) -> str:
    """A valid custom job name from ``jobname`` (or the job id), free of the built-in and earlier names."""
    stem = _NAME.sub("-", (cron.jobname or "").lower()).strip("-_") or f"pg-cron-{cron.jobid}"
    if not stem[0].isalnum():
        stem = f"pg-cron-{stem}"
    name = stem
    if name in taken or name.replace("_", "-") in taken:
        name = f"{stem}-{cron.jobid}"
    return name


def render_toml(plan: list[Imported], cron: CronTable, database: str, now: datetime,
                blind_spot: str | None = None) -> str:
    """A configuration file MAINTAINER_CONFIG accepts as it is. A built-in job pg_cron did not schedule is
    written disabled, so that maintainer does what pg_cron did, no more."""
    lines = [f"# Imported from pg_cron (cron.job) of database {database} by maintainer import-pg-cron,"
             f" {now:%Y-%m-%d %H:%M %Z}.", "# Review it, then: MAINTAINER_CONFIG=<this file> maintainer check"]
    if blind_spot:
        lines.append(f"# Incomplete: {blind_spot}.")
    lines += ["\n[scheduler]", f"schedule_timezone = {_value(cron.timezone)}  # pg_cron's: the schedules below are"
              " read in it"]
    for job in jobs.REGISTRY.values():
        lines.append(f"\n[jobs.{job.settings_key}]")
        found = [entry for entry in plan if entry.job == job.name]
        if not found:
            lines += ["# not scheduled in pg_cron: enable it to have maintainer run it", "enabled = false"]
            continue
        lines += _entry_lines(found[0])
        lines += [f"# pg_cron job {entry.cron.jobid} does this work too: the schedule above is job"
                  f" {found[0].cron.jobid}'s" for entry in found[1:]]
    for entry in plan:
        if entry.kind == "custom":
            lines += [f"\n[custom_jobs.{entry.job}]", *_entry_lines(entry)]
    if skipped := [entry for entry in plan if entry.kind == "not imported"]:
        lines.append("\n# Not imported:")
        lines += [f"# pg_cron job {entry.cron.jobid} ({entry.cron.jobname or 'no name'}), {entry.cron.schedule!r}:"
                  f" {entry.reason}" for entry in skipped]
    return "\n".join(lines) + "\n"


def _entry_lines(entry: Imported) -> list[str]:
    lines = [f"# pg_cron job {entry.cron.jobid} ({entry.cron.jobname or 'no name'}){_last(entry.cron)}"]
    if entry.reason:
        lines.append(f"# {entry.reason}")
    return lines + [f"{key} = {_value(value)}" for key, value in entry.settings.items()]


def _last(cron: CronJob) -> str:
    if cron.last_status is None:
        return ""
    when = f" at {cron.last_start:%Y-%m-%d %H:%M %Z}" if cron.last_start else ""
    return f": last run {cron.last_status}{when}"


def _value(value: Any) -> str:
    """A TOML value: JSON's strings, numbers, booleans and arrays of them are TOML's too."""
    return json.dumps(value)


def as_json(plan: list[Imported], cron: CronTable, database: str) -> dict[str, Any]:
    return {"database": database, "schedule_timezone": cron.timezone, "jobs": [{
        "jobid": entry.cron.jobid, "jobname": entry.cron.jobname, "schedule": entry.cron.schedule,
        "command": entry.cron.command, "database": entry.cron.database, "username": entry.cron.username,
        "active": entry.cron.active, "last_status": entry.cron.last_status,
        "last_start": entry.cron.last_start.isoformat() if entry.cron.last_start else None,
        "kind": entry.kind, "job": entry.job, "settings": entry.settings, "reason": entry.reason,
    } for entry in plan]}


def unschedule_statements(plan: list[Imported]) -> list[tuple[int, str]]:
    """(jobid, statement) for exactly the jobs imported: never one left to pg_cron."""
    return [(entry.cron.jobid, f"SELECT cron.unschedule({entry.cron.jobid});")
            for entry in plan if entry.kind != "not imported"]


@dataclass(frozen=True)
class Overlap:
    cron: CronJob
    job: str  # the enabled maintainer job it does the work of


def overlaps(cron: CronTable, database: str, settings: Settings) -> list[Overlap]:
    """Active pg_cron jobs of this database doing the work of an enabled maintainer job: both would run it."""
    enabled = {name for name in jobs.available(settings) if settings.job_settings(name).enabled}
    custom_sql = {normalized("; ".join(job.statements)): name for name, job in settings.custom_jobs.items()}
    found = []
    for job in cron.jobs:
        if not job.active or job.database != database:
            continue
        sql = normalized(job.command)
        name = next((builtin.name for builtin in jobs.REGISTRY.values() if builtin.recognises(sql) is not None),
                    custom_sql.get(sql))
        if name in enabled:
            found.append(Overlap(job, name))
    return found
