"""Staff working a case beyond its lifecycle: severity, notes, merging, and whether it waits for a reply.

The due times (``ack_due_at``/``ack_breach_at``) are one and two business days
after processing whatever the severity (cutoff/plan.py ``Promise``), so a
severity change moves the priority, not the due times.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcase.core.errors import UsageError
from mailcase.core.states import (
    CLOSED_CASE_STATUSES,
    LIVE_OUTBOX_STATUSES,
    OPEN_CASE_STATUSES,
    CaseEventKind,
    CaseMessageRole,
    CaseStatus,
    MailKind,
)
from mailcase.domain.cases import cancel_pending_surveys, event, get_case, priority_for
from mailcase.domain.tables import CASE, CASE_MESSAGE, MESSAGE, OUTBOX
from mailcase.mail.subjects import case_label

#: how many merges are followed from a case to the one that survived (a chain, never a loop)
MAX_MERGE_HOPS = 20

#: outgoing mail that is a human answer to the customer
ANSWER_KINDS = (MailKind.REPLY.value, MailKind.RESOLUTION.value)


def _touch(row: Any, now: datetime) -> dict[str, Any]:
    return {} if row.first_staff_action_at else {"first_staff_action_at": now}


def set_severity(conn: Connection, number: int, severity: int, now: datetime, actor: str) -> tuple[int, int]:
    """Correct the case's severity (and so its priority); (old, new) severity.  The due
    times do not depend on severity (see the module's docstring)."""
    if severity not in (1, 2, 3, 4):
        raise UsageError("severity must be 1, 2, 3 or 4")
    row = get_case(conn, number)
    if row.severity == severity:
        return int(row.severity), severity
    priority = priority_for(severity, bool(row.held), bool(row.out_of_scope))
    conn.execute(sa.update(CASE).where(CASE.c.id == row.id).values(
        severity=severity, priority=priority, **_touch(row, now)))
    event(conn, row.id, now, actor, CaseEventKind.SEVERITY,
          f"S{row.severity} -> S{severity}, priority {row.priority} -> {priority}")
    return int(row.severity), severity


def add_note(conn: Connection, number: int, text: str, now: datetime, actor: str) -> None:
    """A private staff note on the case (never sent to anyone)."""
    text = text.strip()
    if not text:
        raise UsageError("the note is empty: nothing recorded")
    row = get_case(conn, number)
    if not row.first_staff_action_at:
        conn.execute(sa.update(CASE).where(CASE.c.id == row.id).values(first_staff_action_at=now))
    event(conn, row.id, now, actor, CaseEventKind.NOTE, text)


def merge_cases(conn: Connection, into: int, other: int, now: datetime, actor: str) -> int:
    """Merge case ``other`` into case ``into``: its mails move, it closes with a link.
    Returns how many mails moved."""
    if into == other:
        raise UsageError(f"cannot merge case {case_label(into)} into itself")
    a, b = get_case(conn, into), get_case(conn, other)
    if a.merged_into_id is not None or a.status in CLOSED_CASE_STATUSES:
        raise UsageError(f"case {case_label(into)} is {'merged' if a.merged_into_id else a.status}: "
                         "merge into an open case")
    if b.merged_into_id is not None:
        raise UsageError(f"case {case_label(other)} is merged already")
    if a.account_id != b.account_id:
        # B's customer would write into a case whose replies go to another account's requester
        raise UsageError(f"cases {case_label(into)} and {case_label(other)} belong to different accounts: "
                         "only cases of one account merge")
    moved = int(conn.execute(sa.update(CASE_MESSAGE).where(CASE_MESSAGE.c.case_id == b.id)
                             .values(case_id=a.id)).rowcount)
    conn.execute(sa.update(CASE).where(CASE.c.id == b.id).values(
        status=CaseStatus.CLOSED.value, closed_at=now, merged_into_id=a.id, **_touch(b, now)))
    if not a.first_staff_action_at:
        conn.execute(sa.update(CASE).where(CASE.c.id == a.id).values(first_staff_action_at=now))
    cancel_pending_surveys(conn, b.id, f"merged into case {case_label(into)}")
    event(conn, b.id, now, actor, CaseEventKind.MERGED, f"into {case_label(into)}, {moved} mails moved")
    event(conn, a.id, now, actor, CaseEventKind.MERGED, f"{case_label(other)} merged into this case, "
          f"{moved} mails moved")
    return moved


def surviving_case(conn: Connection, row: Any) -> Any:
    """The case a (possibly merged) case's mail belongs to now: merges followed."""
    for _ in range(MAX_MERGE_HOPS):
        if row is None or getattr(row, "merged_into_id", None) is None:
            return row
        nxt = conn.execute(sa.select(CASE).where(CASE.c.id == row.merged_into_id)).first()
        if nxt is None:
            return row
        row = nxt
    return row


def waiting_cases(conn: Connection, case_ids: Sequence[int]) -> set[int]:
    """Of these cases, the open ones waiting for a human reply: no reply or resolution
    queued or sent (and no first response), or the customer wrote after the last one."""
    if not case_ids:
        return set()
    ids = list(case_ids)
    rows = conn.execute(sa.select(CASE.c.id, CASE.c.status, CASE.c.first_response_at)
                        .where(CASE.c.id.in_(ids))).all()
    last_in = dict(conn.execute(
        sa.select(CASE_MESSAGE.c.case_id, sa.func.max(MESSAGE.c.received_at))
        .join(MESSAGE, MESSAGE.c.id == CASE_MESSAGE.c.message_pk)
        .where(CASE_MESSAGE.c.case_id.in_(ids),
               CASE_MESSAGE.c.role.in_([CaseMessageRole.REQUEST.value, CaseMessageRole.FOLLOW_UP.value]))
        .group_by(CASE_MESSAGE.c.case_id)).all())
    last_out = dict(conn.execute(
        sa.select(OUTBOX.c.case_id, sa.func.max(OUTBOX.c.created_at))
        .where(OUTBOX.c.case_id.in_(ids), OUTBOX.c.kind.in_(ANSWER_KINDS),
               OUTBOX.c.status.in_(LIVE_OUTBOX_STATUSES))
        .group_by(OUTBOX.c.case_id)).all())
    out: set[int] = set()
    for r in rows:
        if r.status not in OPEN_CASE_STATUSES:
            continue
        # a reply queued counts as answered: sending it is the outbox's job, not a human's
        answered, wrote = last_out.get(r.id) or r.first_response_at, last_in.get(r.id)
        if answered is None or (wrote is not None and _utc(wrote) > _utc(answered)):
            out.add(int(r.id))
    return out


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive UTC from an aggregate: compare as UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)
