-- Every pg_cron job the role may see, with the last outcome cron.job_run_details has of it (NULLs where that
-- table does not exist).
SELECT j.jobid, j.jobname, j.schedule, j.command, j.database, j.username, j.active,
       last.status AS last_status, last.start_time AS last_start, last.return_message AS last_message
FROM cron.job AS j
LEFT JOIN LATERAL ({last_run}) AS last ON true
ORDER BY j.jobid
