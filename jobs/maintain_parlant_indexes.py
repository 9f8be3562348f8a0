"""maintain-parlant-indexes: the guide's ``SELECT maintain_parlant_indexes()``, or the same work done natively.

A PL/pgSQL function cannot run REINDEX ... CONCURRENTLY (PostgreSQL refuses it inside a function,
SQLSTATE 25001), so a function that tries fails every week. ``mode = "native"`` does from the client
what such a function means to do, each statement in autocommit: REINDEX INDEX CONCURRENTLY of the
configured indexes that exist, a rebuild of every invalid index on the Parlant tables (left by a failed
concurrent build), then ANALYZE of the tables.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

import psycopg
from psycopg import sql
from pydantic import Field

from maintainer.catalog import (
    PARLANT_TABLES,
    duplicates_query,
    function_state,
    invalid_indexes,
    is_reindex_leftover,
    lacking_maintain,
    maintain_checks,
    maintain_fix,
    missing,
    require_maintain,
)
from maintainer.db import table
from maintainer.errors import JobFailed
from maintainer.job import Check, Duration, Job, JobSettings, RelationName, Result, RunContext

_NATIVE_FIX = 'set jobs.maintain_parlant_indexes.mode = "native" to do the index maintenance from maintainer'
# What PostgreSQL refuses inside a function (SQLSTATE 25001 and the like): a function holding one of these
# fails on every run, whatever the role may do.
_NOT_IN_A_FUNCTION = re.compile(
    r"\b(REINDEX\b[^;']*\bCONCURRENTLY|CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY|DROP\s+INDEX\s+CONCURRENTLY"
    r"|VACUUM|REINDEX\s+(?:\(\w[^)]*\)\s+)?(?:DATABASE|SYSTEM)|CREATE\s+DATABASE|ALTER\s+SYSTEM)\b",
    re.IGNORECASE)
_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)


def refused_in_a_function(definition: str) -> str | None:
    """The first statement of ``definition`` that cannot run inside a function, as written; or None."""
    found = _NOT_IN_A_FUNCTION.search(_COMMENT.sub(" ", definition))
    return " ".join(found[1].split()) if found else None


class MaintainIndexesSettings(JobSettings):
    schedule: str = "0 5 * * 0"
    statement_timeout: Duration = timedelta(hours=2)
    mode: Literal["function", "native"] = "function"
    function: RelationName = "maintain_parlant_indexes"
    # native mode: the indexes that bloat under the retention cleanup's deletes
    indexes: list[RelationName] = Field(default=[
        "parlant_event_pkey", "parlant_event_session_id_idx", "parlant_event_session_offset_idx",
        "parlant_event_created_at_idx",
    ])
    invalid_index_table_prefix: str = "parlant_"
    tables: list[RelationName] = Field(default=list(PARLANT_TABLES), min_length=1)


def _function_call(name: str) -> sql.Composed:
    return sql.SQL("SELECT {}()").format(table(name))


def _reindex(index: str) -> sql.Composed:
    return sql.SQL("REINDEX INDEX CONCURRENTLY {}").format(table(index))


def _analyze(tables: list[str]) -> sql.Composed:
    return sql.SQL("ANALYZE {}").format(sql.SQL(", ").join(table(name) for name in tables))


def _native_plan(ctx: RunContext[MaintainIndexesSettings]) -> tuple[list[str], list[str], list[str]]:
    """(configured indexes that exist, invalid indexes to rebuild, leftovers of failed reindexes to leave)."""
    settings = ctx.settings
    absent = set(missing(ctx.conn, settings.indexes))
    invalid = [index for index, _ in invalid_indexes(ctx.conn, settings.invalid_index_table_prefix)]
    configured = [index for index in settings.indexes if index not in absent and index not in invalid]
    leftovers = [index for index in invalid if is_reindex_leftover(index)]
    return configured, [index for index in invalid if index not in leftovers], leftovers


def run(ctx: RunContext[MaintainIndexesSettings]) -> Result:
    settings = ctx.settings
    return _run_native(ctx) if settings.mode == "native" else _run_function(ctx)


def _function_privilege_fix(ctx: RunContext[MaintainIndexesSettings], tables: list[str]) -> str:
    settings = ctx.settings
    return (
        f"{maintain_fix(ctx.conn, tables)}; or make {settings.function}() SECURITY DEFINER,"
        " owned by the tables' owner"
    )


def _run_function(ctx: RunContext[MaintainIndexesSettings]) -> Result:
    settings = ctx.settings
    if function_state(ctx.conn, settings.function) is None:
        raise JobFailed(ctx.job, f"function {settings.function}() does not exist", sqlstate="42883", fix=_NATIVE_FIX)
    try:
        ctx.conn.execute(_function_call(settings.function))
    except psycopg.Error as error:
        context, fix = f"{settings.function}() failed", _NATIVE_FIX
        if error.sqlstate == "25001":
            context += " (PostgreSQL cannot run REINDEX CONCURRENTLY, VACUUM or similar inside a function)"
        elif error.sqlstate == "42501":
            fix = _function_privilege_fix(ctx, settings.tables)
        raise JobFailed.from_database(ctx.job, error, context=context, fix=fix) from error
    return Result(summary={"mode": "function", "function": settings.function},
                  report=f"ran {settings.function}()")


def _run_native(ctx: RunContext[MaintainIndexesSettings]) -> Result:
    settings = ctx.settings
    configured, invalid, leftovers = _native_plan(ctx)
    require_maintain(ctx.job, ctx.conn, configured + invalid + settings.tables, "REINDEX", owner_only=True)
    if absent := missing(ctx.conn, settings.indexes):
        ctx.log.warning("indexes_not_found", indexes=absent, fix=_MISSING_INDEX_FIX)
    for leftover in leftovers:
        ctx.log.warning("invalid_index_left", index=leftover, fix=f"DROP INDEX CONCURRENTLY {leftover}",
                        reason="left by a failed REINDEX CONCURRENTLY; rebuilding it would duplicate an index")
    rebuilt: dict[str, int] = {}
    for index in configured + invalid:
        started = ctx.monotonic()
        try:
            ctx.conn.execute(_reindex(index))
        except psycopg.Error as error:
            _drop_own_leftovers(ctx, before=set(leftovers))
            if error.sqlstate == "23505" and (duplicates := duplicates_query(ctx.conn, index)):
                raise JobFailed.from_database(ctx.job, error, context=f"rebuilding the unique index {index}",
                                              fix=_duplicates_fix(index, duplicates)) from error
            raise
        rebuilt[index] = round((ctx.monotonic() - started) * 1000)
    ctx.conn.execute(_analyze(settings.tables))
    summary: dict[str, Any] = {
        "mode": "native", "reindexed_ms": rebuilt, "invalid_rebuilt": invalid, "invalid_left": leftovers,
        "missing_indexes": absent, "analyzed": settings.tables,
    }
    report = "\n".join(
        [f"reindexed {index} concurrently in {ms} ms" for index, ms in rebuilt.items()]
        + [f"not found, not reindexed: {index}" for index in absent]
        + [f"left invalid index {index} (drop it: DROP INDEX CONCURRENTLY {index})" for index in leftovers]
        + [f"analyzed {', '.join(settings.tables)}"]
    )
    return Result(summary=summary, report=report)


def _drop_own_leftovers(ctx: RunContext[MaintainIndexesSettings], before: set[str]) -> None:
    """A REINDEX CONCURRENTLY that failed (lock timeout, cancel) leaves an invalid ``_ccnew`` copy: drop ours."""
    settings = ctx.settings
    for index, _ in invalid_indexes(ctx.conn, settings.invalid_index_table_prefix):
        if is_reindex_leftover(index) and index not in before:
            ctx.conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(table(index)))
            ctx.log.warning("reindex_leftover_dropped", index=index)


def dry_run(ctx: RunContext[MaintainIndexesSettings]) -> Result:
    settings = ctx.settings
    invalid = invalid_indexes(ctx.conn, settings.invalid_index_table_prefix)
    summary: dict[str, Any] = {"mode": settings.mode, "invalid_indexes": [index for index, _ in invalid]}
    if settings.mode == "function":
        present = function_state(ctx.conn, settings.function) is not None
        statements = [_function_call(settings.function).as_string(ctx.conn)]
        summary["function_exists"] = present
        state = [f"  function {settings.function}() {'exists' if present else 'does not exist: ' + _NATIVE_FIX}"]
    else:
        configured, rebuild, leftovers = _native_plan(ctx)
        statements = [_reindex(index).as_string(ctx.conn) for index in configured + rebuild]
        statements.append(_analyze(settings.tables).as_string(ctx.conn))
        summary |= {"missing_indexes": missing(ctx.conn, settings.indexes), "invalid_left": leftovers,
                    "not_permitted": lacking_maintain(ctx.conn, configured + rebuild, owner_only=True)}
        state = [f"  left alone (drop it): {index}" for index in leftovers]
    summary["statements"] = statements
    lines = [f"would run: {statement}" for statement in statements] + state + [
        f"  invalid index {index} on {table_name}" for index, table_name in invalid
    ]
    return Result(summary=summary, report="\n".join(lines))


_MISSING_INDEX_FIX = "create it, or take it out of jobs.maintain_parlant_indexes.indexes"


def _duplicates_fix(index: str, duplicates: str) -> str:
    return (f"the index is unique and rows repeat its key: find them ({duplicates}), remove or change them,"
            f" then REINDEX INDEX CONCURRENTLY {index}; or DROP INDEX CONCURRENTLY {index}")


def _invalid_index_fix(ctx: RunContext[MaintainIndexesSettings], index: str) -> str:
    if is_reindex_leftover(index):
        return f"DROP INDEX CONCURRENTLY {index}"
    if duplicates := duplicates_query(ctx.conn, index):
        # A unique index is left invalid when its build met duplicates: rebuilding it meets them again.
        return _duplicates_fix(index, duplicates)
    return f"REINDEX INDEX CONCURRENTLY {index} (native mode rebuilds it)"


def check(ctx: RunContext[MaintainIndexesSettings]) -> list[Check]:
    settings = ctx.settings
    checks = [
        Check(ctx.job, index, False, f"invalid index on {table_name}", fix=_invalid_index_fix(ctx, index))
        for index, table_name in invalid_indexes(ctx.conn, settings.invalid_index_table_prefix)
    ]
    if settings.mode == "function":
        return [*checks, _function_check(ctx)]
    absent = missing(ctx.conn, settings.indexes)
    checks += [Check(ctx.job, index, False, "configured for native mode, does not exist", fix=_MISSING_INDEX_FIX)
               for index in absent]
    configured = [index for index in settings.indexes if index not in absent]
    if lacking := lacking_maintain(ctx.conn, configured, owner_only=True):
        checks.append(Check(ctx.job, ", ".join(lacking), False, f"role {ctx.conn.info.user} may not REINDEX",
                            fix=maintain_fix(ctx.conn, lacking)))
    return checks + maintain_checks(ctx.job, ctx.conn, settings.tables, "ANALYZE", owner_only=False)


def _function_check(ctx: RunContext[MaintainIndexesSettings]) -> Check:
    """The function exists, the role may call it, and may do what it does (unless it runs as its owner)."""
    settings = ctx.settings
    subject, role = f"{settings.function}()", ctx.conn.info.user
    state = function_state(ctx.conn, settings.function)
    if state is None:
        return Check(ctx.job, subject, False, "function does not exist", fix=_NATIVE_FIX)
    if refused := refused_in_a_function(state.definition):
        return Check(ctx.job, subject, False, f"it runs {refused}, which PostgreSQL refuses inside a function"
                     " (SQLSTATE 25001): every run would fail", fix=_NATIVE_FIX)
    if not state.executable:
        return Check(ctx.job, subject, False, f"role {role} may not execute it",
                     fix=f"GRANT EXECUTE ON FUNCTION {subject} TO {role}")
    lacking = [] if state.security_definer else lacking_maintain(ctx.conn, settings.tables, owner_only=True)
    if lacking:
        return Check(ctx.job, subject, False, f"role {role} may not REINDEX {', '.join(lacking)},"
                     " and the function runs with the caller's privileges", fix=_function_privilege_fix(ctx, lacking))
    return Check(ctx.job, subject, True, "function exists and role may run it")


def recognises(statement: str) -> dict[str, Any] | None:
    """The guide's call of its index function."""
    if not (found := re.fullmatch(r"select ([a-z0-9_.$]+)\(\)", statement)):
        return None
    return {} if found[1] == MaintainIndexesSettings().function else None


JOB = Job(
    name="maintain-parlant-indexes",
    description="rebuild bloated and invalid indexes of the Parlant tables (function or native mode)",
    settings_model=MaintainIndexesSettings,
    run=run,
    dry_run=dry_run,
    check=check,
    recognises=recognises,
)
