"""Custom SQL jobs: ``[custom_jobs.<name>]`` in the configuration, for everything else pg_cron ran.

``sql`` is one statement or a list. With ``autocommit = true`` each statement runs on its own, outside
any transaction block, as ``CREATE INDEX CONCURRENTLY`` or ``VACUUM`` require; otherwise all of them run
in one transaction. They get the same lock, retries, history and logs as the built-in jobs.
"""

from __future__ import annotations

from pydantic import Field

from maintainer.job import Check, Job, JobSettings, Result, RunContext


class CustomSqlSettings(JobSettings):
    sql: str | list[str] = Field(min_length=1)
    autocommit: bool = False
    description: str = ""

    @property
    def statements(self) -> list[str]:
        return [self.sql] if isinstance(self.sql, str) else list(self.sql)


def run(ctx: RunContext) -> Result:
    settings: CustomSqlSettings = ctx.settings
    rows = 0
    if settings.autocommit:
        for statement in settings.statements:
            rows += max(ctx.conn.execute(statement.encode()).rowcount, 0)
    else:
        with ctx.conn.transaction():
            for statement in settings.statements:
                rows += max(ctx.conn.execute(statement.encode()).rowcount, 0)
    count = len(settings.statements)
    return Result(summary={"statements": count, "rows_affected": rows},
                  report=f"ran {count} statement{'s' if count > 1 else ''}, {rows} rows affected", rows_affected=rows)


def dry_run(ctx: RunContext) -> Result:
    settings: CustomSqlSettings = ctx.settings
    mode = "each in autocommit" if settings.autocommit else "in one transaction"
    return Result(summary={"statements": settings.statements, "autocommit": settings.autocommit},
                  report="\n".join([f"would run ({mode}):", *(f"  {s}" for s in settings.statements)]), rows_affected=0)


def check(ctx: RunContext) -> list[Check]:
    return [Check(ctx.job, "sql", True, "custom SQL: not checked before it runs; try it with run-once")]


def custom_job(name: str, settings: CustomSqlSettings) -> Job:
    return Job(
        name=name,
        description=settings.description or f"custom SQL: {settings.statements[0][:60]}",
        settings_model=CustomSqlSettings,
        run=run,
        dry_run=dry_run,
        check=check,
    )
