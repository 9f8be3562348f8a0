"""cleanup-old-events: the retention rule of the operators' guide, in short batches.

An event is deleted when it was created before the cutoff *and* its session has one of the configured
statuses (default ``completed``) *and* that session ended before the cutoff. The cutoff is
``now - retention_days``, computed once per run in the session time zone.

How the batches are cut: the walk goes through the event table in physical order, one range of tuple
ids (ctid) at a time, like the single DELETE's sequential scan, and each range is deleted and committed
as its own transaction. A range is sized from what the previous one held; one that holds more than
``batch_size`` rows is rolled back and tried again narrower, so no transaction deletes more. The walk
only moves forward, so a batch at the end of the table costs what one at its start does. Measured by
``python -m bench`` (bench/README.md), against the alternatives:

- physical order, because session ids are random UUIDs: a walk over sessions reads the heap in random
  order, a page at a time;
- each event's session is checked by a memoized index lookup, because a hash join would hash every
  eligible session again for every batch (hash and merge joins are off for this connection);
- several batches per round trip, in one DO block whose batches commit one by one, because the round
  trip and the planning cost about as much as a batch; a block lasts about ``_ROUND_TRIP_SECONDS`` so
  that a shutdown or ``max_run_time`` is noticed between blocks;
- the batches commit with ``synchronous_commit = off`` and the run ends with one durable commit: the
  backend does not wait for a WAL flush per batch, and a crash can only undo the last few batches,
  which the next run deletes again;
- while other sessions write (the application), batches shrink to ``yield_batch_size``, commit
  durably and are each followed by ``yield_pause``: on two cores a walk at full speed raised the
  application's p99 latency about three times, a yielding one by less than a tenth (medians). Writers are
  seen in the transaction ids the walk did not take itself, which costs nothing and needs no privilege.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from psycopg import sql
from psycopg.errors import Diagnostic
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
    yield_batch_size: int = Field(default=500, ge=1, le=100_000)
    yield_pause: Duration = timedelta(milliseconds=10)
    max_run_time: Duration = timedelta(0)
    progress_every_batches: int = Field(default=10, ge=1)
    event_table: str = "parlant_event"
    session_table: str = "parlant_session"


# A position is a tuple id counted in slots: block * slots + line pointer, with slots = block_size / 4,
# the most line pointers a page can hold. A range of one slot holds at most one row, so every range
# can be narrowed until it fits in a batch.
_WALK = """
DECLARE
    cutoff      constant timestamp := {cutoff};
    slots       constant bigint := {slots};
    walk_end    constant bigint := {walk_end};
    yield_pause constant float8 := {yield_pause};
    position    bigint := {position};
    span        bigint := {span};
    writes      float8 := {writes};
    yielding    boolean := writes >= {writes_to_yield};
    cut_yielding boolean;
    committed   integer := 0;
    deleted     bigint;
    fits        boolean := true;
    next_xid    bigint := coalesce({next_xid}, pg_snapshot_xmax(pg_current_snapshot())::text::bigint);
    xid_now     bigint;
    fading      float8;
    now_at      timestamptz;
    seen_at     timestamptz := coalesce(to_timestamp({seen_at}), clock_timestamp());
    block_end   constant timestamptz := clock_timestamp() + make_interval(secs => {seconds});
BEGIN
    -- A block ends after its batches or its time, whichever comes first (yielding lengthens every batch),
    -- but never right after a rollback: the narrower range it found is not reported to the next block.
    WHILE committed < {batches} AND position < walk_end
          AND (committed = 0 OR NOT fits OR clock_timestamp() < block_end) LOOP
        cut_yielding := yielding;
        IF yielding THEN
            -- This batch commits durably: while it yields the walk has time to wait for its own WAL flush,
            -- and an application commit then flushes at most this batch's WAL, not the earlier ones' too.
            PERFORM set_config('synchronous_commit', {durable}, true);
        END IF;
        DELETE FROM {events} AS e USING {sessions} AS s
        WHERE e.ctid >= format('(%s,%s)', position / slots, position % slots)::tid
          AND e.ctid < format('(%s,%s)', (position + span) / slots, (position + span) % slots)::tid
          AND e.created_at < cutoff
          AND s.id = e.session_id AND s.status IN ({statuses}) AND s.ended_at < cutoff;
        GET DIAGNOSTICS deleted = ROW_COUNT;
        fits := deleted <= CASE WHEN yielding THEN {yield_size} ELSE {batch_size} END;
        IF fits THEN
            COMMIT;
            position := position + span;
            committed := committed + 1;
        ELSE
            ROLLBACK;  -- more than a batch in this range: the same start, a narrower range
        END IF;
        IF yield_pause > 0 THEN
            -- Other sessions' write transactions since the last batch, anywhere on the server: the transaction
            -- ids this walk did not take (a DELETE that removed a row took one), fading over about {memory} s.
            xid_now := pg_snapshot_xmax(pg_current_snapshot())::text::bigint;
            now_at := clock_timestamp();
            fading := greatest(0, extract(epoch FROM now_at - seen_at) / {memory});
            -- (float8 arithmetic raises an error on underflow rather than returning 0)
            writes := CASE WHEN fading < 20 AND writes > 1e-6 THEN writes * exp(-fading) ELSE 0 END
                      + greatest(0, xid_now - next_xid - (deleted > 0)::int);
            next_xid := xid_now;
            seen_at := now_at;
            yielding := writes >= {writes_to_yield};
        END IF;
        -- The next range holds about a target's worth at this one's density and is at most twice as long;
        -- once longer than a block it ends on a block boundary: a page split between two batches is read twice.
        span := least({max_span}, span * 2, greatest(1, span * CASE WHEN yielding THEN {yield_target}
                                                                    ELSE {target} END / greatest(deleted, 1)));
        IF span > slots THEN
            span := (position + span) / slots * slots - position;
        END IF;
        IF fits THEN  -- INFO: sent whatever client_min_messages is; the next block goes on from its numbers
            RAISE INFO '{marker} % % % % % % %', deleted, position, span, cut_yielding::int, writes, next_xid,
                extract(epoch FROM seen_at);
        END IF;
        IF yielding AND fits THEN
            PERFORM pg_sleep(yield_pause);
        END IF;
    END LOOP;
END
"""
_MARKER = "maintainer cleanup batch"
# The walk yields while other sessions write at least this many transactions in about _WRITE_MEMORY_SECONDS
# (20 a second): an application's steady writes, not an autovacuum's occasional ANALYZE.
_WRITES_TO_YIELD = 2
_WRITE_MEMORY_SECONDS = 0.1
_ROUND_TRIP_SECONDS = 0.25
_MAX_BATCHES_PER_ROUND_TRIP = 1000
_MAX_SPAN_BLOCKS = 4096  # 32 MB of heap: the longest stretch one batch scans when it finds nothing to delete

_AUDIT = """
SELECT CASE WHEN s.status::text = ANY(%(statuses)s) AND s.ended_at < %(cutoff)s THEN 'would_delete'
            WHEN s.status::text = ANY(%(statuses)s) THEN s.status::text || '_recent'
            ELSE s.status::text END AS verdict,
       count(*) AS events, count(DISTINCT e.session_id) AS sessions, min(e.created_at) AS oldest_event_at
FROM {events} AS e JOIN {sessions} AS s ON s.id = e.session_id
WHERE e.created_at < %(cutoff)s
GROUP BY 1
"""


def compute_cutoff(ctx: RunContext, retention_days: int) -> datetime:
    """``now - retention_days`` as a TIMESTAMP WITHOUT TIME ZONE in the session time zone, like the columns."""
    row = ctx.conn.execute(
        "SELECT (%s::timestamptz - make_interval(days => %s))::timestamp", (ctx.clock(), retention_days)
    ).fetchone()
    assert row is not None
    cutoff: datetime = row[0]
    return cutoff


class _Walk:
    """Where the walk is and what it has done, updated by the INFO line each committed batch sends."""

    def __init__(
        self, ctx: RunContext, cutoff: datetime, slots: int, blocks: int, first_span: int, started: float
    ) -> None:
        self.ctx, self.cutoff, self.slots, self.blocks, self.started = ctx, cutoff, slots, blocks, started
        self.position, self.span = 0, first_span
        # Other sessions' recent write transactions as the walk last counted them, the next transaction id
        # then and when (epoch seconds, the server's clock): the next round trip counts on from there.
        self.writes = 0.0
        self.next_xid: int | None = None
        self.seen_at: float | None = None
        self.rows_deleted = self.batches = self.largest_batch = self.batches_yielded = 0

    @property
    def end(self) -> int:
        return self.blocks * self.slots

    @property
    def done(self) -> bool:
        return self.position >= self.end

    @property
    def blocks_walked(self) -> int:
        return min(self.position // self.slots, self.blocks)

    def on_batch(self, diagnostic: Diagnostic) -> None:
        message = diagnostic.message_primary or ""
        if diagnostic.severity_nonlocalized != "INFO" or not message.startswith(_MARKER):
            return
        numbers = message.removeprefix(_MARKER).split()
        deleted, self.position, self.span, yielded = (int(number) for number in numbers[:4])
        self.writes, self.next_xid, self.seen_at = float(numbers[4]), int(numbers[5]), float(numbers[6])
        self.batches += 1
        self.batches_yielded += yielded
        self.rows_deleted += deleted
        self.largest_batch = max(self.largest_batch, deleted)
        settings: CleanupSettings = self.ctx.settings
        if self.batches % settings.progress_every_batches == 0:
            self.ctx.log.info(
                "cleanup_progress", batches=self.batches, rows_deleted=self.rows_deleted,
                blocks_walked=self.blocks_walked,
                elapsed_ms=round((self.ctx.monotonic() - self.started) * 1000), cutoff=self.cutoff.isoformat(),
            )


def _next_round_trip(batches: int, seconds_per_batch: float, budget: float) -> int:
    """Batches for the next DO block: as many as fit in ``budget`` seconds, at most four times the last
    block's, whose first batches were the walk's smallest."""
    fitting = int(budget / max(seconds_per_batch, 1e-6))
    return max(1, min(_MAX_BATCHES_PER_ROUND_TRIP, 4 * batches, fitting))


def run(ctx: RunContext) -> Result:
    settings: CleanupSettings = ctx.settings
    conn = ctx.conn
    cutoff = compute_cutoff(ctx, settings.retention_days)
    started = ctx.monotonic()
    deadline = started + settings.max_run_time.total_seconds() if settings.max_run_time else None
    row = conn.execute(
        "SELECT current_setting('block_size')::int / 4,"
        " pg_relation_size(c.oid) / current_setting('block_size')::int,"
        " CASE WHEN c.relpages > 0 AND c.reltuples > 0 THEN c.reltuples / c.relpages END,"
        " current_setting('synchronous_commit')"
        " FROM pg_class AS c WHERE c.oid = %(events)s::regclass",
        {"events": quoted(conn, settings.event_table)},
    ).fetchone()
    assert row is not None
    slots, blocks, rows_per_block, synchronous_commit = row
    # Aim at three quarters of a batch: a range that turns out denser than the last one still fits, and
    # rolling back a range that does not costs a whole batch of work.
    target = settings.batch_size - settings.batch_size // 4
    yield_size = min(settings.yield_batch_size, settings.batch_size)
    # The first range as if every row were eligible: it fits, and the walk need not grow from one block.
    first_span = slots * max(1, int(target / rows_per_block)) if rows_per_block else slots
    # The generic plan is the memoized lookup over a TID range scan whatever the range: planning it for every
    # batch would cost as much as a small batch.
    conn.execute("SELECT set_config('synchronous_commit', 'off', false), set_config('enable_hashjoin', 'off', false),"
                 " set_config('enable_mergejoin', 'off', false),"
                 " set_config('plan_cache_mode', 'force_generic_plan', false)")
    walk = _Walk(ctx, cutoff, slots, blocks, first_span, started)
    fixed = {
        "cutoff": sql.Literal(cutoff), "batch_size": sql.Literal(settings.batch_size),
        "target": sql.Literal(target), "slots": sql.Literal(slots),
        "yield_size": sql.Literal(yield_size), "yield_target": sql.Literal(yield_size - yield_size // 4),
        "yield_pause": sql.Literal(settings.yield_pause.total_seconds()),
        "writes_to_yield": sql.Literal(_WRITES_TO_YIELD), "memory": sql.Literal(_WRITE_MEMORY_SECONDS),
        "durable": sql.Literal(synchronous_commit), "seconds": sql.Literal(_ROUND_TRIP_SECONDS),
        "walk_end": sql.Literal(walk.end), "max_span": sql.Literal(_MAX_SPAN_BLOCKS * slots),
        "statuses": sql.SQL(", ").join(sql.Literal(status) for status in settings.session_statuses),
        "events": table(settings.event_table), "sessions": table(settings.session_table),
        "marker": sql.SQL(_MARKER),
    }
    pause = settings.pause_between_batches.total_seconds()
    batches_per_round_trip = 1  # until a round trip has been timed
    stop_reason: str | None = None
    conn.add_notice_handler(walk.on_batch)
    try:
        while not walk.done:
            round_trip_started, batches_before = ctx.monotonic(), walk.batches
            body = sql.SQL(_WALK).format(
                **fixed, position=sql.Literal(walk.position), span=sql.Literal(walk.span),
                writes=sql.Literal(walk.writes), next_xid=sql.Literal(walk.next_xid),
                seen_at=sql.Literal(walk.seen_at),
                batches=sql.Literal(batches_per_round_trip),
            )
            conn.execute(sql.SQL("DO {}").format(sql.Literal(body.as_string(conn))))
            if walk.done:
                break
            if ctx.stop.is_set():
                stop_reason = "shutdown"
            elif deadline is not None and ctx.monotonic() >= deadline:
                stop_reason = "max_run_time"
            elif pause and ctx.stop.wait(pause):
                stop_reason = "shutdown"
            if stop_reason:
                break
            if not pause:
                seconds_per_batch = (ctx.monotonic() - round_trip_started) / (walk.batches - batches_before)
                budget = min(_ROUND_TRIP_SECONDS, deadline - ctx.monotonic()) if deadline else _ROUND_TRIP_SECONDS
                batches_per_round_trip = _next_round_trip(batches_per_round_trip, seconds_per_batch, budget)
    finally:
        conn.remove_notice_handler(walk.on_batch)
    # One durable commit: it flushes the WAL of every batch above before the run reports them done.
    conn.execute("SELECT set_config('synchronous_commit', %s, false), pg_current_xact_id()", (synchronous_commit,))

    duration_s = ctx.monotonic() - started
    summary = {
        "rows_deleted": walk.rows_deleted,
        "batches": walk.batches,
        "largest_batch": walk.largest_batch,
        "batches_yielded": walk.batches_yielded,
        "blocks_walked": walk.blocks_walked,
        "blocks": blocks,
        "rows_per_s": round(walk.rows_deleted / duration_s) if duration_s > 0 else None,
        "cutoff": cutoff.isoformat(),
        "timezone": conn.info.parameter_status("TimeZone"),
        "retention_days": settings.retention_days,
        "stopped_early": stop_reason is not None,
        "stop_reason": stop_reason,
    }
    report = (
        f"deleted {walk.rows_deleted:,} events older than {cutoff:%Y-%m-%d %H:%M:%S} ({summary['timezone']}) "
        f"in {walk.batches:,} batches, {duration_s:.1f} s"
        + (f", {summary['rows_per_s']:,} rows/s" if summary["rows_per_s"] is not None else "")
    )
    if stop_reason:
        report += f"\nstopped early ({stop_reason}): the next run deletes the rest"
    return Result(summary=summary, report=report, rows_affected=walk.rows_deleted, stop_reason=stop_reason)


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
