"""The calendar's configuration: zone, cutoff times, weekdays, holidays, closures.

The support agreement creates cases "from emails received before 9:30 AM and
before 3:30 PM Eastern, Monday-Friday" (docs/design.md §1).  A cutoff is a local
wall-clock time on a business day of the calendar's zone; a mail joins the
first cutoff strictly after it was received, so a mail received exactly at
09:30:00 waits for 15:30.

Every function takes the instant it reasons about as an argument and returns
aware UTC datetimes (docs/design.md §4); nothing here reads the clock.

Cutoffs are built from the local date as ``datetime(y, m, d, hh, mm,
tzinfo=zone)``, never by adding 24 hours: across 2026-03-08 a day in New York is
23 real hours long (docs/design.md §6).  That construction is only exact when the time
exists once on every date, so a cutoff in a daylight-saving gap or fold of the
zone is rejected when the configuration is loaded.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_lib
from pydantic import model_validator

from mailcase.config.base import Frozen

__all__ = ["CalendarConfig", "parse_hhmm"]

#: how the agreement's readers name the usual zones
ZONE_NAMES = {
    "America/New_York": "Eastern", "America/Chicago": "Central", "America/Denver": "Mountain",
    "America/Phoenix": "Mountain", "America/Los_Angeles": "Pacific", "America/Anchorage": "Alaska",
    "Pacific/Honolulu": "Hawaii", "Europe/London": "UK", "Europe/Berlin": "Central European",
    "Europe/Paris": "Central European", "UTC": "UTC",
}

# The range in which the zone's offset changes are searched for gaps and
# folds.  Before 1970 nearly every zone has local-mean-time and wartime changes
# at odd hours (New York's 1883 switch folds 12:00-12:03:58), which would
# forbid harmless cutoffs for dates mailcase never computes.  After the last
# explicit transition tzdata repeats a yearly rule, so 2100 covers the rule
# and every explicitly predicted change (Morocco's run to 2087).
_CHECK_FROM = datetime(1970, 1, 1, tzinfo=UTC)
_CHECK_UNTIL = datetime(2100, 1, 1, tzinfo=UTC)
# Transitions in tzdata since 1970 are at least 166 hours apart (tzdata 2025b,
# all 599 zones), so sampling every 12 hours cannot step over a change and its
# reversal; the scan found exactly zoneinfo's own transition table.
_SCAN_STEP = timedelta(hours=12)

_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
_YYYY_MM_DD = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def _show(value: object) -> str:
    """A configured value as it goes in an error message."""
    if isinstance(value, str) and value and value.strip() == value:
        return value
    return repr(value)


def _cutoff_text(value: object) -> object:
    # an unquoted TOML local time (09:30:00) arrives as datetime.time
    if isinstance(value, time):
        if value.tzinfo is not None or value.second or value.microsecond:
            raise ValueError(f"cutoffs: {value.isoformat()} is not a time HH:MM")
        return f"{value.hour:02d}:{value.minute:02d}"
    return value


def _closure_date(value: object) -> date:
    # datetime is a subclass of date: an unquoted TOML date-time must not pass
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _YYYY_MM_DD.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"closures: {_show(value)} is not a date YYYY-MM-DD")


def parse_hhmm(text: str) -> time:
    m = _HHMM.match(text)
    if m is None:
        raise ValueError(f"cutoffs: {_show(text)} is not a time HH:MM")
    return time(int(m.group(1)), int(m.group(2)))


@dataclass(frozen=True)
class _OffsetChange:
    """One change of a zone's UTC offset, as the local clock sees it."""

    at: datetime  # UTC instant of the change
    before: timedelta
    after: timedelta

    @property
    def is_gap(self) -> bool:
        return self.after > self.before

    @property
    def window(self) -> tuple[datetime, datetime]:
        """Naive local [start, end): skipped (gap) or shown twice (fold)."""
        utc = self.at.replace(tzinfo=None)
        return utc + min(self.before, self.after), utc + max(self.before, self.after)

    def covers(self, t: time) -> datetime | None:
        """The local datetime at which ``t`` falls inside the window, if any."""
        start, end = self.window
        if end - start >= timedelta(days=1):  # a skipped day (Pacific/Apia 2011)
            return datetime.combine(start.date(), t)
        # naive datetimes: this is wall-clock arithmetic, which is what we want
        first = datetime.combine(start.date(), t)
        if first < start:
            first += timedelta(days=1)
        return first if first < end else None


def _offset_at(zone: ZoneInfo, ts: int) -> timedelta:
    offset = datetime.fromtimestamp(ts, zone).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset


@functools.lru_cache(maxsize=64)
def _offset_changes(key: str) -> tuple[_OffsetChange, ...]:
    """Every UTC-offset change of zone ``key`` between _CHECK_FROM and _CHECK_UNTIL.

    zoneinfo has no public list of transitions, so the offset is sampled and
    each change is narrowed to the second by bisection (tzdata transitions
    are on whole seconds).
    """
    zone = ZoneInfo(key)
    changes: list[_OffsetChange] = []
    step = int(_SCAN_STEP.total_seconds())
    lo = int(_CHECK_FROM.timestamp())
    lo_offset = _offset_at(zone, lo)
    until = int(_CHECK_UNTIL.timestamp())
    while lo < until:
        hi = min(lo + step, until)
        hi_offset = _offset_at(zone, hi)
        if hi_offset == lo_offset:
            lo = hi
            continue
        # invariant: offset(a) == lo_offset, offset(b) != lo_offset
        a, b = lo, hi
        while b - a > 1:
            mid = (a + b) // 2
            if _offset_at(zone, mid) == lo_offset:
                a = mid
            else:
                b = mid
        b_offset = _offset_at(zone, b)
        changes.append(_OffsetChange(datetime.fromtimestamp(b, UTC), lo_offset, b_offset))
        # continue from the change, not from hi: a second change may follow it
        lo, lo_offset = b, b_offset
    return tuple(changes)


# an example date in messages should look current, not like 1974; a fixed year
# keeps validation independent of the clock
_EXAMPLE_FROM = datetime(2020, 1, 1, tzinfo=UTC)


def _dst_problem(key: str, t: time) -> str | None:
    """Why ``t`` cannot be a cutoff in zone ``key``, or None if it can."""
    hits = [(c, when) for c in _offset_changes(key) if (when := c.covers(t)) is not None]
    if not hits:
        return None
    recent = [h for h in hits if h[0].at >= _EXAMPLE_FROM]
    change, when = (recent or hits[-1:])[0]
    start, end = change.window
    # a window across midnight (or a whole skipped day) is unreadable without dates
    with_date = start.date() != end.date()
    hhmm = f"{t.hour:02d}:{t.minute:02d}"
    if change.is_gap:
        return (
            f"cutoffs: {hhmm} does not exist in {key} on {when.date()} "
            f"(clocks jump from {_clock(start, with_date)} to {_clock(end, with_date)}); "
            "choose a time outside daylight-saving changes"
        )
    return (
        f"cutoffs: {hhmm} happens twice in {key} on {when.date()} "
        f"(clocks go back from {_clock(end, with_date)} to {_clock(start, with_date)}); "
        "choose a time outside daylight-saving changes"
    )


def _clock(dt: datetime, with_date: bool) -> str:
    text = dt.strftime("%H:%M:%S" if dt.second else "%H:%M")
    return f"{dt.date()} {text}" if with_date else text


class CalendarConfig(Frozen):
    """The ``[calendar]`` table: when cutoffs are and which days count."""

    #: IANA time zone the cutoffs and business days are in
    zone: str = "America/New_York"
    #: local wall-clock cutoff times "HH:MM"; none may fall in a DST gap or fold
    cutoffs: tuple[str, ...] = ("09:30", "15:30")
    #: business weekdays, ISO numbering (1 = Monday ... 7 = Sunday)
    weekdays: tuple[int, ...] = (1, 2, 3, 4, 5)
    #: country code for the ``holidays`` package (observed public holidays); "" for none
    holidays: str = "US"
    #: extra non-business dates, "YYYY-MM-DD"
    closures: tuple[date, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _from_toml(cls, data: Any) -> Any:
        # TOML has arrays, not tuples, and strict mode refuses a list for a
        # tuple; it also has native dates and times, which are accepted
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key in ("cutoffs", "weekdays", "closures"):
            if isinstance(data.get(key), list):
                data[key] = tuple(data[key])
        if isinstance(data.get("cutoffs"), tuple):
            data["cutoffs"] = tuple(_cutoff_text(v) for v in data["cutoffs"])
        if isinstance(data.get("closures"), tuple):
            data["closures"] = tuple(_closure_date(v) for v in data["closures"])
        return data

    @model_validator(mode="after")
    def _check(self) -> CalendarConfig:
        try:
            ZoneInfo(self.zone)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"zone: unknown time zone {self.zone!r}") from None

        if not self.cutoffs:
            raise ValueError("cutoffs: give at least one time HH:MM")
        seen: set[time] = set()
        for text in self.cutoffs:
            t = parse_hhmm(text)
            if t in seen:
                raise ValueError(f"cutoffs: {text} is given twice")
            seen.add(t)
            problem = _dst_problem(self.zone, t)
            if problem:
                raise ValueError(problem)

        if not self.weekdays:
            raise ValueError("weekdays: give at least one ISO weekday (1 = Monday ... 7 = Sunday)")
        for day in self.weekdays:
            if not 1 <= day <= 7:
                raise ValueError(f"weekdays: {day} is not an ISO weekday (1 = Monday ... 7 = Sunday)")
        if len(set(self.weekdays)) != len(self.weekdays):
            raise ValueError("weekdays: a day is given twice")

        if self.holidays and self.holidays not in holidays_lib.list_supported_countries():
            raise ValueError(
                f"holidays: unknown country code {self.holidays!r} "
                '(a code the holidays package knows, such as "US"; "" for none)'
            )
        return self
