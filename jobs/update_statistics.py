"""update-statistics: ANALYZE the Parlant tables, so the planner's estimates follow the data.

Run by the table owner (or, from PostgreSQL 17, a role with MAINTAIN): for anyone else ANALYZE
skips the table with only a WARNING, which this job refuses to report as success.
"""

from __future__ import annotations

import re
from typing import Any

from psycopg import sql
from pydantic import Field

from maintainer.catalog import PARLANT_TABLES, lacking_maintain, maintain_checks, require_maintain, table_stats
from maintainer.db import table
from maintainer.job import Check, Job, JobSettings, RelationName, Result, RunContext


class UpdateStatisticsSettings(JobSettings):
    schedule: str = "0 3 * * 0"
    tables: list[RelationName] = Field(default=list(PARLANT_TABLES), min_length=1)


def _statement(settings: UpdateStatisticsSettings) -> sql.Composed:
    return sql.SQL("ANALYZE {}").format(sql.SQL(", ").join(table(name) for name in settings.tables))


def run(ctx: RunContext[UpdateStatisticsSettings]) -> Result:
    settings = ctx.settings
    require_maintain(ctx.job, ctx.conn, settings.tables, "ANALYZE", owner_only=False)
    before = table_stats(ctx.conn, settings.tables)
    ctx.conn.execute(_statement(settings))
    after = table_stats(ctx.conn, settings.tables)
    tables = {
        name: {"last_analyze_before": before[name]["last_analyze"], "last_analyze_after": after[name]["last_analyze"]}
        for name in settings.tables
    }
    report = "\n".join(
        f"analyzed {name}: last_analyze {entry['last_analyze_before'] or 'never'} -> {entry['last_analyze_after']}"
        for name, entry in tables.items()
    )
    return Result(summary={"tables": tables}, report=report)


def dry_run(ctx: RunContext[UpdateStatisticsSettings]) -> Result:
    settings = ctx.settings
    statement = _statement(settings).as_string(ctx.conn)
    stats = table_stats(ctx.conn, settings.tables)
    not_permitted = lacking_maintain(ctx.conn, settings.tables, owner_only=False)
    lines = [f"would run: {statement}"] + [
        f"  {name}: last_analyze {entry.get('last_analyze') or 'never'}, last_autoanalyze"
        f" {entry.get('last_autoanalyze') or 'never'}, rows changed since {entry.get('n_mod_since_analyze')}"
        + (" (role may not ANALYZE it)" if name in not_permitted else "")
        for name, entry in stats.items()
    ]
    summary = {"statements": [statement], "tables": stats, "not_permitted": not_permitted}
    return Result(summary=summary, report="\n".join(lines))


def check(ctx: RunContext[UpdateStatisticsSettings]) -> list[Check]:
    return maintain_checks(ctx.job, ctx.conn, ctx.settings.tables, "ANALYZE", owner_only=False)


def recognises(statement: str) -> dict[str, Any] | None:
    """The guide's ANALYZE of the three Parlant tables; another ANALYZE is a custom job."""
    if not (found := re.fullmatch(r"analy[sz]e ([a-z0-9_.,$]+)", statement)):
        return None
    return {} if found[1].split(",") == UpdateStatisticsSettings().tables else None


JOB = Job(
    name="update-statistics",
    description="ANALYZE the Parlant tables so query plans follow the data",
    settings_model=UpdateStatisticsSettings,
    run=run,
    dry_run=dry_run,
    check=check,
    recognises=recognises,
)
