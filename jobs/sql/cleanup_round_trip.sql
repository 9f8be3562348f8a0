-- One round trip of cleanup-old-events: batches, each its own transaction, until the block has run its
-- batches or its time. The body of a DO block, composed once per run ({events}, {sessions}, {statuses});
-- the round trip's state comes in as JSON in the setting maintainer.cleanup, each committed batch reports
-- with RAISE INFO 'maintainer cleanup batch' and the block ends with RAISE INFO 'maintainer cleanup state'.
--
-- Two ways to find a batch, with the same manners (a cap of batch_size rows, yielding to other writers):
-- walk      the event table in physical order, one range of tuple ids at a time, the session checked by
--           an index lookup (the heap's cost; for a backlog). A position is block * slots + line pointer,
--           slots = block_size / 4, the most line pointers a page can hold: a range of one slot holds at
--           most one row, so a range that holds more than a batch can be narrowed until it fits.
-- sessions  the candidate sessions in id order, a few at a time, their events found by their index (the
--           cost of the sessions and the rows, not of the heap). With "since", only sessions that can have
--           events that became eligible since then: those that ended since, and those with events created since.
DECLARE
    state        constant jsonb := current_setting('maintainer.cleanup')::jsonb;
    cutoff       constant timestamp := (state->>'cutoff')::timestamp;
    since        constant timestamp := (state->>'since')::timestamp;
    walking      constant boolean := state->>'path' = 'walk';
    window_covered constant boolean := (state->>'window_covered')::boolean;
    batch_size   constant bigint := (state->>'batch_size')::bigint;
    yield_size   constant bigint := (state->>'yield_size')::bigint;
    yield_pause  constant float8 := (state->>'yield_pause')::float8;
    writes_to_yield constant float8 := (state->>'writes_to_yield')::float8;
    write_memory constant float8 := (state->>'write_memory')::float8;
    durable      constant text := state->>'durable';
    max_batches  constant integer := (state->>'batches')::integer;
    max_span     constant bigint := (state->>'max_span')::bigint;
    max_candidates constant integer := (state->>'max_candidates')::integer;
    slots        constant bigint := (state->>'slots')::bigint;
    walk_end     constant bigint := (state->>'walk_end')::bigint;
    block_end    constant timestamptz := clock_timestamp() + make_interval(secs => (state->>'seconds')::float8);
    position     bigint := (state->>'position')::bigint;  -- walk: the next tuple id, counted in slots
    after        uuid := (state->>'after')::uuid;          -- sessions: the last session done, in id order
    span         bigint := (state->>'span')::bigint;       -- slots, or sessions
    writes       float8 := (state->>'writes')::float8;
    next_xid     bigint := coalesce((state->>'next_xid')::bigint, pg_snapshot_xmax(pg_current_snapshot())::text::bigint);
    seen_at      timestamptz := coalesce(to_timestamp((state->>'seen_at')::float8), clock_timestamp());
    yielding     boolean := writes >= writes_to_yield;
    candidates   uuid[];
    window_sessions uuid[];
    index_only   constant text := current_setting('enable_indexonlyscan');  -- the session's, put back after
    next_one     integer := 1;  -- the next candidate's index in candidates
    chunk        uuid[];
    found_rows   bigint;
    chunk_done   boolean;  -- sessions: every eligible event of the chunk's sessions is gone
    done         boolean := false;
    cap          bigint;
    cut_yielding boolean;
    committed    integer := 0;
    deleted      bigint := 0;
    fits         boolean := true;
    xid_now      bigint;
    fading       float8;
    now_at       timestamptz;
BEGIN
    IF NOT walking THEN
        -- Planned for these values (a window of days is a handful of sessions), unlike the batches' statements.
        PERFORM set_config('plan_cache_mode', 'force_custom_plan', false);
        IF since IS NULL THEN
            candidates := ARRAY(
                SELECT s.id FROM {sessions} AS s
                WHERE s.status IN ({statuses}) AND s.ended_at < cutoff AND (after IS NULL OR s.id > after)
                ORDER BY s.id LIMIT max_candidates);
        ELSE
            IF NOT window_covered THEN
                -- The window's sessions come from the heap pages of its events, through the index on created_at:
                -- an index-only scan of an index led by session_id would read all of that index instead.
                PERFORM set_config('enable_indexonlyscan', 'off', false);
            END IF;
            -- Sessions with events created since: an array of its own, so that the query below is planned
            -- knowing how many (a bitmap scan of the sessions, not one index lookup each).
            window_sessions := ARRAY(SELECT DISTINCT e.session_id FROM {events} AS e
                                     WHERE e.created_at >= since AND e.created_at < cutoff ORDER BY 1);
            PERFORM set_config('enable_indexonlyscan', index_only, false);
            candidates := ARRAY(
                SELECT id FROM (
                    SELECT s.id FROM {sessions} AS s
                    WHERE s.status IN ({statuses}) AND s.ended_at >= since AND s.ended_at < cutoff
                    UNION  -- sessions that ended before it with events created since (late events)
                    SELECT s.id FROM {sessions} AS s
                    WHERE s.id = ANY(window_sessions) AND s.status IN ({statuses}) AND s.ended_at < since
                ) AS newly_eligible
                WHERE after IS NULL OR id > after
                ORDER BY id LIMIT max_candidates);
        END IF;
        PERFORM set_config('plan_cache_mode', 'force_generic_plan', false);
    END IF;
    done := CASE WHEN walking THEN position >= walk_end ELSE cardinality(candidates) = 0 END;
    -- A block ends after its batches or its time, whichever comes first (yielding lengthens every batch),
    -- but never right after a rollback: the narrower range it found is not reported to the next block.
    WHILE NOT done AND committed < max_batches AND (walking OR next_one <= cardinality(candidates))
          AND (committed = 0 OR NOT fits OR clock_timestamp() < block_end) LOOP
        cut_yielding := yielding;
        cap := CASE WHEN yielding THEN yield_size ELSE batch_size END;
        IF yielding THEN
            -- This batch commits durably: while it yields the walk has time to wait for its own WAL flush,
            -- and an application commit then flushes at most this batch's WAL, not the earlier ones' too.
            PERFORM set_config('synchronous_commit', durable, true);
        END IF;
        IF walking THEN
            DELETE FROM {events} AS e USING {sessions} AS s
            WHERE e.ctid >= format('(%s,%s)', position / slots, position % slots)::tid
              AND e.ctid < format('(%s,%s)', (position + span) / slots, (position + span) % slots)::tid
              AND e.created_at < cutoff
              AND s.id = e.session_id AND s.status IN ({statuses}) AND s.ended_at < cutoff;
            GET DIAGNOSTICS deleted = ROW_COUNT;
            fits := deleted <= cap;
        ELSE
            chunk := candidates[next_one : next_one + span - 1];
            IF cardinality(chunk) > 1 THEN
                -- Sessions the rule names now, their events found by their index: more than a batch is rolled
                -- back below, and the chunk narrowed.
                DELETE FROM {events} AS e
                WHERE e.session_id = ANY(ARRAY(
                        SELECT s.id FROM {sessions} AS s
                        WHERE s.id = ANY(chunk) AND s.status IN ({statuses}) AND s.ended_at < cutoff))
                  AND e.created_at < cutoff;
                GET DIAGNOSTICS deleted = ROW_COUNT;
                fits := deleted <= cap;
                chunk_done := true;  -- once committed
            ELSE
                -- One session holding more than a batch: at most a batch of its rows at a time, so the session is
                -- done only when fewer than that were found. One statement, one snapshot: the rows deleted are the
                -- rows found, each checked once.
                WITH found AS MATERIALIZED (
                    SELECT e.ctid FROM {events} AS e
                    WHERE e.session_id = ANY(ARRAY(
                            SELECT s.id FROM {sessions} AS s
                            WHERE s.id = ANY(chunk) AND s.status IN ({statuses}) AND s.ended_at < cutoff))
                      AND e.created_at < cutoff
                    LIMIT cap
                ), gone AS (
                    DELETE FROM {events} WHERE ctid = ANY(ARRAY(SELECT ctid FROM found)) AND created_at < cutoff
                    RETURNING 1
                )
                SELECT (SELECT count(*) FROM found), (SELECT count(*) FROM gone) INTO found_rows, deleted;
                fits := true;
                chunk_done := found_rows < cap;
            END IF;
        END IF;
        IF fits THEN
            COMMIT;
            committed := committed + 1;
            IF walking THEN
                position := position + span;
                done := position >= walk_end;
            ELSIF chunk_done THEN
                next_one := next_one + cardinality(chunk);
                after := chunk[cardinality(chunk)];
                -- Fewer candidates than asked for: there are no more.
                done := next_one > cardinality(candidates) AND cardinality(candidates) < max_candidates;
            END IF;
        ELSE
            ROLLBACK;  -- more than a batch in this range: the same start, a narrower range
        END IF;
        IF yield_pause > 0 THEN
            -- Other sessions' write transactions since the last batch, anywhere on the server: the transaction
            -- ids this walk did not take (a DELETE that removed a row took one), fading over write_memory s.
            xid_now := pg_snapshot_xmax(pg_current_snapshot())::text::bigint;
            now_at := clock_timestamp();
            fading := greatest(0, extract(epoch FROM now_at - seen_at) / write_memory);
            -- (float8 arithmetic raises an error on underflow rather than returning 0)
            writes := CASE WHEN fading < 20 AND writes > 1e-6 THEN writes * exp(-fading) ELSE 0 END
                      + greatest(0, xid_now - next_xid - (deleted > 0)::int);
            next_xid := xid_now;
            seen_at := now_at;
            yielding := writes >= writes_to_yield;
        END IF;
        -- The next batch aims at three quarters of its cap at this one's density, and is at most twice as long.
        cap := CASE WHEN yielding THEN yield_size ELSE batch_size END;
        span := least(max_span, span * 2, greatest(1, span * (cap - cap / 4) / greatest(deleted, 1)));
        IF walking AND span > slots THEN
            -- Longer than a block: end on a block boundary, or a page split between two batches is read twice.
            span := (position + span) / slots * slots - position;
        END IF;
        IF fits THEN  -- INFO: sent whatever client_min_messages is
            RAISE INFO 'maintainer cleanup batch' USING DETAIL = json_build_object(
                'deleted', deleted, 'yielded', cut_yielding, 'position', position,
                'sessions_visited', next_one - 1, 'candidates', cardinality(candidates))::text;
        END IF;
        IF yielding AND fits AND NOT done THEN
            PERFORM pg_sleep(yield_pause);
        END IF;
    END LOOP;
    -- Where the next block goes on from.
    RAISE INFO 'maintainer cleanup state' USING DETAIL = json_build_object(
        'done', done, 'position', position, 'after', after, 'span', span, 'writes', writes,
        'next_xid', next_xid, 'seen_at', extract(epoch FROM seen_at))::text;
END
