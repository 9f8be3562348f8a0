-- Per job: its last run and status, its last success, its last failure and that failure's error.
SELECT DISTINCT ON (job) job, started_at AS last_run_at, status AS last_status,
    (SELECT max(s.ended_at) FROM {table} AS s WHERE s.job = h.job AND s.status = 'succeeded') AS last_success_at,
    (SELECT f.ended_at FROM {table} AS f WHERE f.job = h.job AND f.status = 'failed'
     ORDER BY f.started_at DESC LIMIT 1) AS last_error_at,
    (SELECT f.error FROM {table} AS f WHERE f.job = h.job AND f.status = 'failed'
     ORDER BY f.started_at DESC LIMIT 1) AS last_error
FROM {table} AS h ORDER BY job, started_at DESC
