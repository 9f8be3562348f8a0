"""Custom SQL jobs: ``[custom_jobs.<name>]`` in the configuration, for everything else pg_cron ran.

``sql`` is one statement or a list. With ``autocommit = true`` each statement runs on its own, outside
any transaction block, as ``CREATE INDEX CONCURRENTLY`` or ``VACUUM`` require; otherwise all of them run
in one transaction. They get the same lock, retries, history and logs as the built-in jobs.
"""

from __future__ import annotations

import re

import psycopg
from pydantic import Field

from maintainer.catalog import lacking_maintain, maintain_fix, resolved
from maintainer.errors import JobFailed
from maintainer.job import Check, Job, JobSettings, Result, RunContext, normalized


class CustomSqlSettings(JobSettings):
    sql: str | list[str] = Field(min_length=1)
    autocommit: bool = False
    description: str = ""

    @property
    def statements(self) -> list[str]:
        return [self.sql] if isinstance(self.sql, str) else list(self.sql)


def run(ctx: RunContext[CustomSqlSettings]) -> Result:
    settings = ctx.settings
    rows = 0
    if settings.autocommit:
        for statement in settings.statements:
            done = max(ctx.conn.execute(statement.encode()).rowcount, 0)
            ctx.rows.add(done)  # committed
            rows += done
    else:
        with ctx.conn.transaction():
            for statement in settings.statements:
                rows += max(ctx.conn.execute(statement.encode()).rowcount, 0)
        ctx.rows.add(rows)
    count = len(settings.statements)
    return Result(summary={"statements": count, "rows_affected": rows},
                  report=f"ran {count} statement{'s' if count > 1 else ''}, {rows} rows affected")


def dry_run(ctx: RunContext[CustomSqlSettings]) -> Result:
    settings = ctx.settings
    mode = "each in autocommit" if settings.autocommit else "in one transaction"
    return Result(summary={"statements": settings.statements, "autocommit": settings.autocommit},
                  report="\n".join([f"would run ({mode}):", *(f"  {s}" for s in settings.statements)]))


# The maintenance commands whose targets check can name, and whether they need ownership (MAINTAIN from 17) of
# the relation itself (REINDEX, REFRESH, CLUSTER) or of the table or the database (VACUUM, ANALYZE).
_MAINTENANCE = re.compile(
    r"^(?P<command>VACUUM|ANALY[SZ]E|REINDEX|REFRESH\s+MATERIALIZED\s+VIEW|CLUSTER)\b(?P<rest>.*)$",
    re.IGNORECASE | re.DOTALL)
_OPTIONS = re.compile(r"^\s*\((?:[^()]|\([^()]*\))*\)")  # VACUUM (ANALYZE, VERBOSE) ...
_LEGACY = re.compile(r"^\s*(?:FULL|FREEZE|VERBOSE|ANALY[SZ]E|CONCURRENTLY)\b", re.IGNORECASE)
_EXPLAINABLE = re.compile(r"^(?:SELECT|INSERT|UPDATE|DELETE|WITH|MERGE|VALUES|TABLE)\b", re.IGNORECASE)


def check(ctx: RunContext[CustomSqlSettings]) -> list[Check]:
    """What can be known without running the statements: the relations a maintenance command names exist and
    the role may maintain them; a query, its tables, columns, functions and privileges, by EXPLAIN."""
    settings = ctx.settings
    return [_check_statement(ctx, " ".join(statement.split()).rstrip("; ")) for statement in settings.statements]


def _check_statement(ctx: RunContext[CustomSqlSettings], statement: str) -> Check:
    subject = statement if len(statement) <= 60 else statement[:57] + "..."
    if maintenance := _MAINTENANCE.match(statement):
        return _check_maintenance(ctx, subject, maintenance["command"].split()[0].upper(), maintenance["rest"])
    if _EXPLAINABLE.match(statement):
        try:
            with ctx.conn.transaction():
                ctx.conn.execute(f"EXPLAIN {statement}".encode())
        except psycopg.Error as error:
            failure = JobFailed.from_database(ctx.job, error)
            return Check(ctx.job, subject, False, str(failure).removeprefix(f"{ctx.job}: "), fix=failure.fix)
        return Check(ctx.job, subject, True, "planned with EXPLAIN: its tables, functions and privileges hold")
    return Check(ctx.job, subject, True, f"{statement.split()[0].upper()}: not checked before it runs;"
                 " try it with run-once")


def _check_maintenance(ctx: RunContext[CustomSqlSettings], subject: str, command: str, rest: str) -> Check:
    names, role = _targets(command, rest), ctx.conn.info.user
    if names is None or (not names and command == "CLUSTER"):
        return Check(ctx.job, subject, True, f"{command} of a whole schema, database or system: not checked")
    if not names:
        return _check_whole_database(ctx, subject, command)
    found = resolved(ctx.conn, names)
    if absent := [name for name in names if found[name] is None]:
        return Check(ctx.job, subject, False, f"{', '.join(absent)} does not exist",
                     fix=f"create it, or correct custom_jobs.{ctx.job}.sql")
    relations = [name for name in found.values() if name]
    if lacking := lacking_maintain(ctx.conn, relations, owner_only=command in ("REINDEX", "REFRESH", "CLUSTER")):
        return Check(ctx.job, subject, False, f"role {role} may not {command} {', '.join(lacking)}: PostgreSQL"
                     " would skip it with a WARNING, and the run fail", fix=maintain_fix(ctx.conn, lacking))
    exist, them = ("exists", "it") if len(names) == 1 else ("exist", "them")
    return Check(ctx.job, subject, True, f"{', '.join(names)} {exist}, and role {role} may {command} {them}")


def _check_whole_database(ctx: RunContext[CustomSqlSettings], subject: str, command: str) -> Check:
    """VACUUM or ANALYZE of every table: only the database's owner (or, from 17, pg_maintain) skips none."""
    role = ctx.conn.info.user
    maintainer = "pg_has_role('pg_maintain', 'USAGE') OR " if ctx.conn.info.server_version >= 170000 else ""
    row = ctx.conn.execute(f"SELECT {maintainer}pg_has_role(datdba, 'USAGE'), current_database()"  # noqa: S608
                           " FROM pg_database WHERE datname = current_database()").fetchone()
    assert row is not None
    allowed, database = row
    if allowed:
        return Check(ctx.job, subject, True, f"{command} of every table of {database}: role {role} may")
    return Check(ctx.job, subject, False, f"role {role} does not own database {database}: {command} would skip"
                 " every table it does not own, with a WARNING each, and the run fail",
                 fix="name the tables, or run it as the database's owner"
                 + (f"; or GRANT pg_maintain TO {role}" if maintainer else ""))


def _targets(command: str, rest: str) -> list[str] | None:
    """The relations ``command`` names in ``rest`` (the statement after the command): [] for all of them,
    None where the target is not a relation (REINDEX SCHEMA, DATABASE, SYSTEM)."""
    rest = _OPTIONS.sub("", rest, count=1)
    while legacy := _LEGACY.match(rest):
        rest = rest[legacy.end():]
    if command == "REINDEX":
        kind, _, rest = rest.strip().partition(" ")
        if kind.upper() not in ("INDEX", "TABLE"):
            return None
        rest = _LEGACY.sub("", rest, count=1)
    elif command == "REFRESH":
        rest = re.sub(r"\s+WITH\s+(?:NO\s+)?DATA\s*$", "", rest, flags=re.IGNORECASE)
    elif command == "CLUSTER":
        rest = re.sub(r"\s+USING\s+\S+\s*$", "", rest, flags=re.IGNORECASE)
    return [name for name in (_without_columns(part) for part in _top_level(rest, ",")) if name]


def _top_level(text: str, separator: str) -> list[str]:
    """``text`` split at ``separator`` outside parentheses and double quotes."""
    parts, depth, quoted, current = [], 0, False, ""
    for char in text:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "()":
            depth += 1 if char == "(" else -1
        elif not quoted and depth == 0 and char == separator:
            parts.append(current)
            current = ""
            continue
        current += char
    return [*parts, current]


def _without_columns(part: str) -> str:
    """``t (a, b)`` is the table ``t``: ANALYZE's column list."""
    quoted = False
    for index, char in enumerate(part):
        if char == '"':
            quoted = not quoted
        elif char == "(" and not quoted:
            return part[:index].strip()
    return part.strip()


def custom_job(name: str, settings: CustomSqlSettings) -> Job[CustomSqlSettings]:
    """The job ``[custom_jobs.<name>]`` configures: it recognises its own statements among pg_cron's jobs."""
    own = normalized("; ".join(settings.statements))
    return Job(
        name=name,
        description=settings.description or f"custom SQL: {settings.statements[0][:60]}",
        settings_model=CustomSqlSettings,
        run=run,
        dry_run=dry_run,
        check=check,
        recognises=lambda statement: {} if statement == own else None,
    )
