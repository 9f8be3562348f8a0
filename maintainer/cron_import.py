"""``maintainer import-pg-cron``: pg_cron's jobs as maintainer's configuration, and their unscheduling.

The guide's jobs become the built-in ones (each built-in job recognises its statement), every other job of
this database and role a custom SQL job; what cannot be imported is said, with the reason. Nothing is ever
unscheduled without ``--apply``, and then all of it in one transaction or none.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import psycopg

from maintainer import logs
from maintainer.clock import utc_now
from maintainer.db import connect_service
from maintainer.errors import ConfigError, MaintainerError
from maintainer.job import Job, normalized
from maintainer.pg_cron import CronJob, CronTable, read_jobs
from maintainer.schedule import parse_schedule
from maintainer.settings import Settings

# What PostgreSQL refuses inside a transaction block: such a custom job needs autocommit.
_OUTSIDE_A_TRANSACTION = re.compile(
    r"\b(VACUUM|CONCURRENTLY|CREATE\s+DATABASE|DROP\s+DATABASE|ALTER\s+SYSTEM|CREATE\s+TABLESPACE)\b", re.IGNORECASE)
_NAME = re.compile(r"[^a-z0-9_-]+")

Kind = Literal["built-in", "custom", "not imported"]


@dataclass(frozen=True)
class Imported:
    """What the import makes of one pg_cron job: a built-in job's settings, a custom job, or a reason not to."""

    cron: CronJob
    kind: Kind
    job: str | None  # maintainer's name for it
    settings: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None  # why it is not imported, or what to know about it


def plan_import(cron_jobs: list[CronJob], settings: Settings, database: str, role: str) -> list[Imported]:
    """What each pg_cron job becomes in maintainer's configuration."""
    plan: list[Imported] = []
    taken: set[str] = set(settings.registry.jobs)
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
    for job in settings.registry.jobs.values():
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


def _schedule(job: Job[Any], cron: CronJob) -> dict[str, Any]:
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


def render_toml(plan: list[Imported], cron: CronTable, database: str, now: datetime, builtin: Iterable[Job[Any]],
                blind_spot: str | None = None) -> str:
    """A configuration file MAINTAINER_CONFIG accepts as it is. A built-in job pg_cron did not schedule is
    written disabled, so that maintainer does what pg_cron did, no more."""
    lines = [f"# Imported from pg_cron (cron.job) of database {database} by maintainer import-pg-cron,"
             f" {now:%Y-%m-%d %H:%M %Z}.", "# Review it, then: MAINTAINER_CONFIG=<this file> maintainer check"]
    if blind_spot:
        lines.append(f"# Incomplete: {blind_spot}.")
    lines += ["\n[scheduler]", f"schedule_timezone = {_value(cron.timezone)}  # pg_cron's: the schedules below are"
              " read in it"]
    for job in builtin:
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




def import_pg_cron(settings: Settings, output_format: Literal["toml", "json"], *, unschedule: bool,
                   apply: bool) -> str:
    """What the command prints: the configuration file (or its JSON), the unschedule statements, or (with
    ``apply``) what was unscheduled. MaintainerError when pg_cron cannot be read or nothing was unscheduled."""
    if apply and not unschedule:
        raise ConfigError("--apply goes with --unschedule: nothing is unscheduled without both")
    log = logs.get_logger()
    try:
        conn = connect_service(settings, "import-pg-cron", autocommit=False)
    except psycopg.Error as error:
        raise MaintainerError(f"cannot connect to read pg_cron's jobs: {error}") from error
    with conn:
        cron = read_jobs(conn)
        blind_spot = cron.blind_spot(conn.info.user)
        if cron.visibility == "not installed":
            raise MaintainerError(f"pg_cron is not installed in database {conn.info.dbname} (no cron.job)")
        if cron.visibility == "unreadable" and blind_spot:
            raise MaintainerError(f"{blind_spot[0]}; fix: {blind_spot[1]}")
        if blind_spot:
            log.warning("pg_cron_unchecked", reason=blind_spot[0], fix=blind_spot[1])
        plan = plan_import(cron.jobs, settings, conn.info.dbname, conn.info.user)
        for entry in plan:
            if entry.kind == "not imported":
                log.warning("pg_cron_job_not_imported", pg_cron_jobid=entry.cron.jobid,
                            pg_cron_jobname=entry.cron.jobname, reason=entry.reason)
        if not unschedule:
            if output_format == "json":
                return json.dumps(as_json(plan, cron, conn.info.dbname), indent=2) + "\n"
            return render_toml(plan, cron, conn.info.dbname, utc_now(), settings.registry.jobs.values(),
                               blind_spot and blind_spot[0])
        statements = unschedule_statements(plan)
        if not apply:
            return "".join(f"{statement}\n" for _, statement in statements)
        try:
            with conn.transaction():
                for jobid, _ in statements:
                    conn.execute("SELECT cron.unschedule(%s)", (jobid,))
        except psycopg.Error as error:
            raise MaintainerError(
                f"nothing was unscheduled (one transaction): cron.unschedule() failed: {error} (SQLSTATE"
                f" {error.sqlstate}); fix: run --apply as the role that scheduled the jobs, or as a superuser"
            ) from error
    return "".join(f"unscheduled pg_cron job {entry.cron.jobid} ({entry.cron.jobname or 'no name'}), now"
                   f" maintainer's {entry.job}\n" for entry in plan if entry.kind != "not imported")
