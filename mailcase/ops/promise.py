"""The agreement's promise, watched: cases nearing and passing their due time.

A case is due one business day after the cutoff that processed it and
breached after two (batch.py); what counts is the first human response to
the customer (deliver.py records it).  The service looks every minute: a
case that comes within four hours of its due time, passes it, or passes
its breach time without a human answer gets an event of that name (once)
and a warning in the log (and its owner a mail, staffnews.py); the report
and the metrics count them.
"""

from __future__ import annotations

import logging
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcase.config.settings import Config
from mailcase.core.log import kv
from mailcase.core.states import NOT_DUE_CASE_STATUSES, PromiseState
from mailcase.domain.cases import event
from mailcase.domain.tables import CASE, CASE_EVENT
from mailcase.ops.report import DUE_SOON, promise_state
from mailcase.outbound.staffnews import News, notify_staff

log = logging.getLogger(__name__)

#: event kinds, in the order a case reaches them
STATES: tuple[PromiseState, ...] = tuple(PromiseState)


def watch(conn: Connection, now: datetime, config: Config | None = None) -> list[tuple[int, PromiseState]]:
    """Record (once) the promise state each open, unanswered case has reached; the new ones.
    With ``config``, the case's owner is mailed of each state (once: staffnews.py)."""
    rows = conn.execute(sa.select(CASE).where(
        CASE.c.first_response_at.is_(None), CASE.c.ack_due_at.is_not(None),
        CASE.c.ack_due_at <= now + DUE_SOON,
        CASE.c.status.not_in(NOT_DUE_CASE_STATUSES),
    )).all()
    if not rows:
        return []
    seen = {(r[0], r[1]) for r in conn.execute(
        sa.select(CASE_EVENT.c.case_id, CASE_EVENT.c.kind).where(
            CASE_EVENT.c.case_id.in_([r.id for r in rows]), CASE_EVENT.c.kind.in_([s.value for s in STATES])))}
    new: list[tuple[int, PromiseState]] = []
    for row in rows:
        state = promise_state(row, now)
        if state is None or (row.id, state) in seen:
            continue
        when = row.ack_breach_at if state is PromiseState.BREACHED else row.ack_due_at
        event(conn, row.id, now, "mailcase", state,
              f"no human answer yet; {'breach' if state is PromiseState.BREACHED else 'due'} {when:%Y-%m-%d %H:%M} UTC")
        log.warning("event=promise case=%s state=%s due=%s breach=%s", row.number, state,
                    kv(f"{row.ack_due_at:%Y-%m-%dT%H:%MZ}"), kv(f"{row.ack_breach_at:%Y-%m-%dT%H:%MZ}"))
        if config is not None:
            notify_staff(conn, config, row.id, News(state.value), now, cause=f"case:{row.id}")
        new.append((row.number, state))
    return new


def counts(conn: Connection, now: datetime) -> dict[PromiseState, int]:
    """Open, unanswered cases by promise state (for status and the metrics)."""
    rows = conn.execute(sa.select(CASE.c.ack_due_at, CASE.c.ack_breach_at, CASE.c.first_response_at,
                                  CASE.c.status).where(
        CASE.c.first_response_at.is_(None), CASE.c.ack_due_at.is_not(None),
        CASE.c.ack_due_at <= now + DUE_SOON, CASE.c.status.not_in(NOT_DUE_CASE_STATUSES))).all()
    out = {state: 0 for state in STATES}
    for row in rows:
        state = promise_state(row, now)
        if state is not None:
            out[state] += 1
    return out
