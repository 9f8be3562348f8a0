"""Run history in the tool's own table: what pg_cron's job_run_details was, but pruned.

Each record keeps the run's result fields, and a job gets those of its last complete run: the cleanup's
high-water mark.

The same schema holds each job's last claimed scheduled time (``<table>_ticks``), so that replicas run
each scheduled run once. History is a convenience, never a reason for a run to fail: without the
privilege to create the table the daemon runs on and says history is off; when the database is away a
record is logged and dropped.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from maintainer.db import connect_service, sql_file, table
from maintainer.job import Outcome, StopReason
from maintainer.logs import get_logger, json_value
from maintainer.settings import Settings

# Claimed by a run that holds the job's lock: a replica whose run comes after another's for the same
# scheduled time finds the tick taken (the UPDATE's WHERE fails, nothing is returned) and skips.
_CLAIM_TICK = """
INSERT INTO {ticks} AS claimed (job, tick, run_id) VALUES (%s, %s, %s)
ON CONFLICT (job) DO UPDATE SET tick = excluded.tick, run_id = excluded.run_id
WHERE claimed.tick < excluded.tick OR claimed.run_id = excluded.run_id
RETURNING 1
"""

# Tables made by earlier versions gain the columns they lack (only then: ALTER needs ownership).
_MISSING_COLUMNS = """
SELECT column_name FROM unnest(ARRAY['stop_reason', 'result']) AS column_name
WHERE NOT EXISTS (SELECT FROM pg_attribute WHERE attrelid = %s::regclass AND attname = column_name AND NOT attisdropped)
"""
_ADD_COLUMNS = "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS stop_reason text, ADD COLUMN IF NOT EXISTS result jsonb"

# The last run that did all its work: succeeded, and not stopped early (max_run_time).
_LAST_COMPLETE = """
SELECT result FROM {table}
WHERE job = %s AND status = 'succeeded' AND stop_reason IS NULL AND result IS NOT NULL
ORDER BY started_at DESC LIMIT 1
"""



def _dumps(value: Any) -> str:
    return json.dumps(value, default=json_value)


@dataclass(frozen=True)
class RunRecord:
    """One row of the run history: which run (``job``, ``run_id``), when (``started_at``: when it held its lock,
    ``ended_at``: when its work ended), how it ended (``status``, ``stop_reason``, ``sqlstate`` and ``error``),
    after how many ``attempts``, the rows it committed (``rows_affected``) and the job's result fields
    (``result``: the cleanup's high-water mark is in them)."""

    job: str
    run_id: str
    started_at: datetime
    ended_at: datetime
    status: Outcome
    attempts: int
    rows_affected: int | None = None
    sqlstate: str | None = None
    error: str | None = None
    stop_reason: StopReason | None = None
    result: dict[str, Any] | None = None


class History:
    """The run records (``history.table``, unless ``history.enabled`` is false) and the claims of scheduled
    runs (``<history.table>_ticks``, always: replicas need them to run each scheduled run once).

    - ``settings``: where it lives and how long it keeps (``[history]``);
    - ``enabled``: whether runs are recorded (claims are made either way).

    ``ensure`` creates the tables once (False when it cannot), ``record`` writes a run, ``claim_tick`` claims a
    scheduled time on the run's own connection, ``last_complete`` and ``last_runs`` read, ``prune`` deletes
    records older than ``history.retention``.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.enabled = settings.history.enabled  # the run records; claims are made either way
        self._ready = False
        self._unavailable = False  # the tables cannot be created: said once, not tried again
        self._log = get_logger()
        name = settings.history.table
        schema = name.split(".")[0] if "." in name else "public"
        self._schema = sql.Identifier(schema).as_string()
        self._names = {
            "schema": sql.Identifier(schema), "table": table(name), "ticks": table(f"{name}_ticks"),
            "index": sql.Identifier(f"{name.split('.')[-1]}_job_started_at_idx"),
        }

    def _connect(self) -> psycopg.Connection[Any]:
        return connect_service(self.settings, "history")

    def ensure(self) -> bool:
        """Create the tables if needed; False when they cannot be created, or the database cannot be reached now.

        Without the privilege to create them, the claims table is said to be missing at once
        (``replica_claims_unavailable``: two replicas may then both run one scheduled run), and the run
        records are turned off (``history_disabled``)."""
        if self._ready or self._unavailable:
            return self._ready
        try:
            with self._connect() as conn:
                # CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema exists,
                # so a role given its own schema (config/parlant_maintainer_role.sql) must not ask for it.
                if conn.execute("SELECT to_regnamespace(%s)", (self._schema,)).fetchone() == (None,):
                    conn.execute(sql.SQL("CREATE SCHEMA {schema}").format(**self._names))
                conn.execute(sql.SQL(sql_file("maintainer", "run_history_ticks.sql")).format(**self._names))
                if self.enabled:
                    conn.execute(sql.SQL(sql_file("maintainer", "run_history.sql")).format(**self._names))
                    if conn.execute(_MISSING_COLUMNS, (self._names["table"].as_string(conn),)).fetchall():
                        conn.execute(sql.SQL(_ADD_COLUMNS).format(**self._names))
        except psycopg.errors.InsufficientPrivilege as error:
            fix = f"create {self.settings.history.table} as its owner, or GRANT CREATE ON DATABASE to this role"
            self._log.warning("replica_claims_unavailable", table=f"{self.settings.history.table}_ticks",
                              error=str(error).strip(), fix=fix,
                              reason="without it two replicas may both run one scheduled run")
            if self.enabled:
                self.enabled = False
                self._log.warning("history_disabled", table=self.settings.history.table, sqlstate=error.sqlstate,
                                  error=str(error).strip(), fix=fix)
            self._unavailable = True
            return False
        except psycopg.Error as error:
            self._log.warning("history_unavailable", error_type=type(error).__name__, error=str(error).strip())
            return False
        self._ready = True
        return True

    def record(self, run: RunRecord) -> None:
        if not (self.ensure() and self.enabled):
            return
        try:
            with self._connect() as conn:
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {table} (job, run_id, host, started_at, ended_at, status, attempts,"
                        " rows_affected, sqlstate, error, stop_reason, result)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    ).format(**self._names),
                    (run.job, run.run_id, socket.gethostname(), run.started_at, run.ended_at, run.status,
                     run.attempts, run.rows_affected, run.sqlstate, run.error, run.stop_reason,
                     None if run.result is None else Jsonb(run.result, dumps=_dumps)),
                )
        except psycopg.Error as error:
            self._log.warning("history_write_failed", job=run.job, run_id=run.run_id, error=str(error).strip())

    def claim_tick(self, conn: psycopg.Connection[Any], job: str, tick: datetime, run_id: str) -> bool:
        """Claim the scheduled run at ``tick`` for this run, on its working connection (autocommit, holding
        the job's lock); False when another run already had it.

        Without a claims table (the role may not create it) there is nothing to claim against, and the run
        goes ahead: ``replica_claims_unavailable`` said so when the daemon first tried.
        """
        if not self.ensure():
            return True
        claimed = conn.execute(sql.SQL(_CLAIM_TICK).format(**self._names), (job, tick, run_id)).fetchone()
        return claimed is not None

    def last_complete(self, conn: psycopg.Connection[Any], job: str) -> dict[str, Any] | None:
        """The result fields of ``job``'s last run that did all its work, read on the run's own connection;
        None when there is none, or no history to read it from."""
        if not self.enabled:
            return None
        query = sql.SQL(_LAST_COMPLETE).format(**self._names)
        try:
            if conn.autocommit:
                row = conn.execute(query, (job,)).fetchone()
            else:
                with conn.transaction():  # a savepoint inside a dry run's transaction: a failure must not end it
                    row = conn.execute(query, (job,)).fetchone()
        except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
            return None  # no history yet, or none recorded by this version
        except psycopg.Error as error:
            self._log.warning("history_unavailable", error_type=type(error).__name__, error=str(error).strip())
            return None
        return row[0] if row else None

    def prune(self, now: datetime) -> int:
        """Delete records older than the retention; pg_cron's history grows forever."""
        if not (self.ensure() and self.enabled):
            return 0
        with self._connect() as conn:
            cursor = conn.execute(sql.SQL("DELETE FROM {table} WHERE started_at < %s").format(**self._names),
                                  (now - self.settings.history.retention,))
            return cursor.rowcount

    def last_runs(self) -> dict[str, dict[str, Any]]:
        """Per job: last run and its status, last success, last error and when."""
        with self._connect() as conn, conn.cursor(row_factory=dict_row) as cursor:
            cursor.execute(sql.SQL(sql_file("maintainer", "run_history_last_runs.sql")).format(**self._names))
            return {row.pop("job"): row for row in cursor.fetchall()}
