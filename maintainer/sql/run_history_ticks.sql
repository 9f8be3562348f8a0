-- The claims of scheduled runs: one row a job, its last claimed scheduled time and the run that claimed it.
-- The table's name is composed with psycopg.sql from history.table.
CREATE TABLE IF NOT EXISTS {ticks} (
    job    text PRIMARY KEY,
    tick   timestamptz NOT NULL,
    run_id uuid NOT NULL
)
