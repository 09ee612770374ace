"""What the service is doing, from the database: for `mailcase status` and metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mailcase.batch import due_cutoffs, readiness
from mailcase.calendar import BusinessCalendar
from mailcase.clock import Clock, is_test_clock
from mailcase.config import Config
from mailcase.fetch import MAILBOX_STATE
from mailcase.ledger import MESSAGE, QUARANTINE, RAW_COPY
from mailcase.oauth import TokenHealth, health
from mailcase.outbox import OUTBOX
from mailcase.states import MessageState


@dataclass
class MailboxStatus:
    name: str
    kind: str
    enabled: bool
    mode: str | None
    state: str | None
    state_since: datetime | None
    detail: str | None
    last_sync_ok_at: datetime | None
    heartbeat_at: datetime | None
    worker: str | None
    token: TokenHealth | None
    pending: int


@dataclass
class Status:
    now: datetime
    test_clock: bool
    sender_authentication: str
    mailboxes: list[MailboxStatus] = field(default_factory=list)
    pending_mail: int = 0
    unclassified_mail: int = 0
    next_cutoff: datetime | None = None
    due_cutoff: datetime | None = None
    cutoff_blocked: str | None = None
    outbox_queued: int = 0
    outbox_failed: int = 0
    outbox_capped: int = 0
    outbox_suppressed: int = 0
    quarantined: int = 0
    held_for_review: int = 0
    open_cases: int = 0


def _count(conn: sa.Connection, q: sa.Select[Any]) -> int:
    return int(conn.execute(q).scalar_one())


def collect(engine: Engine, config: Config, clock: Clock) -> Status:
    now = clock.now()
    auth = (f"authserv-id {config.rules.authserv_id}" if config.rules.sender_authentication == "authserv-id"
            else "insecure-off: sender authentication is OFF (anyone can claim a representative's address)")
    st = Status(now, is_test_clock(clock), auth)
    cal = BusinessCalendar(config.calendar)
    with engine.connect() as conn:
        states = {r.name: r for r in conn.execute(sa.select(MAILBOX_STATE))}
        pending_by_box: dict[Any, Any] = dict(conn.execute(
            sa.select(RAW_COPY.c.mailbox, sa.func.count(sa.distinct(MESSAGE.c.id)))
            .join(MESSAGE, MESSAGE.c.id == RAW_COPY.c.message_pk)
            .where(MESSAGE.c.state == MessageState.PENDING.value).group_by(RAW_COPY.c.mailbox)
        ).all())
        for box in config.mailboxes:
            row = states.get(box.name)
            token = health(engine, f"imap:{box.name}", now) if box.auth != "password" else None
            st.mailboxes.append(MailboxStatus(
                box.name, box.kind, box.enabled, row.mode if row else None, row.worker_state if row else None,
                row.worker_state_at if row else None, row.last_error if row else None,
                row.last_sync_ok_at if row else None, row.heartbeat_at if row else None,
                row.worker if row else None, token, int(pending_by_box.get(box.name, 0)),
            ))
        st.pending_mail = _count(conn, sa.select(sa.func.count()).where(MESSAGE.c.state == MessageState.PENDING.value))
        st.unclassified_mail = _count(conn, sa.select(sa.func.count()).where(MESSAGE.c.state.in_(
            [MessageState.STORED.value, MessageState.HEADERS_READ.value, MessageState.PARSED.value])))
        st.held_for_review = _count(conn, sa.select(sa.func.count()).where(MESSAGE.c.state == MessageState.HELD.value))
        st.quarantined = _count(conn, sa.select(sa.func.count()).where(QUARANTINE.c.resolved_at.is_(None)))
        for status_name, attr in (("queued", "outbox_queued"), ("failed", "outbox_failed"),
                                  ("capped", "outbox_capped"), ("suppressed", "outbox_suppressed")):
            setattr(st, attr, _count(conn, sa.select(sa.func.count()).where(OUTBOX.c.status == status_name)))
        from mailcase.cases import CASE, OPEN

        st.open_cases = _count(conn, sa.select(sa.func.count()).where(CASE.c.status.in_([s.value for s in OPEN])))
        due = due_cutoffs(conn, cal, now)
        if due:
            st.due_cutoff = due[0]
            ready = readiness(conn, config, due[0], now)
            st.cutoff_blocked = None if ready.ready else ready.waiting_for
    st.next_cutoff = cal.next_cutoff(now)
    return st
