"""Schedules across daylight saving time, iterated as the daemon does and compared with an independent cron.

APScheduler asks the trigger for each next fire time from the previous one (``get_next_fire_time(previous,
now)``). Two years of that, in zones whose clocks change (at 01:00, 02:00, midnight, backwards, in zones
half an hour off), must give the times ``cronsim`` gives (Debian cron's rules); schedules that fire more than once
a day are iterated over the days around each change, where time zones matter. The one difference allowed is
the documented rule for a wall-clock time that happens twice: maintainer runs it once, at its first pass,
where cron runs a schedule with a wildcard hour in both passes. Lord Howe Island (clocks moved by half an
hour) and the Chatham Islands (at 02:45 and 03:45) are checked on their own below: cronsim 2.9 misses runs
on the one and loops forever on the other.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim

from maintainer.schedule import parse_schedule

ZONES = (
    "Europe/Berlin", "Europe/London", "Europe/Dublin", "Europe/Lisbon", "America/New_York", "America/Chicago",
    "America/Los_Angeles", "America/Santiago", "America/Havana", "America/St_Johns", "Australia/Sydney",
    "Australia/Adelaide", "Pacific/Auckland", "Europe/Chisinau", "Asia/Jerusalem",
    "Asia/Beirut", "Africa/Cairo", "UTC",
)
SCHEDULES = (
    "0 2 * * *", "0 3 * * 0", "0 */6 * * *", "0 4 1 * *", "0 5 * * 0",  # the built-in jobs'
    "0 0 * * *", "30 0 * * *", "0 1 * * *", "30 1 * * *", "30 2 * * *", "59 2 * * *", "45 23 * * *",
    "0 0 1 * *", "0 0 * * 0",
)
SEVERAL_A_DAY = ("15 * * * *", "0 */2 * * *", "45 */3 * * *")
START, END = datetime(2026, 1, 1), datetime(2028, 1, 1)


def as_the_daemon_iterates(expression: str, zone: ZoneInfo, start: datetime = START,
                           end: datetime = END) -> Iterator[datetime]:
    trigger = parse_schedule(expression, zone)
    fire_time = trigger.get_next_fire_time(None, start.replace(tzinfo=zone))
    while fire_time is not None and fire_time < end.replace(tzinfo=zone):
        yield fire_time
        fire_time = trigger.get_next_fire_time(fire_time, fire_time)


def as_cron_has_it(expression: str, zone: ZoneInfo, start: datetime = START, end: datetime = END) -> list[datetime]:
    reference = iter(CronSim(expression, start.replace(tzinfo=zone) - timedelta(microseconds=1)))
    return list(itertools.takewhile(lambda moment: moment < end.replace(tzinfo=zone), reference))


def changes(zone: ZoneInfo) -> list[datetime]:
    """The days the zone's clocks change on, from START to END."""
    days = [START + timedelta(days=offset) for offset in range((END - START).days + 1)]
    return [day for day, following in itertools.pairwise(days)
            if day.replace(tzinfo=zone).utcoffset() != following.replace(tzinfo=zone).utcoffset()]


def second_pass(moment: datetime, zone: ZoneInfo) -> bool:
    """The second time a wall-clock reading happens, in the hour the clocks go back over."""
    local = moment.astimezone(zone)
    return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()


def compare(expression: str, zone: ZoneInfo, start: datetime = START, end: datetime = END) -> None:
    ours = list(as_the_daemon_iterates(expression, zone, start, end))
    theirs = as_cron_has_it(expression, zone, start, end)

    assert ours, expression
    assert all(earlier < later for earlier, later in itertools.pairwise(ours)), expression
    extra = sorted(set(ours) - set(theirs))
    missing = [moment for moment in sorted(set(theirs) - set(ours)) if not second_pass(moment, zone)]
    assert (extra, missing) == ([], []), f"{expression!r} in {zone.key}"


@pytest.mark.parametrize("zone", ZONES)
def test_schedules_never_skip_or_double_a_run_across_daylight_saving_time(zone: str) -> None:
    timezone = ZoneInfo(zone)
    for expression in SCHEDULES:
        compare(expression, timezone)
    assert changes(timezone) or zone == "UTC"
    for day in changes(timezone):
        for expression in SEVERAL_A_DAY:
            compare(expression, timezone, day - timedelta(days=2), day + timedelta(days=3))


def test_on_lord_howe_island_the_half_hour_change_neither_skips_nor_doubles_a_run() -> None:
    # Clocks forward at 02:00 to 02:30 on 2026-10-04, back at 02:00 to 01:30 on 2026-04-05.
    lord_howe = ZoneInfo("Australia/Lord_Howe")

    def on(day: datetime, expression: str) -> list[str]:
        return [moment.strftime("%H:%M%z") for moment in as_the_daemon_iterates(
            expression, lord_howe, day, day + timedelta(days=1))]

    assert on(datetime(2026, 4, 5), "0 */6 * * *") == ["00:00+1100", "06:00+1030", "12:00+1030", "18:00+1030"]
    assert on(datetime(2026, 4, 5), "45 1 * * *") == ["01:45+1100"]  # 01:45 happens twice: once
    assert on(datetime(2026, 10, 4), "15 2 * * *") == ["02:30+1100"]  # 02:15 never happens: at the jump
    assert on(datetime(2026, 10, 4), "15 * * * *")[1:4] == ["01:15+1030", "03:15+1100", "04:15+1100"]  # as cron


def test_on_the_chatham_islands_the_changes_at_quarter_to_neither_skip_nor_double_a_run() -> None:
    # Clocks back at 03:45 to 02:45 on 2026-04-05, forward at 02:45 to 03:45 on 2026-09-27.
    chatham = ZoneInfo("Pacific/Chatham")

    def on(day: datetime, expression: str) -> list[str]:
        return [moment.strftime("%H:%M%z") for moment in as_the_daemon_iterates(
            expression, chatham, day, day + timedelta(days=1))]

    assert on(datetime(2026, 4, 5), "45 */3 * * *") == [
        "00:45+1345", "03:45+1245", "06:45+1245", "09:45+1245", "12:45+1245", "15:45+1245", "18:45+1245",
        "21:45+1245"]
    assert on(datetime(2026, 4, 5), "0 3 * * *") == ["03:00+1345"]  # 03:00 happens twice: once
    assert on(datetime(2026, 9, 27), "0 3 * * *") == ["03:45+1345"]  # 03:00 never happens: at the jump
    assert on(datetime(2026, 9, 27), "0 */3 * * *")[:2] == ["00:00+1245", "06:00+1345"]  # 03:00 skipped, as cron


def test_the_first_midnight_after_the_clocks_go_forward_is_not_skipped() -> None:
    # APScheduler 3's own cron trigger, iterated from the previous run, lost these two runs.
    berlin = ZoneInfo("Europe/Berlin")
    daily = parse_schedule("0 0 * * *", berlin)
    monthly = parse_schedule("0 0 1 * *", berlin)

    assert daily.get_next_fire_time(datetime(2026, 3, 29, tzinfo=berlin), datetime(2026, 3, 29, tzinfo=berlin)) \
        == datetime(2026, 3, 30, tzinfo=berlin)
    assert monthly.get_next_fire_time(datetime(2026, 3, 1, tzinfo=berlin), datetime(2026, 3, 1, tzinfo=berlin)) \
        == datetime(2026, 4, 1, tzinfo=berlin)


def test_a_fixed_time_the_clocks_skip_runs_when_they_jump_and_a_repeated_one_runs_once() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    nightly = parse_schedule("30 2 * * *", berlin)

    spring = nightly.get_next_fire_time(None, datetime(2026, 3, 29, 1, tzinfo=berlin))
    autumn = list(itertools.islice(as_the_daemon_iterates("30 2 * * *", berlin), 400))

    assert spring == datetime(2026, 3, 29, 3, 0, tzinfo=berlin)  # 02:30 never happens: at the jump, 03:00
    assert [moment for moment in autumn if moment.date() == datetime(2026, 10, 25).date()] == [
        datetime(2026, 10, 25, 2, 30, tzinfo=berlin)]  # 02:30 happens twice: the first one
