"""Mail staff cause on a case: replies (and previews of any template).

A staff reply goes to the case's requester (and a copy to each colleague
the case copies: outbound/copies.py) in the case's thread
(In-Reply-To the newest mail of the case, References the thread), with the
case token in the subject.  Its idempotency key includes a hash of the text,
so re-running the same command queues nothing twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcase.config.settings import Config
from mailcase.core.states import LIVE_OUTBOX_STATUSES, CaseEventKind, CaseMessageRole, CaseStatus, MailKind
from mailcase.domain.calendar import BusinessCalendar
from mailcase.domain.cases import event, get_case
from mailcase.domain.tables import CASE, CASE_MESSAGE, MESSAGE, OUTBOX, PERSON, SPECIALIST
from mailcase.outbound.compose import OutgoingAttachment, OutgoingMail, with_token
from mailcase.outbound.copies import colleagues, enqueue_copied
from mailcase.outbound.render import Rendered, render, templates
from mailcase.rules.severity import NAMES as SEVERITY_NAMES


def case_view(row: Any) -> dict[str, Any]:
    repeat = next((int(f.rsplit("-", 1)[1]) for f in (row.flags or []) if f.startswith("repeats-case-")), None)
    return {"number": row.number, "subject": row.subject,
            "severity_name": SEVERITY_NAMES.get(row.severity, str(row.severity)), "repeat_of": repeat}


def thread(conn: Connection, case_id: int) -> tuple[str | None, tuple[str, ...]]:
    """(newest Message-ID of the case, the thread's Message-IDs oldest first): ours and theirs,
    as the customer saw them (staff notes and our mail to staff are not theirs to see)."""
    theirs = conn.execute(
        sa.select(MESSAGE.c.message_id, MESSAGE.c.received_at)
        .join(CASE_MESSAGE, CASE_MESSAGE.c.message_pk == MESSAGE.c.id)
        .where(CASE_MESSAGE.c.case_id == case_id, CASE_MESSAGE.c.role != CaseMessageRole.STAFF_NOTE.value)
    ).all()
    ours = conn.execute(
        sa.select(OUTBOX.c.message_id, OUTBOX.c.created_at).where(
            sa.or_(OUTBOX.c.case_id == case_id), OUTBOX.c.status.in_(LIVE_OUTBOX_STATUSES),
            OUTBOX.c.kind != MailKind.STAFF.value)
    ).all()
    ordered = sorted(((at, mid) for mid, at in list(theirs) + list(ours) if at is not None), key=lambda t: t[0])
    ids = tuple(dict.fromkeys(mid for _, mid in ordered))  # a mail and its colleagues' copies share one id
    return (ids[-1] if ids else None), ids


def _base(config: Config) -> dict[str, Any]:
    return {"signature": f"{config.outgoing.from_name}\n{config.outgoing.from_address}"}


def requester_name(conn: Connection, row: Any) -> str:
    """The directory's name of the case's requester, or "" (never the display name they wrote)."""
    if row.person_id is None:
        return ""
    return str(conn.execute(sa.select(PERSON.c.name).where(PERSON.c.id == row.person_id)).scalar() or "")


def queue_reply(
    conn: Connection, config: Config, number: int, body: str, staff: str | None, now: datetime, actor: str,
    attachments: Sequence[OutgoingAttachment] = (), source: str = "",
) -> str:
    """Queue a staff reply to the customer; its key is the text, the files and ``source`` (the
    staff mail it came from, if any): the same command run twice queues once, while two
    mails from staff that happen to say the same thing are two replies."""
    row = get_case(conn, number)
    staff_name = staff or conn.execute(
        sa.select(SPECIALIST.c.name).where(SPECIALIST.c.id == row.owner_id)).scalar() or actor
    parent, refs = thread(conn, row.id)
    rendered = render(templates(config.outgoing.templates_dir), "reply", {
        **_base(config), "cases": [case_view(row)], "body": body.strip(), "staff_name": staff_name,
    })
    digest = hashlib.sha256(body.strip().encode() + (b"\0" + source.encode() if source else b""))
    for a in attachments:  # the same text with other files is another mail; the same files, the same
        digest.update(b"\0" + a.name.encode("utf-8", "surrogateescape") + b"\0" + hashlib.sha256(a.data).digest())
    key = f"reply:case:{row.id}:{digest.hexdigest()[:16]}"
    queued = enqueue_copied(conn, OutgoingMail(
        key=key, kind=MailKind.REPLY, notice_kind=None, to_addr=row.requester, to_name="", rendered=rendered,
        case_id=row.id, case_number=row.number, in_reply_to=parent, references=refs,
        attachments=tuple(attachments),
    ), colleagues(conn, row, now), config, config.hmac_key(), now)
    if queued:
        values: dict[str, Any] = {}
        if row.first_staff_action_at is None:
            values["first_staff_action_at"] = now
        if row.status in (CaseStatus.NEW, CaseStatus.ACKNOWLEDGED):
            values["status"] = CaseStatus.IN_PROGRESS.value
        if values:
            conn.execute(sa.update(CASE).where(CASE.c.id == row.id).values(**values))
        files = f", attached {', '.join(a.name for a in attachments)}" if attachments else ""
        event(conn, row.id, now, actor, CaseEventKind.REPLY, f"by {staff_name}{files}")
    return key


def preview(conn: Connection, config: Config, kind: MailKind, number: int, notice_kind: str, now: datetime) -> Rendered:
    row = get_case(conn, number)
    cal = BusinessCalendar(config.calendar)
    zone = cal.zone
    received = row.received_at or now
    view = case_view(row)
    base = _base(config) | {"requester": row.requester, "requester_name": requester_name(conn, row), "cases": [view]}
    if kind is MailKind.ACK:
        processed = row.processed_at or cal.cutoff_for(received)
        variables = base | {
            "case": view, "other_cases": [], "cutoff": processed.astimezone(zone),
            "cutoff_words": cal.describe_cutoffs(),
            "promise_due": (row.ack_due_at or cal.add_business_days(processed, 1)).astimezone(zone),
            "promise_breach": (row.ack_breach_at or cal.add_business_days(processed, 2)).astimezone(zone),
            "suggestions": [],
        }
    elif kind is MailKind.NOTICE:
        variables = base | {
            "notice": notice_kind, "original_subject": row.subject, "account_name": "",
            "administrators": [], "pin_locked": False, "scope_category": "coding", "pin_problem": "pin-missing",
        }
    else:
        variables = base | {"body": "(your reply here)", "staff_name": "(specialist)"}
    rendered = render(templates(config.outgoing.templates_dir), kind, variables)
    return Rendered(with_token(rendered.subject, row.number), rendered.text, rendered.html)
