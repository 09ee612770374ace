"""Business days and cutoffs: when pending mail becomes cases.

The support agreement creates cases "from emails received before 9:30 AM and
before 3:30 PM Eastern, Monday-Friday" (docs/design.md §1).  A cutoff is a local
wall-clock time on a business day of the calendar's zone; a mail joins the
first cutoff strictly after it was received, so a mail received exactly at
09:30:00 waits for 15:30.  The configuration (and its checks against
daylight-saving gaps and folds) is :mod:`mailcase.config.calendar`.

Every function takes the instant it reasons about as an argument and returns
aware UTC datetimes; nothing here reads the clock.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import holidays as holidays_lib

from mailcase.config.calendar import ZONE_NAMES, CalendarConfig, parse_hhmm
from mailcase.core.errors import ConfigError

__all__ = ["HORIZON_DAYS", "BusinessCalendar", "CalendarConfig"]

#: how far next_cutoff/previous_cutoff look before giving up.  A year plus a
#: margin: long enough for any real run of holidays and closures, short
#: enough to fail fast on a calendar that has no business days at all.
HORIZON_DAYS = 400

def _require_aware(name: str, value: datetime) -> datetime:
    """``value`` in UTC; naive datetimes are a bug in the caller, not a guess to make."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value.isoformat()}")
    # compare in UTC: two datetimes sharing a ZoneInfo compare by wall clock,
    # ignoring fold, which is wrong inside the autumn's repeated hour
    return value.astimezone(UTC)


class BusinessCalendar:
    """Cutoffs and business days of one :class:`CalendarConfig`.

    Thread-safe: the only state is a per-year cache of holiday dates and a
    per-day cache of cutoffs, and two threads filling the same entry store
    equal values.
    """

    def __init__(self, config: CalendarConfig) -> None:
        self.config = config
        self.zone = ZoneInfo(config.zone)
        self._times = tuple(sorted(parse_hhmm(t) for t in config.cutoffs))
        self._weekdays = frozenset(config.weekdays)
        self._closures = frozenset(config.closures)
        self._holidays_by_year: dict[int, frozenset[date]] = {}
        # the classify stage and a cutoff ask for the cutoff of every mail: mostly the same few days
        self._cutoffs_by_day: dict[date, tuple[datetime, ...]] = {}

    def _holidays(self, year: int) -> frozenset[date]:
        cached = self._holidays_by_year.get(year)
        if cached is None:
            if self.config.holidays:
                # observed=True adds the weekday a weekend holiday is observed on
                # (the weekend date stays listed, harmless unless weekends open);
                # the year's table includes an observed day that belongs to the
                # next year's holiday (2027-12-31 for New Year's Day 2028)
                table = holidays_lib.country_holidays(
                    self.config.holidays, years=year, observed=True
                )
                cached = frozenset(table.keys())
            else:
                cached = frozenset()
            self._holidays_by_year[year] = cached
        return cached

    def is_business_day(self, d: date) -> bool:
        """Whether local date ``d`` has cutoffs: a configured weekday, no holiday, no closure."""
        if isinstance(d, datetime):
            # a datetime's date depends on its zone; the caller must pick the local date
            raise TypeError("is_business_day takes a date, not a datetime")
        return (
            d.isoweekday() in self._weekdays
            and d not in self._closures
            and d not in self._holidays(d.year)
        )

    def _cutoffs_on(self, d: date) -> tuple[datetime, ...]:
        """The UTC cutoffs of local date ``d`` (empty unless a business day), oldest first."""
        cached = self._cutoffs_by_day.get(d)
        if cached is None:
            cached = self._cutoffs_by_day[d] = tuple(self._work_out_cutoffs(d))
        return cached

    def _work_out_cutoffs(self, d: date) -> list[datetime]:
        if not self.is_business_day(d):
            return []
        out: list[datetime] = []
        for t in self._times:
            local = datetime(d.year, d.month, d.day, t.hour, t.minute, tzinfo=self.zone)
            utc = local.astimezone(UTC)
            # validation only covers 1970-2099; outside it a cutoff could land in
            # a gap (no such local time) or a fold (two instants): refuse to guess
            if (
                utc.astimezone(self.zone).replace(tzinfo=None) != local.replace(tzinfo=None)
                or local.replace(fold=1).utcoffset() != local.utcoffset()
            ):
                raise ConfigError(
                    f"calendar: cutoff {t:%H:%M} on {d} falls in a daylight-saving "
                    f"change of {self.config.zone}"
                )
            out.append(utc)
        return out

    def _local_date(self, at_utc: datetime) -> date:
        return at_utc.astimezone(self.zone).date()

    def next_cutoff(self, after: datetime) -> datetime:
        """The first cutoff strictly after ``after`` (UTC).

        Raises ConfigError when no business day comes within HORIZON_DAYS.
        """
        after_utc = _require_aware("after", after)
        start = self._local_date(after_utc)
        for i in range(HORIZON_DAYS + 1):
            for cutoff in self._cutoffs_on(start + timedelta(days=i)):
                if cutoff > after_utc:
                    return cutoff
        raise ConfigError(
            f"calendar: no cutoff within {HORIZON_DAYS} days after {start} in "
            f"{self.config.zone}; check calendar.weekdays, calendar.holidays and calendar.closures"
        )

    def cutoff_for(self, received_at: datetime) -> datetime:
        """The cutoff a mail received at ``received_at`` joins (UTC).

        The agreement says "received before 9:30": a mail received at exactly
        a cutoff is not before it and waits for the next one.
        """
        return self.next_cutoff(received_at)

    def previous_cutoff(self, at: datetime) -> datetime | None:
        """The latest cutoff at or before ``at`` (UTC); None if none within HORIZON_DAYS."""
        at_utc = _require_aware("at", at)
        start = self._local_date(at_utc)
        for i in range(HORIZON_DAYS + 1):
            for cutoff in reversed(self._cutoffs_on(start - timedelta(days=i))):
                if cutoff <= at_utc:
                    return cutoff
        return None

    def cutoffs_between(self, start: datetime, end: datetime, limit: int | None = None) -> list[datetime]:
        """Every cutoff c with start < c <= end (UTC), oldest first; the first
        ``limit`` of them when given (a gap of years is never walked whole).

        The batch runner closes each of them in turn after downtime, so the
        range is bounded by ``end`` rather than by HORIZON_DAYS.
        """
        start_utc = _require_aware("start", start)
        end_utc = _require_aware("end", end)
        if end_utc <= start_utc:
            return []
        out: list[datetime] = []
        day, last = self._local_date(start_utc), self._local_date(end_utc)
        while day <= last and (limit is None or len(out) < limit):
            out.extend(c for c in self._cutoffs_on(day) if start_utc < c <= end_utc)
            day += timedelta(days=1)
        return out if limit is None else out[:limit]

    @property
    def cutoffs_per_day(self) -> int:
        return len(self._times)

    def add_business_days(self, at: datetime, days: int) -> datetime:
        """The same local wall time ``days`` business days after ``at`` (UTC).

        The agreement's "within 24 to 48 hours" counts business days: a
        request processed at Friday's 15:30 cutoff is due on Monday at 15:30,
        on Tuesday at 15:30 after a Monday holiday.  A wall time that does
        not exist on the day (a DST gap) moves forward with the clock.
        """
        local = _require_aware("at", at).astimezone(self.zone)
        day, left = local.date(), days
        for _ in range(HORIZON_DAYS):
            if left <= 0:
                break
            day += timedelta(days=1)
            if self.is_business_day(day):
                left -= 1
        else:
            raise ConfigError(f"calendar: fewer than {days} business days within {HORIZON_DAYS} days of {local:%Y-%m-%d}")
        wall = datetime(day.year, day.month, day.day, local.hour, local.minute, local.second, tzinfo=self.zone)
        return wall.astimezone(UTC).astimezone(self.zone).astimezone(UTC)

    def describe_cutoffs(self) -> str:
        """The cutoffs in words, from the configuration: "before 9:30 and before 15:30
        America/New_York time, Monday to Friday"."""
        times = " and ".join(f"before {t.hour}:{t.minute:02d}" for t in self._times)
        names = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
        days = sorted(self._weekdays)
        if days == list(range(days[0], days[-1] + 1)) and len(days) > 2:
            span = f"{names[days[0] - 1]} to {names[days[-1] - 1]}"
        else:
            span = ", ".join(names[d - 1] for d in days)
        return f"{times} {ZONE_NAMES.get(self.config.zone, self.config.zone)} time, {span}"

    def local_date(self, at_utc: datetime) -> date:
        """The calendar's local date of a UTC time."""
        return self._local_date(at_utc)

    def upcoming(self, start: datetime, count: int) -> list[tuple[datetime, datetime]]:
        """The next ``count`` cutoffs strictly after ``start`` as (local, UTC) pairs, for listings."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        rows: list[tuple[datetime, datetime]] = []
        at = start
        for _ in range(count):
            at = self.next_cutoff(at)
            rows.append((at.astimezone(self.zone), at))
        return rows
