"""Cutoff batches: pending mail becomes cases, exactly once, once the mail is in.

"Close every due cutoff", not "run at 09:30": each cutoff between the last
one done and now, oldest first, one transaction per cutoff, one batch at a
time (``pg_try_advisory_xact_lock`` on PostgreSQL; on SQLite the write lock
``BEGIN IMMEDIATE`` takes), a unique row per cutoff, mail claimed with
``UPDATE ... WHERE batch_id IS NULL`` behind the unique mail -> case link.
A crash mid-batch rolls the whole cutoff back; the next run does it again.

Which cutoffs are due and whether one may close: :mod:`mailcase.cutoff.due`.
Closing one: :mod:`mailcase.cutoff.run` -- the rules chain again for every
claimed mail against the directory *as of* the cutoff, requests grouped
into cases (:mod:`mailcase.cutoff.plan`: a requester's mails in one thread,
or with the same normalised subject unless it is generic), every mail owed
rendered and queued in the same transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mailcase.config.settings import Config
from mailcase.core.clock import Clock
from mailcase.core.log import kv
from mailcase.cutoff.due import (
    CatchUp,
    Readiness,
    batch_start,
    clear_failure,
    last_done,
    plan_due,
    readiness,
    record_failure,
)
from mailcase.cutoff.run import Cutoff, CutoffJob, CutoffResult
from mailcase.domain.calendar import BusinessCalendar
from mailcase.domain.db import is_postgres, transaction

log = logging.getLogger(__name__)
BATCH_LOCK_KEY = 0x6D61696C63617365  # "mailcase"


def _lock(conn: Connection) -> bool:
    if is_postgres(conn):
        return bool(conn.execute(sa.text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": BATCH_LOCK_KEY}).scalar())
    return True  # SQLite: BEGIN IMMEDIATE already holds the database's write lock


class _DryRun(Exception):
    """Raised to roll a dry run's transaction back."""

    def __init__(self, result: CutoffResult | None) -> None:
        self.result = result


@dataclass
class BatchRun:
    results: list[CutoffResult] = field(default_factory=list)
    waiting: str = ""
    next_cutoff: datetime | None = None


@dataclass(frozen=True)
class _Next:
    """The next cutoff to close, and what its readiness said."""

    cutoff: datetime
    ready: Readiness


class _Batches:
    """Closes the due cutoffs one transaction at a time.

    The list of due cutoffs is worked out once per run (and again only when
    it is used up, for the clock moves on); a gap of more than
    ``batch.catch_up_business_days`` closes as one catch-up batch.
    """

    def __init__(self, engine: Engine, config: Config, clock: Clock, dry_run: bool) -> None:
        self.engine, self.config, self.clock, self.dry_run = engine, config, clock, dry_run
        self.cal = BusinessCalendar(config.calendar)
        self.run = BatchRun()
        self.plan: CatchUp | None = None

    def step(self) -> bool:
        """Close the next due cutoff; False when none may close now (``run`` says why)."""
        now = self.clock.now()
        try:
            with transaction(self.engine) as conn:
                due = self._next(conn, now)
                if due is None:
                    return False
                result = self._close(conn, due, now)
        except _DryRun as dry:
            if dry.result:
                self.run.results.append(dry.result)
            return False
        except Exception as exc:
            plan = self.plan
            record_failure(self.engine, f"cutoff {plan.cutoffs[0]:%Y-%m-%d %H:%M} UTC" if plan and plan.cutoffs
                           else "cutoffs", now, exc)
            raise
        assert self.plan is not None
        self.plan = CatchUp(self.plan.cutoffs[1:])
        if result is not None:
            self.run.results.append(result)
            log.info("event=cutoff-closed %s", kv(result.summary()))
        return True

    def _next(self, conn: Connection, now: datetime) -> _Next | None:
        """The oldest due cutoff, if it may close (else None, and ``run`` says why)."""
        if not _lock(conn):
            self.run.waiting = "another process is running a batch"
            return None
        batch_start(conn, self.config, now, record=not self.dry_run)
        plan = self._due(conn, now)
        if not plan.cutoffs:
            self.run.next_cutoff = self.cal.next_cutoff(now)
            return None
        cutoff = plan.cutoffs[0]
        ready = readiness(conn, self.config, cutoff, now)
        if not ready.ready:
            self.run.waiting = f"cutoff {cutoff:%Y-%m-%d %H:%M} UTC waits: {ready.waiting_for}"
            return None
        return _Next(cutoff, ready)

    def _due(self, conn: Connection, now: datetime) -> CatchUp:
        """The due cutoffs not closed yet (by this run or another process)."""
        done = last_done(conn)
        if self.plan is not None:
            self.plan = CatchUp([c for c in self.plan.cutoffs if done is None or c > done], self.plan.skipped,
                                self.plan.skipped_from)
        if self.plan is None or not self.plan.cutoffs:
            self.plan = plan_due(conn, self.cal, self.config, now)
        return self.plan

    def _close(self, conn: Connection, due: _Next, now: datetime) -> CutoffResult | None:
        job = CutoffJob(due.cutoff, now, due.ready.late_mailboxes, self.dry_run)
        result = Cutoff(conn, self.config, self.cal, job).run()
        plan = self.plan
        assert plan is not None
        if result is not None and plan.skipped:
            result.caught_up = plan.skipped
            log.warning("event=alert cutoff=%s what=%s", due.cutoff.isoformat(), kv(
                f"{plan.skipped}+ missed cutoffs since {plan.skipped_from:%Y-%m-%d %H:%M} UTC closed as "
                f"one catch-up batch (more than {self.config.batch.catch_up_business_days} business days)"))
        if self.dry_run:
            raise _DryRun(result)
        clear_failure(conn)
        return result


def run_due(engine: Engine, config: Config, clock: Clock, *, dry_run: bool = False, limit: int = 1000) -> BatchRun:
    """Close every due cutoff that may close, oldest first, one transaction each."""
    batches = _Batches(engine, config, clock, dry_run)
    for _ in range(limit):
        if not batches.step():
            break
    return batches.run
