"""Prometheus metrics of the daemon, every name prefixed ``maintainer_``.

The runner reports each run's outcome here; the HTTP listener serves them at ``/metrics``. The job a
series is about is its ``maintenance_job`` label, never ``job`` or ``instance``: Prometheus gives those two
to the scrape target and renames a scraped label of the same name to ``exported_job``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from maintainer.job import Outcome, SkipReason

# A ``_created`` series per counter doubles what Prometheus stores and no rule here reads it.
disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY = CollectorRegistry()
LABEL = "maintenance_job"

RUNS = Counter("maintainer_runs", "Finished runs by job and outcome (succeeded, failed, cancelled).",
               [LABEL, "outcome"], registry=REGISTRY)
SKIPS = Counter("maintainer_skips", "Scheduled runs that did not run: another run held the lock (lock_held),"
                " another replica already ran it (already_ran), this process's previous run was still running"
                " (still_running), or the scheduler was too late for it (missed).", [LABEL, "reason"],
                registry=REGISTRY)
RETRIES = Counter("maintainer_retries", "Attempts that failed transiently and were retried.", [LABEL],
                  registry=REGISTRY)
DURATION = Histogram("maintainer_run_duration_seconds", "Duration of finished runs.", [LABEL],
                     buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600), registry=REGISTRY)
LAST_SUCCESS = Gauge("maintainer_last_success_timestamp_seconds",
                     "Unix time of the job's last success known to this process (its own, or the run history's"
                     " at start); 0 when it never succeeded.", [LABEL], registry=REGISTRY)
INTERVAL = Gauge("maintainer_job_interval_seconds", "The time between two scheduled runs of the job.", [LABEL],
                 registry=REGISTRY)
ROWS_DELETED = Counter("maintainer_rows_deleted", "Rows deleted by the retention cleanup.", [LABEL],
                       registry=REGISTRY)
OVERDUE = Gauge("maintainer_job_overdue", "1 while the job has not succeeded within its interval plus grace.",
                [LABEL], registry=REGISTRY)
PG_CRON_OVERLAP = Gauge("maintainer_pg_cron_overlap", "1 while an active pg_cron job of this database does the job's"
                        " work too: both would run it.", [LABEL], registry=REGISTRY)
HEARTBEAT = Gauge("maintainer_heartbeat_timestamp_seconds", "Unix time of the daemon's last heartbeat.",
                  registry=REGISTRY)
STARTED = Gauge("maintainer_start_timestamp_seconds", "Unix time the daemon started.", registry=REGISTRY)


def declare(job: str, interval: timedelta, last_success: datetime | None) -> None:
    """Create the job's series before its first run, so that rate(), absent() and a staleness rule see every
    enabled job from the start: a job that never succeeded shows a last success of 0."""
    for outcome in Outcome:
        RUNS.labels(job, outcome)
    for reason in SkipReason:
        SKIPS.labels(job, reason)
    RETRIES.labels(job)
    DURATION.labels(job)
    ROWS_DELETED.labels(job)
    OVERDUE.labels(job).set(0)
    PG_CRON_OVERLAP.labels(job).set(0)
    INTERVAL.labels(job).set(interval.total_seconds())
    LAST_SUCCESS.labels(job).set(last_success.timestamp() if last_success else 0)
