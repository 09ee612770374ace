"""Which cutoffs are due, and whether the next may close.

"Close every due cutoff", not "run at 09:30": each cutoff between the last
one done and now, oldest first; after a long gap the missed ones fold into
one catch-up batch.  A cutoff C closes only when every enabled mailbox has
completed a sync that started after C and all mail received before C is
classified.  A mailbox unreachable for longer than the grace period lets C
close with an alert; its late mail joins the next cutoff, marked late.
A cutoff that fails as a whole is kept under :data:`ERROR_KEY` for
``status`` until one closes again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mailcase.config.settings import Config
from mailcase.core.states import MessageState
from mailcase.domain import service_state
from mailcase.domain.calendar import BusinessCalendar
from mailcase.domain.db import transaction
from mailcase.domain.tables import BATCH, MAILBOX_STATE, MESSAGE

#: where a cutoff that failed as a whole is kept for ``status``
ERROR_KEY = "cutoff-error"


def last_done(conn: Connection) -> datetime | None:
    value: datetime | None = conn.execute(sa.select(sa.func.max(BATCH.c.cutoff_at))).scalar()
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


START_KEY = "batch-start"


def batch_start(conn: Connection, config: Config, now: datetime, record: bool = False) -> datetime:
    """Where a fresh database's cutoffs begin: ``batch.start_at``, else the moment
    this database first ran the cutoff stage (recorded then, with ``record``)."""
    configured = config.batch.start()
    if configured is not None:
        return configured
    found = service_state.get(conn, START_KEY)
    if found is None and record:
        found = service_state.put_once(conn, START_KEY, now.isoformat(), now)
    return datetime.fromisoformat(found[0]) if found else now


def due_cutoffs(conn: Connection, cal: BusinessCalendar, now: datetime, config: Config | None = None,
                limit: int | None = None) -> list[datetime]:
    """The cutoffs that have passed and not been closed, oldest first (at most ``limit``).

    After the last closed cutoff; on a fresh database from the first cutoff
    after both the oldest waiting mail and the start (:func:`batch_start`):
    a mail dated 1971 does not make the desk walk through fifty years.
    """
    last = last_done(conn)
    if last is None:
        first = conn.execute(
            sa.select(sa.func.min(MESSAGE.c.received_at)).where(
                MESSAGE.c.state.in_([MessageState.PENDING.value, MessageState.HEADERS_READ.value,
                                     MessageState.PARSED.value]),
                MESSAGE.c.historical.is_(False),
            )
        ).scalar()
        if first is None:
            return []
        if first.tzinfo is None:
            first = first.replace(tzinfo=UTC)
        start = batch_start(conn, config, now) if config is not None else first
        last = max(cal.cutoff_for(first), cal.next_cutoff(start)) - timedelta(microseconds=1)
    return cal.cutoffs_between(last, now, limit=limit)


@dataclass(frozen=True)
class CatchUp:
    """The cutoffs a run will close: one by one, or (after a long gap) the last alone."""

    cutoffs: list[datetime]
    skipped: int = 0           # cutoffs folded into the catch-up batch
    skipped_from: datetime | None = None


def plan_due(conn: Connection, cal: BusinessCalendar, config: Config, now: datetime) -> CatchUp:
    """The due cutoffs, computed once per run; more than ``batch.catch_up_business_days``
    business days of them become one catch-up batch at the last."""
    days = config.batch.catch_up_business_days
    # enough to tell whether the gap is longer than the limit, never the whole gap
    limit = (days + 1) * cal.cutoffs_per_day
    head = due_cutoffs(conn, cal, now, config, limit=limit)
    if not head:
        return CatchUp([])
    if len(head) < limit and len({cal.local_date(c) for c in head}) <= days:
        return CatchUp(head)
    last = cal.previous_cutoff(now)
    assert last is not None
    skipped = len(head)  # at least this many; the exact count is not worth walking the gap for
    return CatchUp([last], skipped=skipped, skipped_from=head[0])


@dataclass(frozen=True)
class Readiness:
    ready: bool
    late_mailboxes: tuple[str, ...] = ()
    waiting_for: str = ""


def readiness(conn: Connection, config: Config, cutoff: datetime, now: datetime) -> Readiness:
    grace = timedelta(minutes=config.batch.mailbox_grace_minutes)
    late: list[str] = []
    for box in config.mailboxes:
        if not box.enabled:
            continue
        row = conn.execute(sa.select(MAILBOX_STATE.c.last_sync_ok_started_at)
                           .where(MAILBOX_STATE.c.name == box.name)).first()
        synced = row[0] if row else None
        if synced is not None and synced >= cutoff:
            continue
        if now - cutoff >= grace:
            late.append(box.name)
            continue
        return Readiness(False, waiting_for=f"mailbox {box.name} has not completed a sync that started "
                                             f"after the cutoff (grace until {cutoff + grace:%H:%M} UTC)")
    unclassified = conn.execute(
        sa.select(sa.func.count()).select_from(MESSAGE).where(
            MESSAGE.c.received_at < cutoff, MESSAGE.c.historical.is_(False),
            MESSAGE.c.state.in_([MessageState.STORED.value, MessageState.HEADERS_READ.value,
                                 MessageState.PARSED.value]),
        )
    ).scalar_one()
    if unclassified:
        return Readiness(False, tuple(late), f"{unclassified} mails received before the cutoff are not classified yet")
    return Readiness(True, tuple(late))


def record_failure(engine: Engine, what: str, now: datetime, exc: BaseException) -> None:
    """A cutoff (``what``) that failed as a whole is shown by ``status`` until one closes again."""
    try:
        with transaction(engine) as conn:
            found = service_state.get(conn, ERROR_KEY)
            since = found[1] if found else now
            service_state.put(conn, ERROR_KEY, f"{what}: {type(exc).__name__}: {exc}"[:2000], since)
    except Exception:
        pass  # the database is what failed: the log has it


def clear_failure(conn: Connection) -> None:
    """A cutoff closed: no failure to show any more."""
    service_state.delete(conn, ERROR_KEY)
