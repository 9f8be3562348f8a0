"""Schedules as operators wrote them for pg_cron: 5-field cron, ``@daily``-style macros, or ``'30 seconds'``.

Two differences between APScheduler 3.x and cron are corrected here rather than left to surprise anyone:
APScheduler numbers weekdays from Monday (cron: 0 and 7 are Sunday), and in a time zone with daylight
saving time it fires twice at a wall-clock time that occurs twice on the autumn night.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo
from itertools import pairwise
from typing import Any

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_INTERVAL = re.compile(r"^(\d+)\s+(second|minute|hour)s?$")
_INTERVAL_ANCHOR = datetime(2000, 1, 1, tzinfo=UTC)
_WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


class _WallClockCronTrigger(CronTrigger):  # type: ignore[misc]
    """A cron trigger that fires once per wall-clock time, also on the night the clocks go back.

    Like cron, it skips the second pass through the repeated hour (``fold=1``): a daily 02:30 run
    happens once, not twice.
    """

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        fire_time: datetime | None = super().get_next_fire_time(previous_fire_time, now)
        while fire_time is not None and _second_pass(fire_time):
            # APScheduler 3.x ignores fold: ask again from past the repeated hour.
            repeated = fire_time.replace(fold=0).utcoffset() - fire_time.utcoffset()  # type: ignore[operator]
            fire_time = super().get_next_fire_time(None, fire_time + repeated)
        return fire_time


def _second_pass(moment: datetime) -> bool:
    return moment.fold == 1 and moment.utcoffset() != moment.replace(fold=0).utcoffset()


def parse_schedule(expression: str, timezone: tzinfo | str = "UTC") -> BaseTrigger:
    """The trigger for ``expression``, or ValueError saying what is accepted."""
    text = " ".join(expression.strip().strip("'").lower().split())
    if match := _INTERVAL.match(text):
        amount, unit = int(match[1]), match[2]
        if amount < 1:
            raise ValueError(f"{expression!r}: an interval must be at least 1 {unit}")
        # Anchored to a fixed instant, so that every replica computes the same run times.
        return IntervalTrigger(**{f"{unit}s": amount}, start_date=_INTERVAL_ANCHOR, timezone=timezone)
    fields = MACROS.get(text, text).split()
    if len(fields) != 5:
        raise ValueError(
            f"{expression!r} is not a schedule: use 5-field cron ('0 2 * * *'), @hourly, @daily, @weekly,"
            " @monthly, or an interval ('30 seconds', '10 minutes')"
        )
    minute, hour, day, month, weekday = fields
    if day != "*" and weekday != "*":
        raise ValueError(
            f"{expression!r} restricts both the day of month and the day of week, which cron reads as"
            " 'either' and APScheduler as 'both': split it into two jobs"
        )
    try:
        return _WallClockCronTrigger(
            minute=minute, hour=hour, day=day, month=month, day_of_week=_weekdays(weekday), timezone=timezone
        )
    except ValueError as error:
        raise ValueError(f"{expression!r}: {error}") from None


def _weekdays(field: str) -> str:
    """Cron's day-of-week field (0 or 7 is Sunday) as APScheduler's weekday names."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        span, _, step = part.partition("/")
        if span == "*":
            first, last = 0, 6
        else:
            start, _, end = span.partition("-")
            first = _weekday_number(start)
            last = _weekday_number(end) if end else (6 if step else first)
        if last == 0 and first > 0:
            last = 7  # "5-0" and "5-7" both run to Sunday
        days.update(day % 7 for day in range(first, last + 1, int(step or 1)))
    return ",".join(_WEEKDAYS[day] for day in sorted(days))


def _weekday_number(token: str) -> int:
    if token in _WEEKDAYS:
        return _WEEKDAYS.index(token)
    if token.isdigit() and int(token) <= 7:
        return int(token)
    raise ValueError(f"day of week {token!r} is not 0-7 or sun..sat")


def next_fire_times(trigger: BaseTrigger, after: datetime, count: int) -> list[datetime]:
    times: list[datetime] = []
    previous: Any = None
    now = after
    for _ in range(count):
        fire_time = trigger.get_next_fire_time(previous, now)
        if fire_time is None:
            break
        times.append(fire_time)
        previous, now = fire_time, fire_time + timedelta(microseconds=1)
    return times


def expected_interval(trigger: BaseTrigger, now: datetime) -> timedelta:
    """The longest gap between the next few runs: how long a healthy job may go without a success."""
    times = next_fire_times(trigger, now, 6)
    return max((later - earlier for earlier, later in pairwise(times)), default=timedelta(days=1))


def last_fire_time(trigger: BaseTrigger, now: datetime) -> datetime | None:
    """The latest scheduled time at or before ``now``: the run the scheduler is firing now is for it."""
    lookback = now - 2 * expected_interval(trigger, now)
    return max((time for time in next_fire_times(trigger, lookback, 16) if time <= now), default=None)
