"""The overdue rule: a job is overdue once its expected interval plus the grace has passed since its last
success (or since the daemon started watching, for a job that never succeeded)."""

from __future__ import annotations

from datetime import datetime, timedelta

from maintainer.overdue import overdue_jobs
from tests.support.parlant import NOW

DAY, GRACE = timedelta(days=1), timedelta(hours=1)


def test_job_that_never_succeeded_is_measured_from_when_the_daemon_started() -> None:
    assert overdue_jobs(NOW, {"daily": DAY}, {}, NOW - timedelta(hours=24), GRACE) == {}
    assert overdue_jobs(NOW, {"daily": DAY}, {"daily": None}, NOW - timedelta(hours=26), GRACE) == {
        "daily": {"last_success_at": None, "expected_interval_s": 86400.0, "overdue_by_s": 3600}
    }


def test_job_that_succeeded_within_its_interval_is_not_overdue() -> None:
    last_success: dict[str, datetime | None] = {"daily": NOW - timedelta(hours=23)}

    assert overdue_jobs(NOW, {"daily": DAY}, last_success, NOW - timedelta(days=30), GRACE) == {}


def test_job_is_overdue_once_its_interval_and_the_grace_have_passed_since_its_last_success() -> None:
    just_within: dict[str, datetime | None] = {"daily": NOW - DAY - GRACE}
    past: dict[str, datetime | None] = {"daily": NOW - DAY - GRACE - timedelta(seconds=90)}

    assert overdue_jobs(NOW, {"daily": DAY}, just_within, NOW - timedelta(days=30), GRACE) == {}
    assert overdue_jobs(NOW, {"daily": DAY}, past, NOW - timedelta(days=30), GRACE) == {
        "daily": {"last_success_at": past["daily"], "expected_interval_s": 86400.0, "overdue_by_s": 90}
    }


