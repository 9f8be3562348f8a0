"""maintain-parlant-events: VACUUM (ANALYZE) the event table, which the retention cleanup fills with dead rows.

VACUUM cannot run inside a transaction block; the engine runs jobs in autocommit, one statement per table.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from psycopg import sql
from pydantic import Field

from maintainer.catalog import lacking_maintain, maintain_checks, require_maintain, table_stats
from maintainer.db import table
from maintainer.job import Check, Duration, Job, JobSettings, RelationName, Result, RunContext


class MaintainEventsSettings(JobSettings):
    schedule: str = "0 */6 * * *"
    statement_timeout: Duration = timedelta(hours=2)
    tables: list[RelationName] = Field(default=["parlant_event"], min_length=1)


def _statement(name: str) -> sql.Composed:
    return sql.SQL("VACUUM (ANALYZE) {}").format(table(name))


def run(ctx: RunContext[MaintainEventsSettings]) -> Result:
    settings = ctx.settings
    require_maintain(ctx.job, ctx.conn, settings.tables, "VACUUM", owner_only=False)
    tables = {}
    for name in settings.tables:
        before = table_stats(ctx.conn, [name])[name]
        started = ctx.monotonic()
        ctx.conn.execute(_statement(name))
        after = table_stats(ctx.conn, [name])[name]
        tables[name] = {
            "dead_tuples_before": before["n_dead_tup"],
            "dead_tuples_after": after["n_dead_tup"],
            "duration_ms": round((ctx.monotonic() - started) * 1000),
        }
    report = "\n".join(
        f"vacuumed {name}: dead tuples {entry['dead_tuples_before']:,} -> {entry['dead_tuples_after']:,}"
        f" in {entry['duration_ms']} ms"
        for name, entry in tables.items()
    )
    return Result(summary={"tables": tables}, report=report)


def dry_run(ctx: RunContext[MaintainEventsSettings]) -> Result:
    settings = ctx.settings
    statements = [_statement(name).as_string(ctx.conn) for name in settings.tables]
    stats = table_stats(ctx.conn, settings.tables)
    not_permitted = lacking_maintain(ctx.conn, settings.tables, owner_only=False)
    lines = [f"would run: {statement}" for statement in statements] + [
        f"  {name}: {entry.get('n_dead_tup')} dead tuples, last_vacuum {entry.get('last_vacuum') or 'never'},"
        f" last_autovacuum {entry.get('last_autovacuum') or 'never'}"
        + (" (role may not VACUUM it)" if name in not_permitted else "")
        for name, entry in stats.items()
    ]
    summary = {"statements": statements, "tables": stats, "not_permitted": not_permitted}
    return Result(summary=summary, report="\n".join(lines))


def check(ctx: RunContext[MaintainEventsSettings]) -> list[Check]:
    return maintain_checks(ctx.job, ctx.conn, ctx.settings.tables, "VACUUM", owner_only=False)


def recognises(statement: str) -> dict[str, Any] | None:
    """The guide's VACUUM ANALYZE (or VACUUM (ANALYZE)) of the event table; another is a custom job."""
    if not (found := re.fullmatch(r"vacuum(?: analy[sz]e |\(analy[sz]e\))([a-z0-9_.,$]+)", statement)):
        return None
    return {} if found[1].split(",") == MaintainEventsSettings().tables else None


JOB = Job(
    name="maintain-parlant-events",
    description="VACUUM (ANALYZE) the event table to reclaim the space of deleted events",
    settings_model=MaintainEventsSettings,
    run=run,
    dry_run=dry_run,
    check=check,
    recognises=recognises,
)
