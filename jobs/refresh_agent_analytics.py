"""refresh-agent-analytics: REFRESH MATERIALIZED VIEW CONCURRENTLY, or a clear reason why it cannot.

CONCURRENTLY lets readers keep reading during the refresh, but PostgreSQL allows it only on a view that
is populated and has a unique index on plain columns with no WHERE clause. A never-populated view gets
the plain REFRESH it needs (nobody can be reading it); a view without such an index is refused with the
CREATE UNIQUE INDEX that fixes it, unless the configuration accepts blocking readers.
"""

from __future__ import annotations

import re
from typing import Any

from psycopg import sql

from maintainer.catalog import MatviewState, lacking_maintain, maintain_fix, matview_state, require_maintain
from maintainer.db import table
from maintainer.errors import JobFailed
from maintainer.job import Check, Job, JobSettings, RelationName, Result, RunContext


class RefreshAnalyticsSettings(JobSettings):
    schedule: str = "0 4 1 * *"
    view: RelationName = "parlant_agent_analytics_daily"
    # A plain REFRESH locks out every reader of the view until it finishes.
    allow_blocking_refresh: bool = False


def _index_fix(view: str, state: MatviewState) -> str:
    key = ", ".join(state.key_candidates) or "<key columns>"
    return (
        f"CREATE UNIQUE INDEX CONCURRENTLY ON {view} ({key}); -- on the columns that identify a row of the view"
        " (or set jobs.refresh_agent_analytics.allow_blocking_refresh = true to refresh while blocking readers)"
    )


def _state(ctx: RunContext[RefreshAnalyticsSettings]) -> MatviewState:
    settings = ctx.settings
    state = matview_state(ctx.conn, settings.view)
    if state is None:
        raise JobFailed(ctx.job, f"materialized view {settings.view} does not exist", sqlstate="42P01",
                        fix="create it (the application's migrations), or set jobs.refresh_agent_analytics.view")
    return state


def _plan(settings: RefreshAnalyticsSettings, state: MatviewState) -> tuple[str, str | None]:
    """(mode, reason it cannot be concurrent). Mode: concurrent, first_population, blocking or refused."""
    if not state.populated:
        return "first_population", "the view was never populated, and CONCURRENTLY needs a populated view"
    if state.unique_index:
        return "concurrent", None
    reason = "the view has no unique index on plain columns without WHERE, which CONCURRENTLY needs"
    return ("blocking" if settings.allow_blocking_refresh else "refused"), reason


def _statement(view: str, mode: str) -> sql.Composed:
    concurrently = sql.SQL(" CONCURRENTLY" if mode == "concurrent" else "")
    return sql.SQL("REFRESH MATERIALIZED VIEW{} {}").format(concurrently, table(view))


def run(ctx: RunContext[RefreshAnalyticsSettings]) -> Result:
    settings = ctx.settings
    state = _state(ctx)
    mode, reason = _plan(settings, state)
    if mode == "refused":
        raise JobFailed(ctx.job, f"cannot refresh {settings.view} concurrently: {reason}", sqlstate="55000",
                        fix=_index_fix(settings.view, state))
    require_maintain(ctx.job, ctx.conn, [settings.view], "REFRESH", owner_only=True)
    if mode == "blocking":
        ctx.log.warning("refresh_blocked_readers", view=settings.view, reason=reason)
    started = ctx.monotonic()
    ctx.conn.execute(_statement(settings.view, mode))
    summary: dict[str, Any] = {
        "view": settings.view, "mode": mode, "reason": reason,
        "refresh_ms": round((ctx.monotonic() - started) * 1000),
    }
    report = f"refreshed {settings.view} ({mode.replace('_', ' ')}) in {summary['refresh_ms']} ms"
    if reason:
        report += f": not concurrently, because {reason}"
    return Result(summary=summary, report=report)


def dry_run(ctx: RunContext[RefreshAnalyticsSettings]) -> Result:
    settings = ctx.settings
    state = _state(ctx)
    mode, reason = _plan(settings, state)
    statement = None if mode == "refused" else _statement(settings.view, mode).as_string(ctx.conn)
    permitted = not lacking_maintain(ctx.conn, [settings.view], owner_only=True)
    summary = {
        "view": settings.view, "populated": state.populated, "unique_index": state.unique_index,
        "mode": mode, "reason": reason, "statements": [statement] if statement else [], "role_may_refresh": permitted,
    }
    lines = [
        f"would run: {statement}" if statement else f"would refuse: {reason}; fix: {_index_fix(settings.view, state)}",
        f"  {settings.view}: populated {state.populated}, unique index {state.unique_index or 'none'},"
        f" role may refresh {permitted}",
    ]
    return Result(summary=summary, report="\n".join(lines))


def check(ctx: RunContext[RefreshAnalyticsSettings]) -> list[Check]:
    settings = ctx.settings
    state = matview_state(ctx.conn, settings.view)
    if state is None:
        return [Check(ctx.job, settings.view, False, "materialized view does not exist",
                      fix="create it (the application's migrations), or set jobs.refresh_agent_analytics.view")]
    mode, reason = _plan(settings, state)
    checks = [
        Check(ctx.job, settings.view, False, f"cannot refresh concurrently: {reason}",
              fix=_index_fix(settings.view, state))
        if mode == "refused"
        else Check(ctx.job, settings.view, True, f"refresh will be {mode.replace('_', ' ')}"
                   + (f" ({reason})" if reason else f", using unique index {state.unique_index}"))
    ]
    if lacking_maintain(ctx.conn, [settings.view], owner_only=True):
        checks.append(Check(ctx.job, settings.view, False, f"role {ctx.conn.info.user} may not REFRESH it",
                            fix=maintain_fix(ctx.conn, [settings.view])))
    return checks


def recognises(statement: str) -> dict[str, Any] | None:
    """The guide's REFRESH MATERIALIZED VIEW CONCURRENTLY of the analytics view."""
    if not (found := re.fullmatch(r"refresh materialized view concurrently ([a-z0-9_.$]+)", statement)):
        return None
    return {} if found[1] == RefreshAnalyticsSettings().view else None


JOB = Job(
    name="refresh-agent-analytics",
    description="REFRESH MATERIALIZED VIEW CONCURRENTLY parlant_agent_analytics_daily",
    settings_model=RefreshAnalyticsSettings,
    run=run,
    dry_run=dry_run,
    check=check,
    recognises=recognises,
)
