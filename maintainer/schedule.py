"""Schedules as operators wrote them for pg_cron: 5-field cron, ``@daily``-style macros, or ``'30 seconds'``.

Differences between APScheduler 3.x and cron are corrected here rather than left to surprise anyone:
APScheduler numbers weekdays from Monday (cron: 0 and 7 are Sunday), and in a time zone with daylight
saving time its cron trigger fires twice at a wall-clock time that occurs twice on the autumn night, and
misses the first 00:xx run after the spring one (``WallClockCronTrigger``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

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


class WallClockCronTrigger(BaseTrigger):  # type: ignore[misc]
    """A cron schedule read on the wall clock of ``timezone``, as cron reads it, one fire time at a time.

    APScheduler 3's CronTrigger computes the next fire time from the previous one with the offset the
    previous one had, and so misses the first run at 00:xx after the clocks go forward (its issues 606 and
    529). This one finds the next matching wall-clock time by calendar arithmetic alone (APScheduler's
    cron fields, in UTC, where no day has a gap), then maps it to an instant:

    - a wall-clock time that happens once is that instant;
    - one the clocks skip (spring forward) runs when the clock jumps past it, as cron runs a job at a fixed
      time; a schedule whose minute or hour is a wildcard (``*``, ``*/15``) skips it, as cron does: its
      next time comes soon enough;
    - one that happens twice (fall back) runs at its first pass only: once per wall-clock time (where cron
      runs a wildcard schedule in both passes).
    """

    def __init__(self, timezone: tzinfo | str, **fields: str) -> None:
        self.timezone = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
        self._calendar = CronTrigger(timezone=UTC, **fields)
        self._fixed_time = not (fields["minute"].startswith("*") or fields["hour"].startswith("*"))

    def __str__(self) -> str:
        return f"cron[{self._calendar}] in {self.timezone}"

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        # As APScheduler's own triggers: after the previous fire time, or from now if that is earlier, but never
        # the previous fire time itself.
        start = now
        if previous_fire_time:
            start = min(now, previous_fire_time + timedelta(microseconds=1))
            if start == previous_fire_time:
                start += timedelta(microseconds=1)
        wall = start.astimezone(self.timezone).replace(tzinfo=None)
        while True:
            candidate = self._calendar.get_next_fire_time(None, wall.replace(tzinfo=UTC))
            if candidate is None:
                return None
            fire_time = _instant(candidate.replace(tzinfo=None), self.timezone, self._fixed_time)
            if fire_time is not None and fire_time >= start:
                return fire_time
            # Skipped by the clocks, or its first pass is over (the start lies in the repeated hour): the next.
            wall = candidate.replace(tzinfo=None) + timedelta(seconds=1)


def _instant(wall: datetime, zone: tzinfo, catch_up: bool) -> datetime | None:
    """The instant of a wall-clock time in ``zone``: its first pass if it happens twice; if it never happens,
    the end of the gap (when the clocks jump past it) with ``catch_up``, else None."""
    first, second = wall.replace(tzinfo=zone, fold=0), wall.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset() or _exists(first):
        return first.astimezone(zone)
    if not catch_up:
        return None
    # In a gap: fold=1 reads it with the later offset, an instant before the jump; fold=0 after it.
    low, high = second.astimezone(UTC), first.astimezone(UTC)
    while high - low > timedelta(microseconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return high.astimezone(zone)


def _exists(moment: datetime) -> bool:
    """Whether this wall-clock reading happens at all (a time in the spring-forward gap does not)."""
    return moment.astimezone(UTC).astimezone(moment.tzinfo).replace(tzinfo=None) == moment.replace(tzinfo=None)


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
        return WallClockCronTrigger(
            timezone, minute=minute, hour=hour, day=day, month=month, day_of_week=_weekdays(weekday)
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
