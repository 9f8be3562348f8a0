-- The run history (history.table): one row a finished real run. The names are composed with psycopg.sql.
CREATE TABLE IF NOT EXISTS {table} (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job           text NOT NULL,
    run_id        uuid NOT NULL,
    host          text NOT NULL,
    started_at    timestamptz NOT NULL,
    ended_at      timestamptz NOT NULL,
    status        text NOT NULL CHECK (status IN ('succeeded', 'failed', 'cancelled')),
    attempts      integer NOT NULL,
    rows_affected bigint,
    sqlstate      text,
    error         text,
    stop_reason   text,
    result        jsonb
);
CREATE INDEX IF NOT EXISTS {index} ON {table} (job, started_at DESC);
