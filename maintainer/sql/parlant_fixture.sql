-- The Parlant tables as maintainer meets them in production, reduced to what maintenance touches.
-- Facts kept from the application's migrations: UUID ids, TIMESTAMP WITHOUT TIME ZONE, the session
-- status enum, the quoted "offset" column, events cascading from sessions, and the same indexes.
CREATE TYPE session_status AS ENUM ('active', 'completed', 'abandoned');

CREATE TABLE parlant_agent (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL,
    created_at timestamp NOT NULL DEFAULT now()
);

CREATE TABLE parlant_session (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id         uuid NOT NULL REFERENCES parlant_agent (id) ON DELETE CASCADE,
    status           session_status NOT NULL DEFAULT 'active',
    started_at       timestamp NOT NULL DEFAULT now(),
    last_activity_at timestamp NOT NULL DEFAULT now(),
    ended_at         timestamp,
    created_at       timestamp NOT NULL DEFAULT now()
);
CREATE INDEX parlant_session_agent_id_idx ON parlant_session (agent_id);
CREATE INDEX parlant_session_status_idx ON parlant_session (status);

CREATE TABLE parlant_event (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id uuid NOT NULL REFERENCES parlant_session (id) ON DELETE CASCADE,
    "offset"   integer NOT NULL,
    event_type text NOT NULL DEFAULT 'customer_message',
    content    jsonb NOT NULL DEFAULT '{}',
    created_at timestamp NOT NULL DEFAULT now()
);
CREATE INDEX parlant_event_session_id_idx ON parlant_event (session_id);
CREATE UNIQUE INDEX parlant_event_session_offset_idx ON parlant_event (session_id, "offset");
CREATE INDEX parlant_event_created_at_idx ON parlant_event (created_at);
CREATE INDEX parlant_event_timeline_idx ON parlant_event (session_id, created_at, event_type);

-- Daily per-agent analytics, refreshed monthly; the unique index makes REFRESH ... CONCURRENTLY possible.
CREATE MATERIALIZED VIEW parlant_agent_analytics_daily AS
SELECT s.agent_id, e.created_at::date AS day, count(DISTINCT s.id) AS sessions, count(*) AS events
FROM parlant_event AS e JOIN parlant_session AS s ON s.id = e.session_id
GROUP BY s.agent_id, e.created_at::date;
CREATE UNIQUE INDEX parlant_agent_analytics_daily_key ON parlant_agent_analytics_daily (agent_id, day);

-- A healthy version of the guide's function: work a function may do (no CONCURRENTLY inside it).
CREATE FUNCTION maintain_parlant_indexes() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    REINDEX INDEX parlant_event_created_at_idx;
    ANALYZE parlant_agent, parlant_session, parlant_event;
END
$$;
