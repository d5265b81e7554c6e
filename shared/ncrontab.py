"""NCRONTAB schedules (the Functions timer syntax): validate one, and find its latest occurrence.

The Functions host owns the timer; the app only needs each run's *slot*, the scheduled occurrence the run
belongs to, so that two runs of the same occurrence (a past-due rerun, a restart, an overlap) derive the
same command ids and the queue's duplicate detection keeps one of them (docs/design.md, "Fleet operations").

Six fields, ``{second} {minute} {hour} {day} {month} {day-of-week}``, each ``*``, a number, a range
``a-b``, a step ``*/n`` / ``a-b/n`` / ``a/n``, or a comma-separated list of those; months and days of the
week may be named (``Jan``, ``Mon-Fri``; 0 and 7 are Sunday). When both day fields are restricted, both
must match. Times are UTC (Flex Consumption has no time-zone setting).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from typing import Final, NamedTuple

_MONTHS: Final = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS: Final = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# (name, lowest, highest, names starting at `lowest`)
_FIELDS: Final = (
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 7, _DAYS),
)
_PART: Final = re.compile(r"(?P<range>\*|\?|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/(?P<step>[0-9]+))?")
# How far back a latest occurrence is looked for: 28 years covers every day/month/weekday combination.
_SEARCH_DAYS: Final = 28 * 366


class ScheduleError(ValueError):
    """Not an NCRONTAB expression; the message says which field and why."""


class Schedule(NamedTuple):
    text: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday ... 6 = Saturday

    def latest(self, now: datetime) -> datetime | None:
        """The latest occurrence at or before ``now`` (UTC, whole seconds); None if none in 28 years."""
        now = now.astimezone(UTC).replace(microsecond=0)
        for back in range(_SEARCH_DAYS):
            day = now.date() - timedelta(days=back)
            if day.day not in self.days or day.month not in self.months:
                continue
            if (day.isoweekday() % 7) not in self.weekdays:
                continue
            moment = self._latest_time(now.time() if back == 0 else time(23, 59, 59))
            if moment is not None:
                return datetime.combine(day, moment, tzinfo=UTC)
        return None

    def _latest_time(self, limit: time) -> time | None:
        for hour in sorted(self.hours, reverse=True):
            if hour > limit.hour:
                continue
            for minute in sorted(self.minutes, reverse=True):
                if hour == limit.hour and minute > limit.minute:
                    continue
                for second in sorted(self.seconds, reverse=True):
                    if (hour, minute) == (limit.hour, limit.minute) and second > limit.second:
                        continue
                    return time(hour, minute, second)
        return None


def parse(text: str) -> Schedule:
    """Read a six-field NCRONTAB expression; raise ScheduleError naming what is wrong."""
    fields = text.split()
    if len(fields) != 6:
        raise ScheduleError(f"has {len(fields)} fields; NCRONTAB has six")
    sets = [_field(raw.lower(), *spec) for raw, spec in zip(fields, _FIELDS, strict=True)]
    weekdays = frozenset(day % 7 for day in sets[5])
    return Schedule(text, sets[0], sets[1], sets[2], sets[3], sets[4], weekdays)


def _field(raw: str, name: str, lowest: int, highest: int, names: tuple[str, ...]) -> frozenset[int]:
    values: set[int] = set()
    for part in raw.split(","):
        match = _PART.fullmatch(part)
        if match is None:
            raise ScheduleError(f"{name} field {raw!r} is not a number, range, step or list")
        if match["range"] in ("*", "?"):
            start, end = lowest, highest
        else:
            first, _, last = match["range"].partition("-")
            start = _value(first, name, lowest, highest, names)
            end = _value(last, name, lowest, highest, names) if last else (highest if match["step"] else start)
        step = int(match["step"]) if match["step"] else 1
        if step < 1 or start > end:
            raise ScheduleError(f"{name} field {raw!r} has an empty range or a zero step")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _value(text: str, name: str, lowest: int, highest: int, names: tuple[str, ...]) -> int:
    if text.isdigit() and len(text) <= 2:
        value = int(text)
    elif names and (text in names or text in _FULL_NAMES) and text[:3] in names:
        value = names.index(text[:3]) + lowest
    else:
        raise ScheduleError(f"{name} value {text!r} is not a number or a name")
    if not lowest <= value <= highest:
        raise ScheduleError(f"{name} value {value} is outside {lowest}-{highest}")
    return value


_FULL_NAMES: Final = frozenset(
    {
        "january", "february", "march", "april", "june", "july", "august", "september", "october",
        "november", "december", "sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
    }
)  # fmt: skip


def slot(schedule: str, now: datetime) -> str:
    """The run slot of ``now`` under ``schedule``: its latest occurrence as ``YYYYMMDDTHHMMSSZ``.

    An expression that cannot be read, or that has no occurrence in 28 years, gives ``now`` to the second.
    """
    try:
        occurrence = parse(schedule).latest(now)
    except ScheduleError:
        occurrence = None
    moment = occurrence or now.astimezone(UTC).replace(microsecond=0)
    return moment.strftime("%Y%m%dT%H%M%SZ")
