"""Schedules as operators wrote them for pg_cron: when they fire, and how a bad one is refused.

No database: the times come from the trigger alone, after a fixed moment, never from the wall clock.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from maintainer.errors import ConfigError
from maintainer.schedule import expected_interval, next_fire_times, parse_schedule
from tests.support.settings import load_settings

BERLIN = ZoneInfo("Europe/Berlin")
SUNDAY = 6  # date.weekday()


def fire_times(expression: str, after: datetime, count: int, timezone: str = "UTC") -> list[datetime]:
    return next_fire_times(parse_schedule(expression, timezone), after, count)


def on_the_wall_clock(moment: datetime, zone: tzinfo) -> datetime:
    """The local time a clock on the wall shows; via UTC, so a time the clocks skipped comes out as it really is."""
    return moment.astimezone(UTC).astimezone(zone)


def local_days(times: list[datetime], zone: tzinfo) -> list[date]:
    return [on_the_wall_clock(moment, zone).date() for moment in times]


def gaps(times: list[datetime]) -> list[timedelta]:
    return [later - earlier for earlier, later in pairwise(times)]


def test_daily_run_happens_once_on_the_night_the_clocks_go_back() -> None:
    # 2026-10-25 in Berlin: 03:00 CEST becomes 02:00 CET, so 02:30 happens twice; cron runs the first.
    times = fire_times("30 2 * * *", datetime(2026, 10, 24, 12, tzinfo=BERLIN), 3, "Europe/Berlin")

    assert local_days(times, BERLIN) == [date(2026, 10, 25), date(2026, 10, 26), date(2026, 10, 27)]
    assert [moment.astimezone(UTC) for moment in times] == [
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),  # 02:30 CEST, the first pass
        datetime(2026, 10, 26, 1, 30, tzinfo=UTC),  # 02:30 CET
        datetime(2026, 10, 27, 1, 30, tzinfo=UTC),
    ]


def test_daily_run_still_happens_on_the_night_the_clocks_go_forward() -> None:
    # 2026-03-29 in Berlin: 02:00 CET becomes 03:00 CEST, so 02:30 never happens on the wall clock.
    times = fire_times("30 2 * * *", datetime(2026, 3, 28, 12, tzinfo=BERLIN), 3, "Europe/Berlin")

    assert local_days(times, BERLIN) == [date(2026, 3, 29), date(2026, 3, 30), date(2026, 3, 31)]
    on_the_short_night = on_the_wall_clock(times[0], BERLIN).time()
    assert time(3) <= on_the_short_night < time(4)  # within the hour after the jump
    assert [on_the_wall_clock(moment, BERLIN).time() for moment in times[1:]] == [time(2, 30), time(2, 30)]


@pytest.mark.parametrize("weekday", ["0", "7", "sun", "SUN"])
def test_weekday_zero_and_seven_are_sunday_as_in_cron(weekday: str) -> None:
    # APScheduler 3 numbers weekdays from Monday: without the translation, 0 would be Monday.
    times = fire_times(f"0 5 * * {weekday}", datetime(2026, 1, 1, tzinfo=UTC), 3)

    assert times == [datetime(2026, 1, day, 5, tzinfo=UTC) for day in (4, 11, 18)]
    assert {moment.weekday() for moment in times} == {SUNDAY}


def test_monday_to_friday_skips_the_weekend() -> None:
    times = fire_times("0 0 * * 1-5", datetime(2026, 1, 3, tzinfo=UTC), 10)  # from Saturday 3 January

    assert local_days(times, UTC) == [date(2026, 1, day) for day in (5, 6, 7, 8, 9, 12, 13, 14, 15, 16)]


def test_a_weekday_range_ending_at_zero_wraps_to_sunday() -> None:
    times = fire_times("0 0 * * 5-0", datetime(2026, 1, 1, tzinfo=UTC), 6)  # from Thursday 1 January

    assert local_days(times, UTC) == [date(2026, 1, day) for day in (2, 3, 4, 9, 10, 11)]  # Fri, Sat, Sun


@pytest.mark.parametrize(
    ("macro", "expected"),
    [
        ("@hourly", [datetime(2026, 1, 14, hour, tzinfo=UTC) for hour in (11, 12, 13)]),
        ("@daily", [datetime(2026, 1, day, tzinfo=UTC) for day in (15, 16, 17)]),
        ("@weekly", [datetime(2026, 1, 18, tzinfo=UTC), datetime(2026, 1, 25, tzinfo=UTC),
                     datetime(2026, 2, 1, tzinfo=UTC)]),  # Sundays at midnight
        ("@monthly", [datetime(2026, month, 1, tzinfo=UTC) for month in (2, 3, 4)]),
    ],
)
def test_macros_fire_as_in_cron(macro: str, expected: list[datetime]) -> None:
    after = datetime(2026, 1, 14, 10, 20, tzinfo=UTC)  # a Wednesday morning

    assert fire_times(macro, after, 3) == expected


@pytest.mark.parametrize("expression", ["30 seconds", "'30 seconds'", " '30  SECONDS' "])
def test_pg_cron_interval_fires_every_thirty_seconds(expression: str) -> None:
    times = fire_times(expression, datetime(2026, 1, 1, tzinfo=UTC), 4)

    assert gaps(times) == [timedelta(seconds=30)] * 3


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("61 * * * *", "maximum value (59)"),
        ("bogus", "use 5-field cron"),
        ("0 0 1 * 1", "restricts both the day of month and the day of week"),
        ("0 0 * * 8", "day of week '8' is not 0-7"),
        ("0 seconds", "at least 1 second"),
    ],
)
def test_invalid_schedule_is_refused_quoting_it(expression: str, reason: str) -> None:
    with pytest.raises(ValueError) as refusal:
        parse_schedule(expression)

    assert repr(expression) in str(refusal.value)
    assert reason in str(refusal.value)


@pytest.mark.parametrize(
    ("expression", "interval"),
    [("@monthly", timedelta(days=31)), ("0 */6 * * *", timedelta(hours=6))],
)
def test_expected_interval_is_the_longest_gap_between_runs(expression: str, interval: timedelta) -> None:
    assert expected_interval(parse_schedule(expression), datetime(2026, 1, 15, tzinfo=UTC)) == interval


def test_invalid_schedule_of_a_built_in_job_names_the_setting_and_the_expression() -> None:
    with pytest.raises(ConfigError) as refusal:
        load_settings(jobs={"cleanup_old_events": {"schedule": "61 * * * *"}})

    assert "jobs.cleanup_old_events.schedule" in str(refusal.value)
    assert "'61 * * * *'" in str(refusal.value)


def test_invalid_schedule_of_a_custom_job_names_the_setting_and_the_expression() -> None:
    with pytest.raises(ConfigError) as refusal:
        load_settings(custom_jobs={"nightly-vacuum": {"schedule": "bogus", "sql": "VACUUM parlant_event"}})

    assert "custom_jobs.nightly-vacuum.schedule" in str(refusal.value)
    assert "'bogus'" in str(refusal.value)


@pytest.mark.parametrize("name", ["cleanup-old-events", "cleanup_old_events", "update_statistics"])
def test_custom_job_may_not_take_the_name_of_a_built_in_job(name: str) -> None:
    with pytest.raises(ConfigError) as refusal:
        load_settings(custom_jobs={name: {"schedule": "@daily", "sql": "SELECT 1"}})

    assert f"custom job name {name!r} is taken by a built-in job" in str(refusal.value)


@pytest.mark.parametrize("name", ["Nightly", "night job", "vacuum;drop", "-vacuum", "vacuum.events", ""])
def test_custom_job_name_must_be_lowercase_letters_digits_dashes_and_underscores(name: str) -> None:
    with pytest.raises(ConfigError) as refusal:
        load_settings(custom_jobs={name: {"schedule": "@daily", "sql": "SELECT 1"}})

    assert f"custom job name {name!r}: use lowercase letters, digits, - and _" in str(refusal.value)


def test_custom_job_with_a_valid_name_and_schedule_is_accepted() -> None:
    settings = load_settings(custom_jobs={"vacuum-2_events": {"schedule": "'30 seconds'", "sql": "SELECT 1"}})

    assert settings.job_settings("vacuum-2_events").schedule == "'30 seconds'"
