"""Quarantine: a mail that failed at some stage, kept with its error.

Nothing is dropped: the raw bytes stay in the ledger, the quarantine row says
which stage failed and why (type, message, traceback), and ``retry`` puts the
mail back to the state before that stage so the stage runs again (Mailman's
``unshunt``).
"""

from __future__ import annotations

import traceback as tb_module
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcase.core.errors import UsageError
from mailcase.core.states import RETRY_STATE, MessageState, Stage
from mailcase.domain.tables import MESSAGE, QUARANTINE


@dataclass(frozen=True)
class QuarantineEntry:
    id: int
    message_pk: int
    stage: str
    error_type: str
    error: str
    traceback: str | None
    created_at: datetime
    attempts: int
    resolved_at: datetime | None
    subject: str | None
    from_addr: str | None


def quarantine(
    conn: Connection, message_pk: int, stage: Stage, exc: BaseException, now: datetime, context: str = "",
) -> None:
    """Record the failure and move the message to ``quarantined``.

    ``context`` says what was being done (``making the case(s) of x@y``); a
    mail quarantined at a cutoff is released from that cutoff's claim, so a
    retry puts it back in the next one."""
    attempts = conn.execute(
        sa.select(sa.func.count()).where(
            QUARANTINE.c.message_pk == message_pk, QUARANTINE.c.stage == stage.value
        )
    ).scalar_one()
    conn.execute(
        sa.insert(QUARANTINE).values(
            message_pk=message_pk,
            stage=stage.value,
            error_type=type(exc).__name__,
            error=((f"{context}: " if context else "") + (str(exc) or type(exc).__name__))[:10000],
            traceback="".join(tb_module.format_exception(exc))[-20000:],
            created_at=now,
            attempts=int(attempts) + 1,
            resolved_at=None,
        )
    )
    released = {"batch_id": None} if stage is Stage.BATCH else {}
    conn.execute(
        sa.update(MESSAGE)
        .where(MESSAGE.c.id == message_pk)
        .values(state=MessageState.QUARANTINED.value, state_changed_at=now, **released)
    )


def _entries(conn: Connection, where: sa.ColumnElement[bool]) -> list[QuarantineEntry]:
    rows = conn.execute(
        sa.select(QUARANTINE, MESSAGE.c.subject, MESSAGE.c.from_addr)
        .join(MESSAGE, MESSAGE.c.id == QUARANTINE.c.message_pk)
        .where(where)
        .order_by(QUARANTINE.c.id)
    ).all()
    return [QuarantineEntry(**{k: r._mapping[k] for k in QuarantineEntry.__dataclass_fields__}) for r in rows]


def open_entries(conn: Connection) -> list[QuarantineEntry]:
    return _entries(conn, QUARANTINE.c.resolved_at.is_(None))


def get_entry(conn: Connection, qid: int) -> QuarantineEntry:
    found = _entries(conn, QUARANTINE.c.id == qid)
    if not found:
        raise UsageError(f"no quarantine entry {qid}")
    return found[0]


def retry(conn: Connection, qid: int, now: datetime) -> MessageState:
    """Put the message back before the failed stage; returns its new state."""
    entry = get_entry(conn, qid)
    if entry.resolved_at is not None:
        raise UsageError(f"quarantine entry {qid} was already retried at {entry.resolved_at:%Y-%m-%d %H:%M} UTC")
    state = RETRY_STATE[Stage(entry.stage)]
    conn.execute(sa.update(QUARANTINE).where(QUARANTINE.c.id == qid).values(resolved_at=now))
    conn.execute(
        sa.update(MESSAGE)
        .where(MESSAGE.c.id == entry.message_pk, MESSAGE.c.state == MessageState.QUARANTINED.value)
        .values(state=state.value, state_changed_at=now)
    )
    return state


def retry_all(conn: Connection, now: datetime) -> int:
    ids = [e.id for e in open_entries(conn)]
    for qid in ids:
        retry(conn, qid, now)
    return len(ids)


def auto_retry(conn: Connection, now: datetime, cap: int) -> int:
    """Retry open entries automatically with backoff (5 min, 30 min, 3 h, ...) up to ``cap`` attempts.

    A transient cause (a database hiccup, a bug fixed by an upgrade) heals;
    a mail that fails every time stays quarantined for staff.  Over-size mail
    (the fetch stage) waits for an operator's decision.
    """
    from datetime import timedelta

    done = 0
    for e in open_entries(conn):
        if e.stage == Stage.FETCH.value or e.attempts > cap:
            continue
        created = e.created_at if e.created_at.tzinfo else e.created_at.replace(tzinfo=now.tzinfo)
        if now - created >= timedelta(minutes=5) * (6 ** (e.attempts - 1)):
            retry(conn, e.id, now)
            done += 1
    return done
