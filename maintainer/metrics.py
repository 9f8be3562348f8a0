"""Prometheus metrics of the daemon, every name prefixed ``maintainer_``.

The runner reports each run's outcome here; the HTTP listener serves them at ``/metrics``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()

RUNS = Counter("maintainer_runs", "Finished runs by job and outcome (succeeded, failed, cancelled).",
               ["job", "outcome"], registry=REGISTRY)
SKIPS = Counter("maintainer_skips", "Runs skipped because another run held the lock or already ran.",
                ["job", "reason"], registry=REGISTRY)
RETRIES = Counter("maintainer_retries", "Attempts that failed transiently and were retried.", ["job"],
                  registry=REGISTRY)
DURATION = Histogram("maintainer_run_duration_seconds", "Duration of finished runs.", ["job"],
                     buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600), registry=REGISTRY)
LAST_SUCCESS = Gauge("maintainer_last_success_timestamp_seconds", "Unix time of the job's last success here.",
                     ["job"], registry=REGISTRY)
ROWS_DELETED = Counter("maintainer_rows_deleted", "Rows deleted by the retention cleanup.", ["job"],
                       registry=REGISTRY)
OVERDUE = Gauge("maintainer_job_overdue", "1 while the job has not succeeded within its interval plus grace.",
                ["job"], registry=REGISTRY)
HEARTBEAT = Gauge("maintainer_heartbeat_timestamp_seconds", "Unix time of the daemon's last heartbeat.",
                  registry=REGISTRY)


def declare(job: str) -> None:
    """Create the job's series at zero, so that rate() and absent() work before its first run."""
    for outcome in ("succeeded", "failed", "cancelled"):
        RUNS.labels(job, outcome)
    for reason in ("lock_held", "already_ran"):
        SKIPS.labels(job, reason)
    RETRIES.labels(job)
    DURATION.labels(job)
    ROWS_DELETED.labels(job)
    OVERDUE.labels(job).set(0)
