"""cleanup-old-events: the retention rule of the operators' guide, in short batches.

An event is deleted when it was created before the cutoff *and* its session has one of the configured
statuses (default ``completed``) *and* that session ended before the cutoff. The cutoff is
``now - retention_days``, computed once per run in the session time zone.

Each run chooses one of two paths (``jobs/sql/cleanup_round_trip.sql`` has both, docs/cleanup.md the design):

- ``walk``: the event table in physical order, for a backlog: its cost is the heap's, like the single
  DELETE's sequential scan, and it is chosen when a sample of the table finds much of it eligible;
- ``sessions``: the candidate sessions, their events found by their index: its cost follows the sessions
  and the rows deleted. After a complete run with the same rule, only the sessions that can hold events
  that became eligible since its cutoff (the high-water mark in the run history), and every
  ``full_pass_every`` all of them, for what a high-water mark cannot see (a status changed afterwards,
  an event inserted with an old timestamp).

Every path deletes in batches of at most ``batch_size`` rows, each its own transaction, several per round
trip; yields to other sessions' writes (``yield_batch_size``, ``yield_pause``); logs progress; and stops
between round trips for a shutdown or ``max_run_time``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple

from psycopg import sql
from psycopg.errors import Diagnostic
from pydantic import Field

from maintainer.catalog import LeadingIndex, indexes_leading_with, missing, quoted
from maintainer.db import sql_file, table
from maintainer.job import Check, Duration, Job, JobSettings, RelationName, Result, RunContext, StopReason

SessionStatus = Literal["active", "completed", "abandoned"]
SESSION_STATUSES: tuple[SessionStatus, ...] = ("active", "completed", "abandoned")
CleanupPath = Literal["walk", "sessions"]


class CleanupSettings(JobSettings):
    schedule: str = "0 2 * * *"
    statement_timeout: Duration = timedelta(minutes=1)
    retention_days: int = Field(default=90, ge=1, le=36_500)  # a century: a cutoff PostgreSQL can compute
    session_statuses: list[SessionStatus] = Field(default=["completed"], min_length=1)
    batch_size: int = Field(default=5000, ge=1, le=100_000)
    pause_between_batches: Duration = timedelta(0)
    yield_batch_size: int = Field(default=500, ge=1, le=100_000)
    yield_pause: Duration = timedelta(milliseconds=10)
    max_run_time: Duration = timedelta(0)
    progress_every_batches: int = Field(default=10, ge=1)
    path: Literal["auto", "walk", "sessions"] = "auto"
    full_pass_every: Duration = timedelta(days=7)
    event_table: RelationName = "parlant_event"
    session_table: RelationName = "parlant_session"


Context = RunContext[CleanupSettings]


_ROUND_TRIP = sql_file("jobs", "cleanup_round_trip.sql")
_AUDIT = sql_file("jobs", "cleanup_audit.sql")
_BATCH = "maintainer cleanup batch"
_STATE = "maintainer cleanup state"
# The walk yields while other sessions write at least this many transactions in about _WRITE_MEMORY_SECONDS
# (20 a second): an application's steady writes, not an autovacuum's occasional ANALYZE.
_WRITES_TO_YIELD = 2
_WRITE_MEMORY_SECONDS = 0.1
_ROUND_TRIP_SECONDS = 0.25
_MAX_BATCHES_PER_ROUND_TRIP = 1000
_MAX_SPAN_BLOCKS = 4096  # 32 MB of heap: the longest stretch one batch scans when it finds nothing to delete
_MAX_SESSIONS_PER_BATCH = 4096  # index lookups one batch makes when its sessions hold nothing to delete
_MAX_CANDIDATES_PER_ROUND_TRIP = 100_000  # session ids one round trip holds (1.6 MB)
# Pages of the event table sampled to choose the path, and the share of eligible events from which the
# walk's sequential read costs less than finding the rows one session at a time (bench/README.md).
_SAMPLE_BLOCKS = 64
_WALK_FROM_SHARE = 0.1


class PathChoice(NamedTuple):
    path: CleanupPath
    since: datetime | None  # sessions path: only what became eligible after this (the last run's cutoff)
    full_pass_at: datetime  # when the last run that looked at everything ran: this one, if it does
    reason: str


@dataclass(frozen=True)
class _EventTable:
    """What the run needs to know of the event table before it deletes anything."""

    slots: int  # tuple ids per block a position counts: block_size / 4, the most line pointers a page holds
    blocks: int
    rows_per_block: float | None
    events_per_session: float | None
    synchronous_commit: str  # the session's own, for the durable commits
    session_index: LeadingIndex | None  # an index leading with session_id: the sessions path needs one
    created_at_index: LeadingIndex | None  # one leading with created_at: the high-water mark needs one

    @property
    def window_covered(self) -> bool:
        """The created_at index holds session_id: the window's sessions come from the index alone."""
        return self.created_at_index is not None and self.created_at_index.holds(["session_id"])


def compute_cutoff(ctx: Context, retention_days: int) -> datetime:
    """``now - retention_days`` as a TIMESTAMP WITHOUT TIME ZONE in the session time zone, like the columns."""
    row = ctx.conn.execute(
        "SELECT (%s::timestamptz - make_interval(days => %s))::timestamp", (ctx.clock(), retention_days)
    ).fetchone()
    assert row is not None
    cutoff: datetime = row[0]
    return cutoff


def _rule(ctx: Context, settings: CleanupSettings) -> str:
    """What a high-water mark is valid for: a run with another rule may have left anything."""
    statuses = "/".join(sorted(settings.session_statuses))
    timezone = ctx.conn.info.parameter_status("TimeZone")
    return f"{settings.event_table} of {statuses} {settings.session_table}, TimeZone {timezone}"


def _event_table(ctx: Context, settings: CleanupSettings) -> _EventTable:
    row = ctx.conn.execute(
        "SELECT current_setting('block_size')::int / 4,"
        " pg_relation_size(e.oid) / current_setting('block_size')::int,"
        " CASE WHEN e.relpages > 0 AND e.reltuples > 0 THEN e.reltuples / e.relpages END,"
        " CASE WHEN s.reltuples > 0 AND e.reltuples >= 0 THEN e.reltuples / s.reltuples END,"
        " current_setting('synchronous_commit')"
        " FROM pg_class AS e, pg_class AS s WHERE e.oid = %s::regclass AND s.oid = %s::regclass",
        (quoted(ctx.conn, settings.event_table), quoted(ctx.conn, settings.session_table)),
    ).fetchone()
    assert row is not None
    slots, blocks, rows_per_block, events_per_session, synchronous_commit = row
    indexes = indexes_leading_with(ctx.conn, settings.event_table, ["session_id", "created_at"])
    return _EventTable(slots, blocks, rows_per_block, events_per_session, synchronous_commit,
                       indexes["session_id"], indexes["created_at"])


def choose_path(ctx: Context, settings: CleanupSettings, cutoff: datetime, events: _EventTable) -> PathChoice:
    """The walk for a backlog or without an index on session_id; otherwise the sessions path, since the last
    complete run's cutoff when its high-water mark holds."""
    now = ctx.clock()
    if settings.path == "walk":
        return PathChoice("walk", None, now, "path = walk in the settings")
    if events.session_index is None:
        return PathChoice("walk", None, now, f"{settings.event_table} has no index on session_id")
    since, full_pass_at, reason = _high_water_mark(ctx, settings, now, events)
    if settings.path == "auto":
        # Since a mark, the planner's estimate of the window is enough (and costs no reading); without one,
        # a sample of the table tells a backlog from a nightly run's share.
        share = _window_share(ctx, settings, since, cutoff, events) if since else \
            _eligible_share(ctx, settings, cutoff, events)
        if share >= _WALK_FROM_SHARE:
            return PathChoice("walk", None, now, f"about {share:.0%} of the events are eligible")
    return PathChoice("sessions", since, full_pass_at or now, reason)


def _high_water_mark(
    ctx: Context, settings: CleanupSettings, now: datetime, events: _EventTable
) -> tuple[datetime | None, datetime | None, str]:
    """(since, when the last full pass ran, why): since is None when this run must look at everything."""
    last = ctx.last_complete
    if last is None:
        return None, None, "every candidate session: no complete run in the run history"
    if last.get("rule") != _rule(ctx, settings) or not last.get("full_pass_at"):
        return None, None, "every candidate session: the rule changed since the last complete run"
    if events.created_at_index is None:
        return None, None, f"every candidate session: {settings.event_table} has no index on created_at"
    full_pass_at = datetime.fromisoformat(last["full_pass_at"])
    if now - full_pass_at >= settings.full_pass_every:
        return None, None, (f"every candidate session: a full pass is due every {_days(settings.full_pass_every)}"
                            f" (the last one ran {full_pass_at:%Y-%m-%d %H:%M %Z})")
    since = datetime.fromisoformat(last["cutoff"])
    return since, full_pass_at, f"what became eligible since the last complete run's cutoff, {since:%Y-%m-%d %H:%M}"


def _days(duration: timedelta) -> str:
    return f"{duration.total_seconds() / 86400:g} days"


def _eligible_share(ctx: Context, settings: CleanupSettings, cutoff: datetime, events: _EventTable) -> float:
    """The share of eligible events in a sample of the event table's pages (0 for an empty table)."""
    percent = min(100.0, 100.0 * _SAMPLE_BLOCKS / max(events.blocks, 1))
    query = sql.SQL(
        "SELECT count(*) FILTER (WHERE s.status::text = ANY(%(statuses)s) AND s.ended_at < %(cutoff)s"
        " AND e.created_at < %(cutoff)s), count(*)"
        " FROM {events} AS e TABLESAMPLE SYSTEM (%(percent)s) LEFT JOIN {sessions} AS s ON s.id = e.session_id"
    ).format(events=table(settings.event_table), sessions=table(settings.session_table))
    row = ctx.conn.execute(
        query, {"statuses": list(settings.session_statuses), "cutoff": cutoff, "percent": percent}
    ).fetchone()
    assert row is not None
    eligible, sampled = row
    return eligible / sampled if sampled else 0.0


def _window_share(
    ctx: Context, settings: CleanupSettings, since: datetime, cutoff: datetime, events: _EventTable
) -> float:
    """The planner's estimate of the share of events that became eligible since ``since``: those created
    since, and those of sessions that ended since (as many as a session holds on average)."""
    def estimate(query: sql.Composable) -> float:
        row = ctx.conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) {}").format(query), (since, cutoff)).fetchone()
        assert row is not None
        return float(row[0][0]["Plan"]["Plan Rows"])

    created = estimate(sql.SQL("SELECT FROM {} WHERE created_at >= %s AND created_at < %s").format(
        table(settings.event_table)))
    ended = estimate(sql.SQL("SELECT FROM {} WHERE ended_at >= %s AND ended_at < %s").format(
        table(settings.session_table)))
    total = (events.rows_per_block or 0) * events.blocks
    return (created + ended * (events.events_per_session or 0)) / total if total else 0.0


def _configure(ctx: Context) -> None:
    # The batches' generic plan is a memoized index lookup of each event's session: planning it for every
    # batch would cost as much as a small batch, and a hash join would hash every eligible session again in
    # every batch. Batches commit asynchronously; the run ends with one durable commit.
    ctx.conn.execute("SELECT set_config('synchronous_commit', 'off', false),"
                     " set_config('enable_hashjoin', 'off', false), set_config('enable_mergejoin', 'off', false),"
                     " set_config('plan_cache_mode', 'force_generic_plan', false)")


class _RoundTrips:
    """The state that goes into each round trip, and what its INFO lines say the batches did."""

    def __init__(self, ctx: Context, settings: CleanupSettings, cutoff: datetime, choice: PathChoice,
                 events: _EventTable, started: float) -> None:
        self.ctx, self.settings, self.cutoff, self.choice, self.started = ctx, settings, cutoff, choice, started
        yield_size = min(settings.yield_batch_size, settings.batch_size)
        walking = choice.path == "walk"
        target = settings.batch_size - settings.batch_size // 4
        if walking:  # the first range as if every row were eligible: it fits, and need not grow from one block
            first_span = events.slots * max(1, int(target / events.rows_per_block)) if events.rows_per_block \
                else events.slots
        else:  # a candidate session has ended: it holds more than the table's average, so half that many
            first_span = max(1, int(target / events.events_per_session / 2)) if events.events_per_session else 1
        self.state: dict[str, Any] = {
            "path": choice.path, "cutoff": cutoff.isoformat(), "window_covered": events.window_covered,
            "since": choice.since.isoformat() if choice.since else None,
            "batch_size": settings.batch_size, "yield_size": yield_size,
            "yield_pause": settings.yield_pause.total_seconds(), "writes_to_yield": _WRITES_TO_YIELD,
            "write_memory": _WRITE_MEMORY_SECONDS, "durable": events.synchronous_commit,
            "slots": events.slots, "walk_end": events.blocks * events.slots,
            "max_span": _MAX_SPAN_BLOCKS * events.slots if walking else _MAX_SESSIONS_PER_BATCH,
            "max_candidates": _MAX_CANDIDATES_PER_ROUND_TRIP,
            "position": 0, "after": None, "span": first_span, "writes": 0.0, "next_xid": None,
            "seen_at": None,
        }
        self.blocks = events.blocks
        self.done = False
        self.rows_deleted = self.batches = self.largest_batch = self.batches_yielded = 0
        self.sessions_visited = self._visited_before = 0

    @property
    def blocks_walked(self) -> int:
        if self.choice.path != "walk":
            return 0
        return min(int(self.state["position"]) // int(self.state["slots"]), self.blocks)

    def on_notice(self, diagnostic: Diagnostic) -> None:
        message = diagnostic.message_primary
        if diagnostic.severity_nonlocalized != "INFO" or message not in (_BATCH, _STATE):
            return
        detail = json.loads(diagnostic.message_detail or "{}")
        if message == _STATE:
            self.done = detail.pop("done")
            self.state.update(detail)
            self._visited_before = self.sessions_visited
            return
        deleted = int(detail["deleted"])
        self.ctx.rows.add(deleted)  # committed: INFO comes after the batch's COMMIT
        self.state["position"] = detail["position"]
        self.sessions_visited = self._visited_before + int(detail["sessions_visited"])
        self.batches += 1
        self.batches_yielded += bool(detail["yielded"])
        self.rows_deleted += deleted
        self.largest_batch = max(self.largest_batch, deleted)
        if self.batches % self.settings.progress_every_batches == 0:
            elapsed = self.ctx.monotonic() - self.started
            done = self._done_share(detail.get("candidates"))
            self.ctx.log.info(
                "cleanup_progress", path=self.choice.path, batches=self.batches, rows_deleted=self.ctx.rows.total,
                blocks_walked=self.blocks_walked, sessions_visited=self.sessions_visited,
                percent=round(100 * done, 1) if done is not None else None,
                eta_s=round(elapsed * (1 - done) / done, 1) if done else None,
                elapsed_ms=round(elapsed * 1000), cutoff=self.cutoff.isoformat(),
            )

    def _done_share(self, candidates: int | None) -> float | None:
        """How much of the work is done: the share of the table walked, or of the candidate sessions visited
        (known once a round trip holds the last of them)."""
        if self.choice.path == "walk":
            return min(1.0, int(self.state["position"]) / max(int(self.state["walk_end"]), 1))
        if candidates is None or candidates >= _MAX_CANDIDATES_PER_ROUND_TRIP:
            return None
        return self.sessions_visited / max(self._visited_before + candidates, 1)

    def run_one(self, body: sql.Composable, seconds: float) -> None:
        """One DO block of at most ``seconds`` (and always one batch)."""
        self.state["seconds"] = seconds
        # Two statements, not one string of both: a DO block that commits cannot run in the implicit
        # transaction of a multi-statement query.
        self.ctx.conn.execute("SELECT set_config('maintainer.cleanup', %s, false)", (json.dumps(self.state),))
        self.ctx.conn.execute(sql.SQL("DO {}").format(body))


def run(ctx: Context) -> Result:
    settings = ctx.settings
    conn = ctx.conn
    cutoff = compute_cutoff(ctx, settings.retention_days)
    started = ctx.monotonic()
    deadline = started + settings.max_run_time.total_seconds() if settings.max_run_time else None
    events = _event_table(ctx, settings)
    _configure(ctx)
    choice = choose_path(ctx, settings, cutoff, events)
    ctx.log.info("cleanup_path_chosen", path=choice.path, reason=choice.reason,
                 since=choice.since.isoformat() if choice.since else None, cutoff=cutoff.isoformat())
    trips = _RoundTrips(ctx, settings, cutoff, choice, events, started)
    body = sql.Literal(sql.SQL(_ROUND_TRIP).format(
        events=table(settings.event_table), sessions=table(settings.session_table),
        statuses=sql.SQL(", ").join(sql.Literal(status) for status in settings.session_statuses),
    ).as_string(conn))
    pause = settings.pause_between_batches.total_seconds()
    # With a pause every batch is its own round trip, the pause between them.
    trips.state["batches"] = 1 if pause else _MAX_BATCHES_PER_ROUND_TRIP
    stop_reason: StopReason | None = None
    conn.add_notice_handler(trips.on_notice)
    try:
        while not trips.done and not ctx.should_stop():
            trips.run_one(body, min(_ROUND_TRIP_SECONDS, deadline - ctx.monotonic()) if deadline
                          else _ROUND_TRIP_SECONDS)
            if trips.done or ctx.should_stop():
                break
            if deadline is not None and ctx.monotonic() >= deadline:
                stop_reason = StopReason.MAX_RUN_TIME
                break
            if pause and ctx.stop.wait(pause):
                break
        if not trips.done and ctx.should_stop():
            stop_reason = StopReason.SHUTDOWN
    finally:
        conn.remove_notice_handler(trips.on_notice)
    # One durable commit: it flushes the WAL of every batch above before the run reports them done.
    conn.execute("SELECT set_config('synchronous_commit', %s, false), pg_current_xact_id()",
                 (events.synchronous_commit,))

    duration_s = ctx.monotonic() - started
    summary = {
        "rows_deleted": ctx.rows.total,  # this run's, its earlier attempts' included
        "batches": trips.batches,
        "largest_batch": trips.largest_batch,
        "batches_yielded": trips.batches_yielded,
        **_path_fields(choice),
        "blocks_walked": trips.blocks_walked,
        "blocks": events.blocks,
        "sessions_visited": trips.sessions_visited,
        "rows_per_s": round(trips.rows_deleted / duration_s) if duration_s > 0 else None,
        "cutoff": cutoff.isoformat(),
        "timezone": conn.info.parameter_status("TimeZone"),
        "timezone_source": ctx.timezone_source,
        "retention_days": settings.retention_days,
        "rule": _rule(ctx, settings),
        "stopped_early": stop_reason is not None,
        "stop_reason": stop_reason,
    }
    report = (
        f"deleted {ctx.rows.total:,} events older than {cutoff:%Y-%m-%d %H:%M:%S} ({summary['timezone']}) "
        f"in {trips.batches:,} batches, {duration_s:.1f} s"
        + (f", {summary['rows_per_s']:,} rows/s" if summary["rows_per_s"] is not None else "")
        + f"\npath: {choice.path}, {choice.reason}"
    )
    if stop_reason:
        report += f"\nstopped early ({stop_reason}): the next run deletes the rest"
    return Result(summary=summary, report=report, stop_reason=stop_reason)


def _path_fields(choice: PathChoice) -> dict[str, Any]:
    return {
        "path": choice.path, "path_reason": choice.reason,
        "since": choice.since.isoformat() if choice.since else None,
        "full_pass_at": choice.full_pass_at.isoformat(),
    }


def dry_run(ctx: Context) -> Result:
    """The retention audit: what the policy deletes now, and what older than the cutoff it keeps, and why."""
    settings = ctx.settings
    cutoff = compute_cutoff(ctx, settings.retention_days)
    events = _event_table(ctx, settings)
    _configure(ctx)
    choice = choose_path(ctx, settings, cutoff, events)
    last = ctx.last_complete if ctx.last_complete and ctx.last_complete.get("rule") == _rule(ctx, settings) else None
    mark = datetime.fromisoformat(last["cutoff"]) if last else None
    ctx.conn.execute("SELECT set_config('enable_hashjoin', 'on', false)")  # the audit reads everything once
    query = sql.SQL(_AUDIT).format(sessions=table(settings.session_table), events=table(settings.event_table))
    counts = {
        verdict: {"events": events, "sessions": sessions, "oldest_event_at": oldest.isoformat(), "left": left}
        for verdict, events, sessions, oldest, left in ctx.conn.execute(
            query, {"statuses": list(settings.session_statuses), "cutoff": cutoff, "mark": mark}
        )
    }
    empty = {"events": 0, "sessions": 0, "oldest_event_at": None, "left": 0}
    kept_keys = [f"{s}_recent" if s in settings.session_statuses else s for s in SESSION_STATUSES]
    would_delete = counts.get("would_delete", empty)
    left = would_delete.pop("left")
    kept = {key: {k: v for k, v in counts.get(key, empty).items() if k != "left"} for key in kept_keys}
    timezone = ctx.conn.info.parameter_status("TimeZone")
    summary = {
        "cutoff": cutoff.isoformat(),
        "timezone": timezone,
        "timezone_source": ctx.timezone_source,
        "retention_days": settings.retention_days,
        "session_statuses": list(settings.session_statuses),
        **_path_fields(choice),
        "would_delete": would_delete,
        "last_run_cutoff": mark.isoformat() if mark else None,
        "left_by_last_run": left if mark else None,
        "kept_older_than_cutoff": kept,
    }
    left_line = (f"{left:>12,} of them were eligible at the last complete run's cutoff, {mark:%Y-%m-%d %H:%M:%S}"
                 if mark else "no complete run with this rule in the run history")
    lines = [
        f"Retention audit of {settings.event_table} (dry run: nothing was changed)",
        f"  cutoff        {cutoff:%Y-%m-%d %H:%M:%S} {timezone} (now - {settings.retention_days} days; the zone is"
        + (" the session_timezone setting)" if ctx.timezone_source == "session_timezone" else " the database's own)"),
        f"  rule          created before the cutoff, in a session that is "
        f"{' or '.join(settings.session_statuses)} and ended before the cutoff",
        f"  would delete  {_counts(would_delete)}",
        f"  left before   {left_line}",
        f"  path          {choice.path}: {choice.reason}",
        "  older than the cutoff but kept, by session status:",
        *(f"    {key:<18}{_counts(kept[key])}" for key in kept_keys),
    ]
    return Result(summary=summary, report="\n".join(lines))


def _counts(entry: dict[str, Any]) -> str:
    text = f"{entry['events']:>12,} events in {entry['sessions']:,} sessions"
    if entry["oldest_event_at"]:
        text += f", oldest {entry['oldest_event_at'].replace('T', ' ')}"
    return text


def check(ctx: Context) -> list[Check]:
    """The two tables exist, the role may read sessions and read and delete events, and the indexes that keep
    the nightly run's cost to what it deletes are there."""
    settings = ctx.settings
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
    if not missing(ctx.conn, [settings.event_table, settings.session_table]):
        events = indexes_leading_with(ctx.conn, settings.event_table, ["session_id", "created_at"])
        sessions = indexes_leading_with(ctx.conn, settings.session_table, ["ended_at"])
        checks += [
            _index_check(ctx, settings.event_table, ["session_id", "created_at"], events["session_id"],
                         "without it every run walks the whole table"),
            _index_check(ctx, settings.event_table, ["created_at", "session_id"], events["created_at"],
                         "without it every run looks at every candidate session, not only what became eligible",
                         holding=("without session_id in it every nightly run reads the table page of each event"
                                  " created in its window, to find the event's session")),
            _index_check(ctx, settings.session_table, ["ended_at"], sessions["ended_at"],
                         "without it every nightly run reads the whole session table once"),
        ]
    return checks


def _index_check(ctx: Context, name: str, columns: list[str], index: LeadingIndex | None, need: str,
                 holding: str | None = None) -> Check:
    """The index the cleanup's sessions path wants, led by ``columns[0]`` (and, where ``holding`` says why,
    holding the other columns too); the statement that makes one."""
    subject = f"{name} ({columns[0]})"
    if index and (holding is None or index.holds(columns)):
        return Check(ctx.job, subject, True, f"index {index.name}")
    if index:
        need = f"index {index.name} is on ({', '.join(index.columns)}): {holding}"
    # Quoted only where PostgreSQL needs it: a statement for the operator to read and paste.
    row = ctx.conn.execute(
        "SELECT format('CREATE INDEX CONCURRENTLY %%I ON %%s (%%s)', %s::text, to_regclass(%s)::text,"
        " (SELECT string_agg(quote_ident(c), ', ') FROM unnest(%s::text[]) AS c))",
        (f"{name.split('.')[-1]}_{columns[0]}_cleanup_idx", quoted(ctx.conn, name), columns),
    ).fetchone()
    assert row is not None
    return Check(ctx.job, subject, True, f"no index: {need}", fix=row[0], warning=True)


def _table_setting(settings: CleanupSettings, name: str) -> str:
    return "event_table" if name == settings.event_table else "session_table"


_GUIDE = re.compile(
    r"delete from parlant_event where created_at<now\(\)-interval '(\d+) days?' and session_id in\(select id from"
    r" parlant_session where status='completed' and ended_at<now\(\)-interval '\1 days?'\)")


def recognises(statement: str) -> dict[str, Any] | None:
    """The guide's DELETE (its retention, when not 90 days)."""
    if not (found := _GUIDE.fullmatch(statement)):
        return None
    days = int(found[1])
    return {} if days == CleanupSettings().retention_days else {"retention_days": days}


JOB = Job(
    name="cleanup-old-events",
    description="delete events older than the retention period from completed sessions that ended before it",
    settings_model=CleanupSettings,
    run=run,
    dry_run=dry_run,
    check=check,
    recognises=recognises,
    deletes_rows=True,
)
