"""``maintainer check``: every enabled job's prerequisites, one line each.

What an operator runs after deploying, and what a readiness probe can call: it changes nothing (every
statement runs read-only) and exits 1 when any check fails.
"""

from __future__ import annotations

import time

import psycopg

from maintainer import logs
from maintainer.clock import utc_now
from maintainer.db import connect_service, table
from maintainer.errors import JobFailed
from maintainer.job import Check, RunContext
from maintainer.pg_cron import overlaps, read_jobs
from maintainer.settings import Settings

OLDEST_SUPPORTED = 130000


def run_checks(settings: Settings) -> list[Check]:
    try:
        conn = connect_service(settings, "check")
    except psycopg.OperationalError as error:
        message = " ".join(logs.redact(str(error)).split())  # libpq's message spans lines; a check is one
        return [Check("server", "connection", False, f"cannot connect: {message}",
                      fix="check the database URL, the network path and pg_hba.conf")]
    with conn:
        # Autocommit, so one failing check cannot abort the others; read-only, so none can change anything.
        conn.execute("SET default_transaction_read_only = on")
        checks = [_server_check(conn), _claims_check(conn, settings), *_pg_cron_checks(conn, settings)]
        for job in settings.available_jobs().values():
            job_settings = settings.job_settings(job.name)
            if not job_settings.enabled:
                continue
            context = RunContext(job=job.name, run_id="check", conn=conn, settings=job_settings, clock=utc_now,
                                 log=logs.get_logger(job=job.name), monotonic=time.monotonic)
            try:
                checks.extend(job.check(context))
            except psycopg.Error as error:
                failure = JobFailed.from_database(job.name, error)
                checks.append(Check(job.name, "prerequisites", False, str(failure), fix=failure.fix))
    return checks


def _server_check(conn: psycopg.Connection[tuple[object, ...]]) -> Check:
    version = conn.info.server_version
    name = f"PostgreSQL {conn.info.parameter_status('server_version')}, role {conn.info.user}"
    if version < OLDEST_SUPPORTED:
        return Check("server", "version", False, f"{name}: older than the oldest supported, 13",
                     fix="upgrade PostgreSQL")
    privileges = "the MAINTAIN privilege" if version >= 170000 else "table ownership (no MAINTAIN before 17)"
    return Check("server", "version", True, f"{name}; maintenance needs {privileges}")


def _claims_check(conn: psycopg.Connection[tuple[object, ...]], settings: Settings) -> Check:
    """Replicas run each scheduled run once by claiming it in ``<history.table>_ticks``, with or without the
    run records: that table exists, or the role may create it at the daemon's first run."""
    name = f"{settings.history.table}_ticks"
    schema = name.split(".")[0] if "." in name else "public"
    row = conn.execute(
        "SELECT to_regclass(%(table)s) IS NOT NULL, coalesce(has_schema_privilege("
        " to_regnamespace(%(schema)s), 'CREATE'), has_database_privilege(current_database(), 'CREATE'))",
        {"table": table(name).as_string(conn), "schema": table(schema).as_string(conn)},
    ).fetchone()
    assert row is not None
    exists, creatable = row
    if exists or creatable:
        return Check("server", "replica claims", True,
                     f"one run per scheduled time across replicas: claims in {name}"
                     + ("" if exists else ", created at the daemon's first run"))
    role = conn.info.user
    return Check("server", "replica claims", True, f"role {role} may not create {name}: two replicas may both run"
                 " one scheduled run (one replica alone is not affected)", warning=True,
                 fix=f"create {name} as its owner (config/parlant_maintainer_role.sql does), or GRANT CREATE ON"
                     f" SCHEMA {schema} TO {role}")


def _pg_cron_checks(conn: psycopg.Connection[tuple[object, ...]], settings: Settings) -> list[Check]:
    """A pg_cron job still doing an enabled job's work in this database would run it a second time."""
    cron = read_jobs(conn)
    if cron.visibility == "not installed":
        return []
    checks = [Check(overlap.job, f"pg_cron job {overlap.cron.jobid}", False,
                    f"pg_cron still runs this job's work ({overlap.cron.jobname or 'no name'},"
                    f" {overlap.cron.schedule!r}): both would run it",
                    fix=f"SELECT cron.unschedule({overlap.cron.jobid}); (or: maintainer import-pg-cron --unschedule)")
              for overlap in overlaps(cron, conn.info.dbname, settings)]
    if blind_spot := cron.blind_spot(conn.info.user):
        checks.append(Check("server", "pg_cron", True, blind_spot[0], warning=True, fix=blind_spot[1]))
    elif not checks:
        checks.append(Check("server", "pg_cron", True, f"{len(cron.jobs)} jobs in cron.job, none active here doing"
                            " the work of an enabled job"))
    return checks
