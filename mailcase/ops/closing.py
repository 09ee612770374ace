"""Resolved cases close themselves: no customer mail for ``retention.close_resolved_after_days`` days.

The service's housekeeping (and ``mailcase run --once``) closes every case
resolved at least that long ago whose customer has not written since: its
status becomes closed, ``closed_at`` is set, and an event says why.  A
customer reply reopens a resolved case (rules/threading.py), so it is no
longer resolved and is not closed.  Retention (ops/retention.py) counts a
closed case's mail from its closing.  Running it again closes nothing twice:
only cases still resolved are looked at, and each is closed by one
statement that checks it still is.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mailcase.config.settings import Config
from mailcase.core.states import CaseMessageRole, CaseStatus
from mailcase.domain.cases import event
from mailcase.domain.db import transaction
from mailcase.domain.tables import CASE, CASE_MESSAGE, MESSAGE

log = logging.getLogger(__name__)
#: what the customer's side writes on a case (a staff note is not a reply)
CUSTOMER_ROLES = (CaseMessageRole.REQUEST.value, CaseMessageRole.FOLLOW_UP.value)


def close_resolved(conn: Connection, now: datetime, days: int) -> list[int]:
    """Close the cases resolved ``days`` or more days before ``now`` with no customer mail
    since then; their numbers.  ``days`` 0 closes nothing."""
    if days <= 0:
        return []
    quiet_since = now - timedelta(days=days)
    replied = (
        sa.select(CASE_MESSAGE.c.case_id).join(MESSAGE, MESSAGE.c.id == CASE_MESSAGE.c.message_pk)
        .where(CASE_MESSAGE.c.case_id == CASE.c.id, CASE_MESSAGE.c.role.in_(CUSTOMER_ROLES),
               MESSAGE.c.received_at > quiet_since)
    )
    rows = conn.execute(sa.select(CASE.c.id, CASE.c.number, CASE.c.resolved_at).where(
        CASE.c.status == CaseStatus.RESOLVED.value, CASE.c.resolved_at.is_not(None),
        CASE.c.resolved_at <= quiet_since, ~sa.exists(replied),
    ).order_by(CASE.c.id)).all()
    closed: list[int] = []
    for row in rows:
        done = conn.execute(sa.update(CASE).where(
            CASE.c.id == row.id, CASE.c.status == CaseStatus.RESOLVED.value).values(
            status=CaseStatus.CLOSED.value, closed_at=now)).rowcount
        if not done:
            continue  # reopened or closed meanwhile
        event(conn, row.id, now, "mailcase", CaseStatus.CLOSED,
              f"resolved {row.resolved_at:%Y-%m-%d}; no customer reply for {days} days")
        closed.append(int(row.number))
    return closed


def close_quiet_cases(engine: Engine, config: Config, now: datetime) -> list[int]:
    """Housekeeping: close the quiet resolved cases in a transaction of their own; their numbers."""
    with transaction(engine) as conn:
        closed = close_resolved(conn, now, config.retention.close_resolved_after_days)
    if closed:
        log.info("event=cases-closed cases=%s reason=%s", ",".join(map(str, closed)),
                 f"resolved-and-quiet-{config.retention.close_resolved_after_days}-days")
    return closed
