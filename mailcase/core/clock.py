"""The one place that reads the clock.

Every time-dependent function takes ``now`` as an argument.  The process asks
:func:`process_clock` once for a clock and passes its readings down.

Tests (and only tests) move time: when ``MAILCASE_TEST_CLOCK`` names a file,
the clock reads an ISO-8601 timestamp from it on every call, so a test can move
a running daemon's time by rewriting the file.  The file may hold a second
field, a rate: ``2026-11-27T14:29:00+00:00 60`` makes test time run 60x real
time from the file's modification time.  The daemon logs a warning at start-up
when this is in effect, and ``mailcase status`` shows it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

TEST_CLOCK_ENV = "MAILCASE_TEST_CLOCK"


class Clock(Protocol):
    def now(self) -> datetime:
        """An aware UTC datetime."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True)
class FixedClock:
    at: datetime

    def now(self) -> datetime:
        return self.at


@dataclass(frozen=True)
class FileClock:
    """Test clock: reads ``ISO-TIMESTAMP [RATE]`` from a file each call."""

    path: Path

    def now(self) -> datetime:
        # a test rewriting the file truncates it first: a reader that lands in
        # between sees nothing, and waits a moment for the new text
        for _ in range(100):
            stat = self.path.stat()
            fields = self.path.read_text().split()
            if fields:
                break
            time.sleep(0.01)
        else:
            raise ValueError(f"{self.path}: test clock file is empty")
        base = datetime.fromisoformat(fields[0])
        if base.tzinfo is None:
            raise ValueError(f"{self.path}: test clock time must carry a UTC offset")
        rate = float(fields[1]) if len(fields) > 1 else 0.0
        elapsed = max(0.0, time.time() - stat.st_mtime) * rate
        return base.astimezone(UTC) + timedelta(seconds=elapsed)


def process_clock() -> Clock:
    path = os.environ.get(TEST_CLOCK_ENV)
    if path:
        return FileClock(Path(path))
    return SystemClock()


def is_test_clock(clock: Clock) -> bool:
    return not isinstance(clock, SystemClock)


def real_now() -> datetime:
    """Wall-clock time for coordination between processes (leases).

    Leases expire in real seconds whatever the business clock says: a test
    clock that jumps a weekend must not expire every lease at once.
    """
    return datetime.now(UTC)
