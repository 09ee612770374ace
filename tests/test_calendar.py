"""The business calendar: cutoffs at 09:30 and 15:30 New York time on business days.

The oracles here are written independently of mailcase.domain.calendar: a
minute-by-minute scan for the next cutoff, a hand-copied table of US federal
observed holidays (OPM), and a per-date fold round-trip for DST gaps and folds.
"""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, ValidationError

from mailcase.core.errors import ConfigError
from mailcase.domain.calendar import HORIZON_DAYS, BusinessCalendar, CalendarConfig

NY = ZoneInfo("America/New_York")
CAL = BusinessCalendar(CalendarConfig())


def utc(text: str) -> datetime:
    """An ISO timestamp (with offset) as aware UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert value.tzinfo is not None, text
    return value.astimezone(UTC)


def ny(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0, us: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, us, tzinfo=NY)


# US federal holidays as observed (OPM), 2026-2028 and the first of 2029.
# Weekend holidays move to Friday/Monday; New Year's Day 2028 is a Saturday,
# so it is observed on Friday 2027-12-31.
US_OBSERVED = frozenset(
    date.fromisoformat(d)
    for d in """
    2026-01-01 2026-01-19 2026-02-16 2026-05-25 2026-06-19 2026-07-03
    2026-09-07 2026-10-12 2026-11-11 2026-11-26 2026-12-25
    2027-01-01 2027-01-18 2027-02-15 2027-05-31 2027-06-18 2027-07-05
    2027-09-06 2027-10-11 2027-11-11 2027-11-25 2027-12-24 2027-12-31
    2028-01-17 2028-02-21 2028-05-29 2028-06-19 2028-07-04
    2028-09-04 2028-10-09 2028-11-10 2028-11-23 2028-12-25
    2029-01-01
    """.split()
)


# --- the agreement, case by case ------------------------------------------------

CASES = [
    # (what, received at, joins the cutoff at (UTC))
    ("Monday 08:00 EST -> 09:30 the same day", "2026-11-23T08:00:00-05:00", "2026-11-23T14:30:00Z"),
    ("09:29:59.999 -> 09:30", "2026-11-23T09:29:59.999000-05:00", "2026-11-23T14:30:00Z"),
    ("exactly 09:30:00 is not 'before 9:30' -> 15:30", "2026-11-23T09:30:00-05:00", "2026-11-23T20:30:00Z"),
    ("09:30:00.000001 -> 15:30", "2026-11-23T09:30:00.000001-05:00", "2026-11-23T20:30:00Z"),
    ("15:29:59 -> 15:30", "2026-11-23T15:29:59-05:00", "2026-11-23T20:30:00Z"),
    ("exactly 15:30 -> next morning", "2026-11-23T15:30:00-05:00", "2026-11-24T14:30:00Z"),
    ("the same instant given in UTC", "2026-11-23T20:30:00Z", "2026-11-24T14:30:00Z"),
    ("the same instant given in Tokyo", "2026-11-24T05:30:00+09:00", "2026-11-24T14:30:00Z"),
    # spring 2026: clocks go forward on Sunday 2026-03-08
    ("Friday before the spring switch, morning (EST)", "2026-03-06T07:00:00-05:00", "2026-03-06T14:30:00Z"),
    ("Friday before the spring switch, after 15:30 -> Monday 09:30 EDT", "2026-03-06T16:00:00-05:00", "2026-03-09T13:30:00Z"),
    ("Friday 20:00 EST is already Saturday in UTC", "2026-03-07T01:00:00Z", "2026-03-09T13:30:00Z"),
    ("Sunday in the skipped hour", "2026-03-08T07:30:00Z", "2026-03-09T13:30:00Z"),
    ("Monday after the spring switch, 09:00 EDT", "2026-03-09T09:00:00-04:00", "2026-03-09T13:30:00Z"),
    ("Monday after the spring switch, 12:00 EDT", "2026-03-09T12:00:00-04:00", "2026-03-09T19:30:00Z"),
    # autumn 2026: clocks go back on Sunday 2026-11-01
    ("Friday before the autumn switch, after 15:30 -> Monday 09:30 EST", "2026-10-30T15:45:00-04:00", "2026-11-02T14:30:00Z"),
    ("Sunday 01:30 EDT (first time round)", "2026-11-01T01:30:00-04:00", "2026-11-02T14:30:00Z"),
    ("Sunday 01:30 EST (second time round)", "2026-11-01T01:30:00-05:00", "2026-11-02T14:30:00Z"),
    ("Monday after the autumn switch", "2026-11-02T10:00:00-05:00", "2026-11-02T20:30:00Z"),
    # spring and autumn 2027
    ("Friday 2027-03-12 after 15:30 -> Monday 09:30 EDT", "2027-03-12T17:00:00-05:00", "2027-03-15T13:30:00Z"),
    ("Monday 2027-03-15 before 09:30 EDT", "2027-03-15T06:00:00-04:00", "2027-03-15T13:30:00Z"),
    ("Friday 2027-11-05 after 15:30 -> Monday 09:30 EST", "2027-11-05T15:30:00-04:00", "2027-11-08T14:30:00Z"),
    ("Sunday 2027-11-07 in the repeated hour", "2027-11-07T06:15:00Z", "2027-11-08T14:30:00Z"),
    # holidays
    ("Wednesday before Thanksgiving after 15:30 -> Friday 09:30", "2026-11-25T16:00:00-05:00", "2026-11-27T14:30:00Z"),
    ("on Thanksgiving -> the day after, a business day", "2026-11-26T10:00:00-05:00", "2026-11-27T14:30:00Z"),
    ("Friday 15:30 before Labor Day -> Tuesday 09:30", "2026-09-04T15:30:00-04:00", "2026-09-08T13:30:00Z"),
    ("Friday 15:30 before MLK Day -> Tuesday 09:30", "2027-01-15T15:30:00-05:00", "2027-01-19T14:30:00Z"),
    ("Thursday before New Year 2028 (observed Friday 2027-12-31)", "2027-12-30T15:31:00-05:00", "2028-01-03T14:30:00Z"),
    ("Thursday 20:00 EST is Friday 2027-12-31 in UTC", "2027-12-31T01:00:00Z", "2028-01-03T14:30:00Z"),
    ("Independence Day 2026 observed Friday 07-03", "2026-07-02T16:00:00-04:00", "2026-07-06T13:30:00Z"),
    ("Juneteenth 2027 observed Friday 06-18", "2027-06-17T15:30:00-04:00", "2027-06-21T13:30:00Z"),
    ("Christmas 2027 observed Friday 12-24", "2027-12-23T16:00:00-05:00", "2027-12-27T14:30:00Z"),
]


@pytest.mark.parametrize(("what", "received", "expected"), CASES, ids=[c[0] for c in CASES])
def test_cutoff_for(what: str, received: str, expected: str) -> None:
    received_at = datetime.fromisoformat(received.replace("Z", "+00:00"))
    got = CAL.cutoff_for(received_at)
    assert got == utc(expected), what
    assert got.tzinfo is UTC
    assert CAL.next_cutoff(received_at) == got


def test_local_offset_of_0930_before_and_after_each_switch() -> None:
    for before, after in [
        (date(2026, 3, 6), date(2026, 3, 9)),
        (date(2026, 10, 30), date(2026, 11, 2)),
        (date(2027, 3, 12), date(2027, 3, 15)),
        (date(2027, 11, 5), date(2027, 11, 8)),
    ]:
        offsets = []
        for d in (before, after):
            local, at = CAL.upcoming(datetime.combine(d, time(0), NY), 1)[0]
            assert (local.date(), local.time()) == (d, time(9, 30))
            assert local.astimezone(UTC) == at
            offsets.append(local.utcoffset())
        spring = before.month == 3
        hours = (-5, -4) if spring else (-4, -5)
        assert offsets == [timedelta(hours=hours[0]), timedelta(hours=hours[1])]


def test_every_date_2026_2028_against_the_opm_table() -> None:
    d = date(2026, 1, 1)
    while d <= date(2028, 12, 31):
        expected = d.isoweekday() <= 5 and d not in US_OBSERVED
        assert CAL.is_business_day(d) is expected, d
        d += timedelta(days=1)


def test_holidays_package_gives_observed_days_including_the_next_years() -> None:
    """What the package does (0.109): a year's table holds the observed day of the
    next New Year's Day, and also the actual weekend dates."""
    table = holidays.country_holidays("US", years=2027, observed=True)
    assert table.get(date(2027, 12, 31)) == "New Year's Day (observed)"
    assert date(2027, 12, 25) in table  # Saturday: the actual day is listed too
    weekdays = {
        d
        for y in (2026, 2027, 2028)
        for d in holidays.country_holidays("US", years=y, observed=True)
        if d.isoweekday() <= 5
    }
    assert weekdays == {d for d in US_OBSERVED if d.year <= 2028}


def test_day_after_thanksgiving_closed_only_when_configured() -> None:
    assert not CAL.is_business_day(date(2026, 11, 26))
    assert CAL.is_business_day(date(2026, 11, 27))
    closed = BusinessCalendar(CalendarConfig(closures=(date(2026, 11, 27),)))
    assert not closed.is_business_day(date(2026, 11, 27))
    assert closed.cutoff_for(utc("2026-11-25T16:00:00-05:00")) == utc("2026-11-30T14:30:00Z")


def test_no_holidays() -> None:
    cal = BusinessCalendar(CalendarConfig(holidays=""))
    assert cal.is_business_day(date(2026, 11, 26))
    assert cal.is_business_day(date(2027, 12, 31))
    assert cal.cutoff_for(utc("2026-11-25T16:00:00-05:00")) == utc("2026-11-26T14:30:00Z")


def test_closures_and_holidays_use_the_local_date() -> None:
    # 08:00 on Monday 2026-03-09 in Tokyo is still Sunday in UTC: the closure
    # of the local Monday must remove it
    cfg = CalendarConfig(zone="Asia/Tokyo", cutoffs=("08:00",), holidays="", closures=(date(2026, 3, 9),))
    cal = BusinessCalendar(cfg)
    assert cal.next_cutoff(utc("2026-03-08T12:00:00Z")) == utc("2026-03-10T08:00:00+09:00")
    open_ = BusinessCalendar(cfg.model_copy(update={"closures": ()}))
    assert open_.next_cutoff(utc("2026-03-08T12:00:00Z")) == utc("2026-03-08T23:00:00Z")


def test_the_local_date_not_the_utc_date_starts_the_scan() -> None:
    # 20:00 EST on Thursday is 01:00 UTC on Friday: Thursday's 21:00 is next
    late = BusinessCalendar(CalendarConfig(cutoffs=("09:30", "21:00")))
    assert late.next_cutoff(utc("2026-11-20T01:00:00Z")) == utc("2026-11-19T21:00:00-05:00")
    # 08:00 on Monday in Tokyo is 23:00 UTC on Sunday: Monday's 07:00 is previous
    tokyo = BusinessCalendar(CalendarConfig(zone="Asia/Tokyo", cutoffs=("07:00",), holidays=""))
    assert tokyo.previous_cutoff(utc("2026-11-22T23:00:00Z")) == utc("2026-11-23T07:00:00+09:00")


def test_configured_cutoffs_weekdays_and_order() -> None:
    cal = BusinessCalendar(
        CalendarConfig(cutoffs=("17:00", "08:15", "12:00"), weekdays=(6,), holidays="")
    )
    # Saturdays only, three cutoffs, given out of order
    rows = cal.upcoming(utc("2026-11-23T12:00:00Z"), 4)
    assert [local.isoformat() for local, _ in rows] == [
        "2026-11-28T08:15:00-05:00",
        "2026-11-28T12:00:00-05:00",
        "2026-11-28T17:00:00-05:00",
        "2026-12-05T08:15:00-05:00",
    ]


# --- missed cutoffs, previous cutoff, listings ----------------------------------


def test_cutoffs_between_runs_every_missed_cutoff_once() -> None:
    # down from Friday morning before the spring switch to Tuesday noon
    got = CAL.cutoffs_between(utc("2026-03-06T09:00:00-05:00"), utc("2026-03-10T12:00:00-04:00"))
    assert got == [
        utc("2026-03-06T14:30:00Z"),
        utc("2026-03-06T20:30:00Z"),
        utc("2026-03-09T13:30:00Z"),
        utc("2026-03-09T19:30:00Z"),
        utc("2026-03-10T13:30:00Z"),
    ]
    # start is exclusive (that cutoff is done), end inclusive (it is due)
    assert CAL.cutoffs_between(got[0], got[2]) == got[1:3]
    # consecutive windows neither lose nor repeat a cutoff
    assert CAL.cutoffs_between(got[0], got[1]) + CAL.cutoffs_between(got[1], got[4]) == got[1:]
    assert CAL.cutoffs_between(got[2], got[2]) == []
    assert CAL.cutoffs_between(got[3], got[2]) == []


def test_cutoffs_between_over_thanksgiving() -> None:
    got = CAL.cutoffs_between(utc("2026-11-25T12:00:00-05:00"), utc("2026-11-30T10:00:00-05:00"))
    assert [c.astimezone(NY).strftime("%a %d %H:%M") for c in got] == [
        "Wed 25 15:30",
        "Fri 27 09:30",
        "Fri 27 15:30",
        "Mon 30 09:30",
    ]


def test_cutoffs_between_long_downtime_is_not_bounded_by_the_horizon() -> None:
    got = CAL.cutoffs_between(utc("2026-01-01T00:00:00Z"), utc("2027-12-31T23:59:59Z"))
    business_days = sum(
        1
        for i in range((date(2027, 12, 31) - date(2026, 1, 1)).days + 1)
        if (d := date(2026, 1, 1) + timedelta(days=i)).isoweekday() <= 5 and d not in US_OBSERVED
    )
    assert len(got) == 2 * business_days
    assert got == sorted(got) and len(set(got)) == len(got)


def test_previous_cutoff() -> None:
    assert CAL.previous_cutoff(utc("2026-11-23T09:30:00-05:00")) == utc("2026-11-23T14:30:00Z")
    assert CAL.previous_cutoff(utc("2026-11-23T09:29:59-05:00")) == utc("2026-11-20T20:30:00Z")
    # Monday after the spring switch: Friday's 15:30 was EST
    assert CAL.previous_cutoff(utc("2026-03-09T09:00:00-04:00")) == utc("2026-03-06T20:30:00Z")
    # Monday 2028-01-03: Friday 2027-12-31 was a holiday
    assert CAL.previous_cutoff(utc("2028-01-03T09:00:00-05:00")) == utc("2027-12-30T20:30:00Z")


def test_upcoming() -> None:
    rows = CAL.upcoming(utc("2026-03-06T12:00:00-05:00"), 3)
    assert [(local.isoformat(), at.isoformat()) for local, at in rows] == [
        ("2026-03-06T15:30:00-05:00", "2026-03-06T20:30:00+00:00"),
        ("2026-03-09T09:30:00-04:00", "2026-03-09T13:30:00+00:00"),
        ("2026-03-09T15:30:00-04:00", "2026-03-09T19:30:00+00:00"),
    ]
    assert all(local.tzinfo is NY and at.tzinfo is UTC for local, at in rows)
    assert CAL.upcoming(utc("2026-03-06T12:00:00Z"), 0) == []
    with pytest.raises(ValueError, match="count"):
        CAL.upcoming(utc("2026-03-06T12:00:00Z"), -1)


def test_naive_datetimes_and_datetimes_as_dates_are_refused() -> None:
    naive = datetime(2026, 11, 23, 9, 0)
    for call in (
        lambda: CAL.next_cutoff(naive),
        lambda: CAL.cutoff_for(naive),
        lambda: CAL.previous_cutoff(naive),
        lambda: CAL.cutoffs_between(naive, utc("2026-11-24T00:00:00Z")),
        lambda: CAL.cutoffs_between(utc("2026-11-22T00:00:00Z"), naive),
        lambda: CAL.upcoming(naive, 1),
    ):
        with pytest.raises(ValueError, match="timezone-aware"):
            call()
    with pytest.raises(TypeError, match="not a datetime"):
        CAL.is_business_day(utc("2026-11-23T12:00:00Z"))


def test_no_business_day_within_the_horizon_is_a_clear_error() -> None:
    # Wednesdays only, and every Wednesday from 2025-12-31 to 2028-02-02 closed
    wednesdays = tuple(date(2025, 12, 31) + timedelta(weeks=i) for i in range(110))
    assert wednesdays[-1] == date(2028, 2, 2)
    cal = BusinessCalendar(CalendarConfig(weekdays=(3,), holidays="", closures=wednesdays))
    with pytest.raises(ConfigError, match=f"no cutoff within {HORIZON_DAYS} days"):
        cal.next_cutoff(utc("2026-01-05T00:00:00Z"))
    assert cal.previous_cutoff(utc("2027-06-01T00:00:00Z")) is None
    # the first open Wednesday after the closures is found
    assert cal.next_cutoff(utc("2027-12-01T00:00:00Z")) == utc("2028-02-09T09:30:00-05:00")


def test_a_cutoff_outside_the_checked_years_is_refused_not_guessed() -> None:
    # New York left local mean time on Sunday 1883-11-18: 12:00-12:03:58 happened
    # twice.  Validation ignores pre-1970 changes; computing that cutoff must fail.
    cal = BusinessCalendar(CalendarConfig(cutoffs=("12:01",), weekdays=(7,), holidays=""))
    with pytest.raises(ConfigError, match="daylight-saving"):
        cal.next_cutoff(datetime(1883, 11, 17, tzinfo=UTC))
    assert cal.next_cutoff(utc("2026-11-23T00:00:00Z")) == utc("2026-11-29T12:01:00-05:00")


# --- against a minute-by-minute oracle -----------------------------------------


def oracle_next_cutoff(
    after: datetime,
    zone: ZoneInfo,
    cutoffs: set[tuple[int, int]],
    weekdays: set[int],
    closed: frozenset[date],
) -> datetime:
    """Walk UTC minute by minute and stop at the first local cutoff on an open day."""
    t = after.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    for _ in range(60 * 24 * 60):
        local = t.astimezone(zone)
        if (
            (local.hour, local.minute) in cutoffs
            and local.isoweekday() in weekdays
            and local.date() not in closed
        ):
            return t
        t += timedelta(minutes=1)
    raise AssertionError(f"oracle found no cutoff within 60 days after {after}")


INPUT_ZONES: list[tzinfo] = [UTC, NY, ZoneInfo("Asia/Tokyo"), timezone(timedelta(hours=-3, minutes=-30))]


@st.composite
def near_a_cutoff(draw: st.DrawFn) -> datetime:
    """An instant within two minutes of some 09:30/15:30, down to the microsecond."""
    day = draw(st.dates(date(2026, 1, 1), date(2028, 12, 31)))
    hh, mm = draw(st.sampled_from([(9, 30), (15, 30)]))
    delta = draw(
        st.one_of(
            st.sampled_from([0, -1, 1, -1000, 1000]), st.integers(-120_000_000, 120_000_000)
        )
    )
    at = datetime(day.year, day.month, day.day, hh, mm, tzinfo=NY).astimezone(UTC)
    return (at + timedelta(microseconds=delta)).astimezone(draw(st.sampled_from(INPUT_ZONES)))


ANY_INSTANT = st.one_of(
    st.datetimes(
        min_value=datetime(2026, 1, 1),
        max_value=datetime(2028, 12, 31, 23, 59, 59),
        timezones=st.sampled_from(INPUT_ZONES),
    ),
    near_a_cutoff(),
)


@settings(max_examples=300, deadline=None)
@given(ANY_INSTANT)
def test_next_cutoff_matches_the_minute_oracle(after: datetime) -> None:
    expected = oracle_next_cutoff(after, NY, {(9, 30), (15, 30)}, {1, 2, 3, 4, 5}, US_OBSERVED)
    assert CAL.next_cutoff(after) == expected


ORACLE_ZONES = [
    "America/New_York", "America/Los_Angeles", "Pacific/Honolulu", "Europe/London",
    "Asia/Tokyo", "Australia/Lord_Howe", "Asia/Kolkata",
]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    zone=st.sampled_from(ORACLE_ZONES),
    minutes=st.sets(st.integers(0, 24 * 60 - 1), min_size=1, max_size=3),
    weekdays=st.sets(st.integers(1, 7), min_size=1, max_size=7),
    closures=st.sets(st.dates(date(2026, 1, 1), date(2028, 12, 31)), max_size=40),
    after=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
    ),
    near=st.one_of(st.none(), st.tuples(st.integers(0, 2), st.integers(-12 * 3600, 12 * 3600))),
)
def test_configured_calendars_match_the_minute_oracle(
    zone: str,
    minutes: set[int],
    weekdays: set[int],
    closures: set[date],
    after: datetime,
    near: tuple[int, int] | None,
) -> None:
    if near is not None:
        # within 12 hours of a cutoff, where a wrong local date shows
        pick, seconds = near
        hh, mm = divmod(sorted(minutes)[pick % len(minutes)], 60)
        day = after.astimezone(ZoneInfo(zone)).date()
        at = datetime(day.year, day.month, day.day, hh, mm, tzinfo=ZoneInfo(zone))
        after = at.astimezone(UTC) + timedelta(seconds=seconds)
    texts = tuple(f"{m // 60:02d}:{m % 60:02d}" for m in sorted(minutes))
    try:
        cfg = CalendarConfig(
            zone=zone, cutoffs=texts, weekdays=tuple(sorted(weekdays)), holidays="",
            closures=tuple(sorted(closures)),
        )
    except ValidationError:
        assume(False)  # a cutoff in a DST gap or fold: tested separately
        raise
    cal = BusinessCalendar(cfg)
    expected = oracle_next_cutoff(
        after, ZoneInfo(zone), {divmod(m, 60) for m in minutes}, weekdays, frozenset(closures)
    )
    assert cal.next_cutoff(after) == expected


@settings(max_examples=200, deadline=None)
@given(ANY_INSTANT, st.integers(0, 20 * 24 * 3600))
def test_previous_between_and_next_agree(start: datetime, span: int) -> None:
    end = start + timedelta(seconds=span)
    walked = []
    c = CAL.next_cutoff(start)
    while c <= end:
        walked.append(c)
        c = CAL.next_cutoff(c)
    assert CAL.cutoffs_between(start, end) == walked
    p = CAL.previous_cutoff(start)
    assert p is not None and p <= start
    assert CAL.next_cutoff(p) > start  # nothing in (p, start]
    assert CAL.previous_cutoff(CAL.next_cutoff(start)) == CAL.next_cutoff(start)


# --- configuration ----------------------------------------------------------------


def test_defaults() -> None:
    cfg = CalendarConfig()
    assert cfg.zone == "America/New_York"
    assert cfg.cutoffs == ("09:30", "15:30")
    assert cfg.weekdays == (1, 2, 3, 4, 5)
    assert cfg.holidays == "US"
    assert cfg.closures == ()


def test_from_toml() -> None:
    text = """
    zone = "America/Chicago"
    cutoffs = ["08:00", 16:45:00]
    weekdays = [1, 2, 3, 4]
    holidays = ""
    closures = ["2026-12-24", 2026-12-31]
    """
    cfg = CalendarConfig.model_validate(tomllib.loads(text))
    assert cfg.cutoffs == ("08:00", "16:45")
    assert cfg.weekdays == (1, 2, 3, 4)
    assert cfg.closures == (date(2026, 12, 24), date(2026, 12, 31))


def test_frozen_and_closed() -> None:
    cfg = CalendarConfig()
    with pytest.raises(ValidationError):
        cfg.zone = "UTC"
    with pytest.raises(ValidationError, match="extra"):
        CalendarConfig.model_validate({"cutofs": ["09:30"]})


BAD = [
    ({"cutoffs": ["25:00"]}, "cutoffs: 25:00 is not a time HH:MM"),
    ({"cutoffs": ["9:30"]}, "cutoffs: 9:30 is not a time HH:MM"),
    ({"cutoffs": ["09:30:00"]}, "cutoffs: 09:30:00 is not a time HH:MM"),
    ({"cutoffs": [""]}, "cutoffs: '' is not a time HH:MM"),
    ({"cutoffs": [time(9, 30, 15)]}, "cutoffs: 09:30:15 is not a time HH:MM"),
    ({"cutoffs": []}, "cutoffs: give at least one time HH:MM"),
    ({"cutoffs": ["09:30", "09:30"]}, "cutoffs: 09:30 is given twice"),
    ({"cutoffs": ["02:30"]}, "cutoffs: 02:30 does not exist in America/New_York on 2020-03-08"),
    ({"cutoffs": ["01:30"]}, "cutoffs: 01:30 happens twice in America/New_York on 2020-11-01"),
    ({"zone": "Mars/Base"}, "zone: unknown time zone 'Mars/Base'"),
    ({"zone": "/etc/passwd"}, "zone: unknown time zone '/etc/passwd'"),
    ({"zone": ""}, "zone: unknown time zone ''"),
    ({"weekdays": []}, "weekdays: give at least one ISO weekday"),
    ({"weekdays": [0]}, "weekdays: 0 is not an ISO weekday (1 = Monday ... 7 = Sunday)"),
    ({"weekdays": [1, 8]}, "weekdays: 8 is not an ISO weekday"),
    ({"weekdays": [1, 1]}, "weekdays: a day is given twice"),
    ({"holidays": "XX"}, "holidays: unknown country code 'XX'"),
    ({"holidays": "us"}, "holidays: unknown country code 'us'"),
    ({"closures": ["2026-13-01"]}, "closures: 2026-13-01 is not a date YYYY-MM-DD"),
    ({"closures": ["20261224"]}, "closures: 20261224 is not a date YYYY-MM-DD"),
    ({"closures": [datetime(2026, 12, 24, 0, 0)]}, "closures: datetime.datetime(2026, 12, 24, 0, 0) is not a date"),
]


@pytest.mark.parametrize(("data", "message"), BAD, ids=[m for _, m in BAD])
def test_validation_errors_name_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as info:
        CalendarConfig.model_validate(data)
    assert isinstance(info.value, ValidationError)
    first = info.value.errors()[0]
    assert first["type"] == "value_error"
    assert first["msg"].removeprefix("Value error, ").startswith(message)


def test_wrong_types_are_located_by_pydantic() -> None:
    for data, loc in [
        ({"cutoffs": [930]}, ("cutoffs", 0)),
        ({"weekdays": [True]}, ("weekdays", 0)),
        ({"zone": 5}, ("zone",)),
        ({"holidays": None}, ("holidays",)),
    ]:
        with pytest.raises(ValidationError) as info:
            CalendarConfig.model_validate(data)
        assert info.value.errors()[0]["loc"] == loc, data


class _Parent(BaseModel):
    # how config.Config embeds the table
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    calendar: CalendarConfig = CalendarConfig()


def test_nested_error_is_key_message_at_the_table() -> None:
    """config._describe turns loc ("calendar",) + "key: message" into calendar.key."""
    with pytest.raises(ValidationError) as info:
        _Parent.model_validate({"calendar": {"cutoffs": ["25:00"]}})
    first = info.value.errors()[0]
    assert first["loc"] == ("calendar",)
    assert first["msg"] == "Value error, cutoffs: 25:00 is not a time HH:MM"
    assert _Parent.model_validate({"calendar": {"cutoffs": ["10:00"]}}).calendar.cutoffs == ("10:00",)


# --- DST gaps and folds --------------------------------------------------------


def in_gap_or_fold_on_some_date(zone: str, hhmm: str, first: int = 1970, last: int = 2099) -> bool:
    """Per-date oracle: in a gap or fold the two fold values give different offsets (PEP 495)."""
    z = ZoneInfo(zone)
    t = time.fromisoformat(hhmm)
    d, end = date(first, 1, 1), date(last, 12, 31)
    while d <= end:
        local = datetime.combine(d, t, tzinfo=z)
        if local.utcoffset() != local.replace(fold=1).utcoffset():
            return True
        d += timedelta(days=1)
    return False


DST_TIMES = [
    ("America/New_York", ["00:59", "01:00", "01:30", "01:59", "02:00", "02:30", "02:59", "03:00", "09:30", "15:30"]),
    ("Europe/London", ["00:59", "01:00", "01:30", "02:00", "02:59", "03:00"]),
    ("America/Santiago", ["22:59", "23:00", "23:30", "00:00", "00:30", "01:00", "09:30"]),
    ("Australia/Lord_Howe", ["01:29", "01:30", "02:00", "02:15", "02:59", "03:00"]),
    ("Pacific/Apia", ["12:00"]),
    ("Asia/Tokyo", ["00:00", "02:30"]),
]


@pytest.mark.parametrize(("zone", "times"), DST_TIMES, ids=[z for z, _ in DST_TIMES])
def test_gap_and_fold_rejection_matches_a_per_date_oracle(zone: str, times: list[str]) -> None:
    for hhmm in times:
        expected_bad = in_gap_or_fold_on_some_date(zone, hhmm)
        try:
            CalendarConfig(zone=zone, cutoffs=(hhmm,))
            rejected = False
        except ValidationError as exc:
            msg = exc.errors()[0]["msg"]
            assert "does not exist" in msg or "happens twice" in msg, msg
            rejected = True
        assert rejected is expected_bad, (zone, hhmm)


def test_new_york_rejections_in_detail() -> None:
    rejected = {
        hhmm
        for hhmm in ("00:59", "01:00", "01:30", "01:59", "02:00", "02:30", "02:59", "03:00")
        if not _accepted("America/New_York", hhmm)
    }
    assert rejected == {"01:00", "01:30", "01:59", "02:00", "02:30", "02:59"}
    assert _accepted("America/New_York", "09:30") and _accepted("America/New_York", "15:30")


def _accepted(zone: str, hhmm: str) -> bool:
    try:
        CalendarConfig(zone=zone, cutoffs=(hhmm,))
    except ValidationError:
        return False
    return True


def test_gap_and_fold_messages_with_dates() -> None:
    with pytest.raises(ValidationError) as info:
        CalendarConfig(zone="Pacific/Apia", cutoffs=("12:00",))
    assert "2011-12-30" in str(info.value)  # Samoa skipped that whole day
    with pytest.raises(ValidationError) as info:
        CalendarConfig(zone="America/Santiago", cutoffs=("23:30",))
    assert "happens twice" in str(info.value)  # the fold ends at midnight
