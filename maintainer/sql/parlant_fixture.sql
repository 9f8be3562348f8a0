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
