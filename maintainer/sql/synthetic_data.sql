-- Synthetic Parlant data relative to %(now)s, deterministic for a given %(seed)s.
-- Sessions start uniformly over the %(days)s days before now; three in five end completed, one in five abandoned, one in five are still active.
-- A few sessions run for months (completed recently with old events), and a few old sessions received
-- a late event after the cutoff: the cases a retention rule gets wrong first.
SET max_parallel_workers_per_gather = 0;  -- one plan, one order of random() calls
SELECT setseed(%(seed)s);

INSERT INTO parlant_agent (id, name, created_at)
SELECT md5('agent-' || g)::uuid, 'agent ' || g, %(now)s - make_interval(days => %(days)s + 35)
FROM generate_series(0, %(agents)s - 1) AS g;

INSERT INTO parlant_session (id, agent_id, status, started_at, last_activity_at, ended_at, created_at)
SELECT md5('session-' || g)::uuid, md5('agent-' || g %% %(agents)s)::uuid, status, started,
       coalesce(ended, %(now)s), ended, started
FROM (
    SELECT g, status, started,
           CASE WHEN status <> 'active'
                THEN least(started + power(random(), 6) * interval '150 days', %(now)s) END AS ended
    FROM (
        SELECT g, CASE WHEN r < 0.6 THEN 'completed' WHEN r < 0.8 THEN 'abandoned' ELSE 'active' END::session_status
                  AS status, %(now)s - random() * make_interval(days => %(days)s) AS started
        FROM (SELECT g, random() AS r FROM generate_series(0, %(sessions)s - 1) AS g) AS draws
    ) AS drawn
) AS sessions;

-- Stored session by session, or (time_ordered) in the order the events were created, as an application
-- appends them: then one day's events share pages, and a session's are spread over its lifetime's.
INSERT INTO parlant_event (id, session_id, "offset", event_type, content, created_at)
SELECT id, session_id, "offset", event_type, content, created_at FROM (
    SELECT g, md5('event-' || g)::uuid AS id, s.id AS session_id, g %% %(per_session)s AS "offset",
           (ARRAY['customer_message', 'agent_message', 'tool_call', 'tool_result'])[1 + g %% 4] AS event_type,
           jsonb_build_object('text', rpad(md5(g::text), %(content_bytes)s, md5(g::text))) AS content,
           CASE WHEN g %% %(per_session)s = %(per_session)s - 1 AND random() < 0.05
                THEN %(now)s - random() * interval '30 days'  -- a late event in an old session
                ELSE s.started_at + (g %% %(per_session)s)::float8 / %(per_session)s
                                    * (coalesce(s.ended_at, %(now)s) - s.started_at) END AS created_at
    FROM generate_series(0, %(events)s - 1) AS g
    JOIN parlant_session AS s ON s.id = md5('session-' || g / %(per_session)s)::uuid
) AS generated
ORDER BY CASE WHEN %(time_ordered)s THEN created_at END, g;

ANALYZE parlant_agent, parlant_session, parlant_event;
