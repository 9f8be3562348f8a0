"""Jobs that have not succeeded for longer than they should: each job's expected interval plus a grace.

The daemon checks every ``scheduler.overdue_check_interval``, counting the successes of every replica
(from the run history), and says so with ``job_overdue`` and ``maintainer_job_overdue``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any


def overdue_jobs(
    now: datetime, intervals: dict[str, timedelta], last_success: dict[str, datetime | None],
    watching_since: datetime, grace: timedelta,
) -> dict[str, dict[str, Any]]:
    """Jobs that have not succeeded within their expected interval plus ``grace``, with the fields of their
    ``job_overdue`` line.

    A job that never succeeded is measured from ``watching_since`` (the daemon's start), so a fresh
    deployment is not overdue at once.
    """
    overdue = {}
    for job, interval in intervals.items():
        reference = last_success.get(job) or watching_since
        if now - reference > interval + grace:
            overdue[job] = {
                "last_success_at": last_success.get(job), "expected_interval_s": interval.total_seconds(),
                "overdue_by_s": round((now - reference - interval - grace).total_seconds()),
            }
    return overdue
