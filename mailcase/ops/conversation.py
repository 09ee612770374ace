"""A case's conversation in order: what the customer wrote, staff notes, what we sent.

A customer mail shows its new text (the stored reply text: quoted history
trimmed) or, ``full``, the whole stored text; both had their PINs redacted
when stored and are redacted again here.  What we sent is read back from the
outbox row's own bytes (its plain-text part).
"""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email.message import Message as EmailMessage
from email.policy import compat32
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcase.core.states import CaseEventKind
from mailcase.domain.cases import CaseView, case_detail
from mailcase.domain.tables import CASE, CASE_MESSAGE, MESSAGE, OUTBOX, PARSED_MAIL
from mailcase.mail.charsets import decode_text
from mailcase.mail.pins import redact


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def sent_text(raw: bytes | None) -> str:
    """The plain-text part of a mail we composed (the first text/plain leaf)."""
    if not raw:
        return ""
    try:
        msg = email.message_from_bytes(raw, policy=compat32)
    except Exception:
        return ""
    part: EmailMessage
    for part in msg.walk():
        if part.get_content_type() == "text/plain" and not part.is_multipart() \
                and (part.get_content_disposition() or "inline") == "inline":
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                return decode_text(data, part.get_content_charset()).replace("\r\n", "\n").strip()
    return ""


def conversation(conn: Connection, number: int, full: bool = False) -> dict[str, Any]:
    """The case, its conversation (oldest first) and its events."""
    view, _, events = case_detail(conn, number)
    items: list[dict[str, Any]] = []
    for m in conn.execute(
        sa.select(MESSAGE.c.id, MESSAGE.c.received_at, MESSAGE.c.from_addr, MESSAGE.c.subject, CASE_MESSAGE.c.role,
                  PARSED_MAIL.c.text_body, PARSED_MAIL.c.reply_text, PARSED_MAIL.c.attachments)
        .join(CASE_MESSAGE, CASE_MESSAGE.c.message_pk == MESSAGE.c.id)
        .outerjoin(PARSED_MAIL, PARSED_MAIL.c.message_pk == MESSAGE.c.id)
        .where(CASE_MESSAGE.c.case_id == view.id)
    ):
        whole = m.text_body or ""
        text = whole if full or m.reply_text is None else m.reply_text
        items.append({
            "type": "mail", "at": _utc(m.received_at), "message": m.id, "role": m.role, "from": m.from_addr,
            "subject": m.subject, "text": redact(text.strip()), "trimmed": not full and m.reply_text is not None,
            "attachments": [{"name": a.get("name"), "content_type": a.get("content_type"), "size": a.get("size")}
                            for a in (m.attachments or [])],
        })
    merged_from = [int(r[0]) for r in conn.execute(sa.select(CASE.c.id).where(CASE.c.merged_into_id == view.id))]
    into = CASE.alias("into")
    merged_into = conn.execute(sa.select(into.c.number).join(CASE, CASE.c.merged_into_id == into.c.id)
                               .where(CASE.c.id == view.id)).scalar()
    for o in conn.execute(
        sa.select(OUTBOX.c.id, OUTBOX.c.created_at, OUTBOX.c.sent_at, OUTBOX.c.kind, OUTBOX.c.to_addr,
                  OUTBOX.c.status, OUTBOX.c.subject, OUTBOX.c.raw)
        .where(OUTBOX.c.case_id.in_([view.id, *merged_from]))
    ):
        items.append({
            "type": "sent", "at": _utc(o.created_at), "outbox": o.id, "kind": o.kind, "to": o.to_addr,
            "status": o.status, "sent_at": _utc(o.sent_at), "subject": o.subject, "text": redact(sent_text(o.raw)),
        })
    for e in events:
        if e.kind == CaseEventKind.NOTE.value:
            items.append({"type": "note", "at": _utc(e.at), "by": e.actor, "text": redact(e.detail)})
    order = {"mail": 0, "note": 1, "sent": 2}
    items.sort(key=lambda i: (i["at"] or datetime.min.replace(tzinfo=UTC), order[i["type"]],
                              i.get("message") or i.get("outbox") or 0))
    return {"case": view, "merged_into": merged_into, "conversation": items,
            "events": [{"at": _utc(e.at), "actor": e.actor, "kind": e.kind,
                        "detail": redact(e.detail) if e.kind == CaseEventKind.NOTE.value else e.detail}
                       for e in events]}


def case_dict(v: CaseView) -> dict[str, Any]:
    return {k: getattr(v, k) for k in v.__dataclass_fields__}
