"""cleanup-old-events: the retention rule of the operators' guide, in short batches.

An event is deleted when it was created before the cutoff *and* its session has one of the configured
statuses (default ``completed``) *and* that session ended before the cutoff. The cutoff is
``now - retention_days``, computed once per run in the session time zone.

Why batches shaped like this: one big DELETE holds its locks and snapshot for the whole run. Here each
batch is its own short transaction. The walk moves forward over eligible sessions in primary-key order,
a window of sessions at a time, so no batch rescans what earlier batches deleted; the window is sized
from the events per session seen so far so that it holds about one batch of events. A window that
still holds more than ``batch_size`` events is simply worked again, narrower, before the walk moves on.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from psycopg import sql
from pydantic import Field

from maintainer.catalog import missing, quoted
from maintainer.db import table
from maintainer.job import Check, Duration, Job, JobSettings, Result, RunContext

SessionStatus = Literal["active", "completed", "abandoned"]
SESSION_STATUSES: tuple[SessionStatus, ...] = ("active", "completed", "abandoned")


class CleanupSettings(JobSettings):
    schedule: str = "0 2 * * *"
    statement_timeout: Duration = timedelta(minutes=1)
    retention_days: int = Field(default=90, ge=1)
    session_statuses: list[SessionStatus] = Field(default=["completed"], min_length=1)
    batch_size: int = Field(default=5000, ge=1, le=100_000)
    pause_between_batches: Duration = timedelta(0)
    max_run_time: Duration = timedelta(0)
    progress_every_batches: int = Field(default=10, ge=1)
    event_table: str = "parlant_event"
    session_table: str = "parlant_session"


_BATCH = """
WITH session_window AS (
    SELECT s.id FROM {sessions} AS s
    WHERE s.id {after} %(after)s AND s.status::text = ANY(%(statuses)s) AND s.ended_at < %(cutoff)s
    ORDER BY s.id LIMIT %(window)s
), doomed AS (
    SELECT e.ctid FROM {events} AS e
    WHERE e.session_id = ANY(ARRAY(SELECT id FROM session_window)) AND e.created_at < %(cutoff)s
    LIMIT %(batch_size)s
), deleted AS (
    DELETE FROM {events} AS e
    WHERE e.ctid = ANY(ARRAY(SELECT ctid FROM doomed)) AND e.created_at < %(cutoff)s
    RETURNING 1
)
SELECT (SELECT count(*) FROM deleted),
       (SELECT count(*) FROM session_window),
       (SELECT id FROM session_window ORDER BY id DESC LIMIT 1)
"""

_AUDIT = """
SELECT CASE WHEN s.status::text = ANY(%(statuses)s) AND s.ended_at < %(cutoff)s THEN 'would_delete'
            WHEN s.status::text = ANY(%(statuses)s) THEN s.status::text || '_recent'
            ELSE s.status::text END AS verdict,
       count(*) AS events, count(DISTINCT e.session_id) AS sessions, min(e.created_at) AS oldest_event_at
FROM {events} AS e JOIN {sessions} AS s ON s.id = e.session_id
WHERE e.created_at < %(cutoff)s
GROUP BY 1
"""

_NIL_UUID = UUID(int=0)


def compute_cutoff(ctx: RunContext, retention_days: int) -> datetime:
    """``now - retention_days`` as a TIMESTAMP WITHOUT TIME ZONE in the session time zone, like the columns."""
    row = ctx.conn.execute(
        "SELECT (%s::timestamptz - make_interval(days => %s))::timestamp", (ctx.clock(), retention_days)
    ).fetchone()
    assert row is not None
    cutoff: datetime = row[0]
    return cutoff


def _next_window(batch_size: int, rows: int, sessions: int) -> int:
    """Sessions the next window should take so that it holds about 80% of a batch of events."""
    if rows == 0:
        return batch_size
    return max(1, min(batch_size, int(0.8 * batch_size * sessions / rows)))


def run(ctx: RunContext) -> Result:
    settings: CleanupSettings = ctx.settings
    cutoff = compute_cutoff(ctx, settings.retention_days)
    started = ctx.monotonic()
    deadline = started + settings.max_run_time.total_seconds() if settings.max_run_time else None
    params: dict[str, Any] = {
        "after": _NIL_UUID,
        "statuses": list(settings.session_statuses),
        "cutoff": cutoff,
        "batch_size": settings.batch_size,
        "window": max(1, settings.batch_size // 50),
    }
    first, following = (
        sql.SQL(_BATCH).format(
            sessions=table(settings.session_table), events=table(settings.event_table), after=sql.SQL(op)
        )
        for op in (">=", ">")
    )
    rows_deleted = batches = largest_batch = sessions_visited = 0
    stop_reason: str | None = None
    statement = first
    while True:
        row = ctx.conn.execute(statement, params).fetchone()
        assert row is not None
        rows, window_sessions, last_session = row
        batches += 1
        rows_deleted += rows
        largest_batch = max(largest_batch, rows)
        if batches % settings.progress_every_batches == 0:
            ctx.log.info(
                "cleanup_progress", batches=batches, rows_deleted=rows_deleted,
                elapsed_ms=round((ctx.monotonic() - started) * 1000), cutoff=cutoff.isoformat(),
            )
        if rows >= settings.batch_size:
            # The window held more than one batch: work it again, narrower, without moving on.
            params["window"] = max(1, params["window"] // 2)
        else:
            sessions_visited += window_sessions
            if window_sessions < params["window"]:
                break  # the walk reached the last eligible session
            params["after"], statement = last_session, following
            params["window"] = _next_window(settings.batch_size, rows, window_sessions)
        if ctx.stop.is_set():
            stop_reason = "shutdown"
        elif deadline is not None and ctx.monotonic() >= deadline:
            stop_reason = "max_run_time"
        elif settings.pause_between_batches and ctx.stop.wait(settings.pause_between_batches.total_seconds()):
            stop_reason = "shutdown"
        if stop_reason:
            break

    duration_s = ctx.monotonic() - started
    summary = {
        "rows_deleted": rows_deleted,
        "batches": batches,
        "largest_batch": largest_batch,
        "sessions_visited": sessions_visited,
        "rows_per_s": round(rows_deleted / duration_s) if duration_s > 0 else None,
        "cutoff": cutoff.isoformat(),
        "timezone": ctx.conn.info.parameter_status("TimeZone"),
        "retention_days": settings.retention_days,
        "stopped_early": stop_reason is not None,
        "stop_reason": stop_reason,
    }
    report = (
        f"deleted {rows_deleted:,} events older than {cutoff:%Y-%m-%d %H:%M:%S} ({summary['timezone']}) "
        f"in {batches:,} batches, {duration_s:.1f} s"
        + (f", {summary['rows_per_s']:,} rows/s" if summary["rows_per_s"] is not None else "")
    )
    if stop_reason:
        report += f"\nstopped early ({stop_reason}): the next run continues where this one stopped"
    return Result(summary=summary, report=report, rows_affected=rows_deleted, stop_reason=stop_reason)


def dry_run(ctx: RunContext) -> Result:
    """The retention audit: what the policy deletes now, and what older than the cutoff it keeps, and why."""
    settings: CleanupSettings = ctx.settings
    cutoff = compute_cutoff(ctx, settings.retention_days)
    query = sql.SQL(_AUDIT).format(sessions=table(settings.session_table), events=table(settings.event_table))
    counts = {
        verdict: {"events": events, "sessions": sessions, "oldest_event_at": oldest.isoformat()}
        for verdict, events, sessions, oldest in ctx.conn.execute(
            query, {"statuses": list(settings.session_statuses), "cutoff": cutoff}
        )
    }
    empty = {"events": 0, "sessions": 0, "oldest_event_at": None}
    kept_keys = [f"{s}_recent" if s in settings.session_statuses else s for s in SESSION_STATUSES]
    would_delete = counts.get("would_delete", empty)
    kept = {key: counts.get(key, empty) for key in kept_keys}
    timezone = ctx.conn.info.parameter_status("TimeZone")
    summary = {
        "cutoff": cutoff.isoformat(),
        "timezone": timezone,
        "retention_days": settings.retention_days,
        "session_statuses": list(settings.session_statuses),
        "would_delete": would_delete,
        "kept_older_than_cutoff": kept,
    }
    lines = [
        f"Retention audit of {settings.event_table} (dry run: nothing was changed)",
        f"  cutoff        {cutoff:%Y-%m-%d %H:%M:%S} {timezone} (now - {settings.retention_days} days)",
        f"  rule          created before the cutoff, in a session that is "
        f"{' or '.join(settings.session_statuses)} and ended before the cutoff",
        f"  would delete  {_counts(would_delete)}",
        "  older than the cutoff but kept, by session status:",
        *(f"    {key:<18}{_counts(kept[key])}" for key in kept_keys),
    ]
    return Result(summary=summary, report="\n".join(lines), rows_affected=0)


def _counts(entry: dict[str, Any]) -> str:
    text = f"{entry['events']:>12,} events in {entry['sessions']:,} sessions"
    if entry["oldest_event_at"]:
        text += f", oldest {entry['oldest_event_at'].replace('T', ' ')}"
    return text


def check(ctx: RunContext) -> list[Check]:
    """The two tables exist and the role may read sessions and read and delete events."""
    settings: CleanupSettings = ctx.settings
    checks = []
    for name, privileges in ((settings.event_table, ("SELECT", "DELETE")), (settings.session_table, ("SELECT",))):
        if missing(ctx.conn, [name]):
            checks.append(Check(ctx.job, name, False, "table does not exist",
                                fix=f"create it, or set jobs.cleanup_old_events.{_table_setting(settings, name)}"))
            continue
        lacking = [
            privilege for privilege in privileges
            if ctx.conn.execute("SELECT has_table_privilege(to_regclass(%s), %s)",
                                (quoted(ctx.conn, name), privilege)).fetchone() == (False,)
        ]
        role = ctx.conn.info.user
        checks.append(
            Check(ctx.job, name, False, f"role {role} lacks {' and '.join(lacking)}",
                  fix=f"GRANT {', '.join(lacking)} ON {name} TO {role}")
            if lacking else Check(ctx.job, name, True, f"role {role} may {' and '.join(privileges)}")
        )
    return checks


def _table_setting(settings: CleanupSettings, name: str) -> str:
    return "event_table" if name == settings.event_table else "session_table"


JOB = Job(
    name="cleanup-old-events",
    description="delete events older than the retention period from completed sessions that ended before it",
    settings_model=CleanupSettings,
    run=run,
    dry_run=dry_run,
    check=check,
)
