"""``maintainer check``: every enabled job's prerequisites, one line each.

What an operator runs after deploying, and what a readiness probe can call: it changes nothing (every
statement runs read-only) and exits 1 when any check fails.
"""

from __future__ import annotations

import time
from datetime import timedelta

import psycopg

import jobs
from maintainer import logs
from maintainer.db import connect
from maintainer.errors import JobFailed
from maintainer.job import Check, RunContext
from maintainer.runner import utc_now
from maintainer.settings import Settings

OLDEST_SUPPORTED = 130000


def run_checks(settings: Settings) -> list[Check]:
    try:
        conn = connect(settings, "check", lock_timeout=timedelta(seconds=5),
                       statement_timeout=timedelta(seconds=30), autocommit=True)
    except psycopg.OperationalError as error:
        message = " ".join(logs.redact(str(error)).split())  # libpq's message spans lines; a check is one
        return [Check("server", "connection", False, f"cannot connect: {message}",
                      fix="check the database URL, the network path and pg_hba.conf")]
    with conn:
        # Autocommit, so one failing check cannot abort the others; read-only, so none can change anything.
        conn.execute("SET default_transaction_read_only = on")
        checks = [_server_check(conn)]
        for job in jobs.available(settings).values():
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
