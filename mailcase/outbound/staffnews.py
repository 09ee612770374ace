"""News of a case mailed to staff: its owner, or the tier it was escalated to.

The owner hears when a case is assigned (at the cutoff and by ``case
assign``), when the customer writes again, when the case reopens, and when
it nears, passes and breaches its due time; ``case escalate`` mails the new
tier's address (``[staff] tier_addresses``).  Each mail carries the case
token, what happened, the customer's new text (quoted history trimmed, PINs
redacted: the parse worker's reply text) and the attachment names.

It goes only to a staff address (configured staff, a specialist's, a tier's):
any other recipient is refused.  It is ``Auto-Submitted: auto-generated``,
kind ``staff`` (never a response to the customer, never capped), queued
once under a key naming the case, the news and what caused it, so re-running
sends nothing twice.  Mail staff send back is a note or a reply
(rules/staff.py), never news: nothing here answers itself.
"""

from __future__ import annotations

import logging
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcase.config.settings import Config
from mailcase.core.log import kv
from mailcase.core.states import CaseEventKind, CaseMessageRole, MailKind
from mailcase.domain.calendar import BusinessCalendar
from mailcase.domain.cases import event, staff_addresses
from mailcase.domain.db import is_outage
from mailcase.domain.tables import ACCOUNT, CASE, CASE_MESSAGE, PARSED_MAIL, SPECIALIST
from mailcase.mail.addresses import domain_of
from mailcase.mail.quoting import latest_reply
from mailcase.outbound.compose import OutgoingMail
from mailcase.outbound.outbox import OutboxQueue, enqueue
from mailcase.outbound.render import render, templates
from mailcase.rules.severity import NAMES as SEVERITY_NAMES

log = logging.getLogger(__name__)

#: the most of the customer's text a notification quotes
TEXT_LIMIT = 8000
#: a cutoff's notifications written at once
_CHUNK = 500


class News(StrEnum):
    """What a notification tells (the outbox key and the subject name it)."""

    ASSIGNED = "assigned"
    FOLLOW_UP = "follow-up"
    REOPENED = "reopened"
    DUE_SOON = "due-soon"
    OVERDUE = "overdue"
    BREACHED = "breached"
    ESCALATED = "escalated"


HEADLINES: dict[News, str] = {
    News.ASSIGNED: "Assigned to you",
    News.FOLLOW_UP: "Customer wrote again",
    News.REOPENED: "Reopened by the customer",
    News.DUE_SOON: "Due soon",
    News.OVERDUE: "Overdue",
    News.BREACHED: "Breached",
    News.ESCALATED: "Escalated",
}

WHAT: dict[News, str] = {
    News.ASSIGNED: "The case was assigned to you.",
    News.FOLLOW_UP: "The customer wrote again on the case.",
    News.REOPENED: "The customer replied to the resolved case: it is open again.",
    News.DUE_SOON: "The case nears its due time without a human answer.",
    News.OVERDUE: "The case passed its due time without a human answer.",
    News.BREACHED: "The case passed its breach time without a human answer.",
    News.ESCALATED: "The case was escalated to your tier.",
}


def is_staff_recipient(conn: Connection, config: Config, address: str,
                       specialists: frozenset[str] | None = None) -> bool:
    """May news of a case go to ``address``: configured staff, a specialist's or a tier's address
    (``specialists``: :func:`staff_addresses`, if the caller read it already)."""
    address = address.lower()
    staff = config.staff
    if specialists is None:
        specialists = staff_addresses(conn)
    if address in {a.lower() for a in staff.addresses} or address in specialists:
        return True
    if address in {a.lower() for a in staff.tier_addresses.values()}:
        return True
    return any(domain_of(address) == d.lower().lstrip("@") for d in staff.domains)


_TEXT_COLUMNS = (PARSED_MAIL.c.message_pk, PARSED_MAIL.c.reply_text, PARSED_MAIL.c.text_body,
                 PARSED_MAIL.c.attachments)


def _text_of(row: Any) -> tuple[str, list[str]]:
    """The newest part of a parsed mail's text (PINs redacted) and its attachments' names."""
    text = row.reply_text if row.reply_text is not None else latest_reply(row.text_body or "")
    text = text.strip()
    if len(text) > TEXT_LIMIT:
        text = text[:TEXT_LIMIT] + "\n[...]"
    names = [str(a.get("name") or a.get("filename") or "(unnamed)") for a in (row.attachments or [])
             if isinstance(a, dict)]
    return text, names


def _customer_text(conn: Connection, message_pk: int | None) -> tuple[str, list[str]]:
    """The newest part of a mail's text (PINs redacted) and its attachments' names."""
    if message_pk is None:
        return "", []
    row = conn.execute(sa.select(*_TEXT_COLUMNS).where(PARSED_MAIL.c.message_pk == message_pk)).first()
    return ("", []) if row is None else _text_of(row)


def _case_rows() -> sa.Select[Any]:
    """Cases with their account's code and their owner's address."""
    return (sa.select(CASE, ACCOUNT.c.code.label("account_code"), SPECIALIST.c.address.label("owner_address"))
            .outerjoin(ACCOUNT, ACCOUNT.c.id == CASE.c.account_id)
            .outerjoin(SPECIALIST, SPECIALIST.c.id == CASE.c.owner_id))


def _recipient(conn: Connection, config: Config, case: Any, news: News, to: str | None,
               staff: frozenset[str] | None = None) -> str | None:
    """Who hears ``news`` of ``case``: ``to`` or its owner, if that is a staff address
    (``staff``: the specialists' addresses, read once by a caller with many cases)."""
    recipient = (to or case.owner_address or "").strip().lower()
    if not recipient:
        return None
    if not is_staff_recipient(conn, config, recipient, staff) or recipient == (case.requester or "").lower():
        log.warning("event=staff-news-refused case=%s news=%s to=%s reason=%s", case.number, news,
                    kv(recipient), kv("not a staff, specialist or tier address"))
        return None
    return recipient


def _news_mail(config: Config, case: Any, news: News, recipient: str, text: str, attachments: list[str], *,
               cause: str, message_pk: int | None, detail: str = "") -> OutgoingMail:
    """The rendered notification (a template that cannot be rendered raises here)."""
    zone = BusinessCalendar(config.calendar).zone
    promise = news in (News.DUE_SOON, News.OVERDUE, News.BREACHED)
    headline = HEADLINES[news] + (f" to {case.tier}" if news is News.ESCALATED else "")
    variables: dict[str, Any] = {
        "headline": headline, "what": WHAT[news] + (f" {detail}" if detail else ""),
        "case": {"number": case.number, "subject": case.subject, "requester": case.requester,
                 "account": case.account_code or "", "tier": case.tier, "status": case.status,
                 "severity_name": SEVERITY_NAMES.get(case.severity, str(case.severity))},
        "due": case.ack_due_at.astimezone(zone) if promise and case.ack_due_at else None,
        "breach": case.ack_breach_at.astimezone(zone) if promise and case.ack_breach_at else None,
        "text": text, "attachments": attachments,
        "marker": config.staff.reply_marker, "reply_address": config.staff.reply_address or "",
    }
    rendered = render(templates(config.outgoing.templates_dir), MailKind.STAFF.value, variables)
    return OutgoingMail(
        key=f"staff:{news.value}:case:{case.id}:{cause}", kind=MailKind.STAFF, notice_kind=None,
        to_addr=recipient, to_name="", rendered=rendered, case_id=case.id, case_number=case.number,
        message_pk=message_pk,
    )


def _failed(case: Any, news: News, recipient: str, exc: Exception) -> None:
    """A notification is a courtesy to staff: one that cannot be rendered or queued (a
    broken staff.txt.j2 in the override folder, an address the outbox refuses) is logged
    and never stops the cutoff, the classify stage or the command behind it."""
    if is_outage(exc):
        raise exc
    log.error("event=staff-news-failed case=%s news=%s to=%s error=%s", case.number, news.value,
              kv(recipient), kv(f"{type(exc).__name__}: {exc}"))


def notify_staff(
    conn: Connection, config: Config, case_id: int, news: News, now: datetime, *, cause: str,
    message_pk: int | None = None, to: str | None = None, detail: str = "",
) -> bool:
    """Queue ``news`` of the case for its owner (or ``to``); False if nothing was queued.

    ``cause`` makes the key: the same news of the same cause is queued once.
    """
    if not config.staff.notify:
        return False
    case = conn.execute(_case_rows().where(CASE.c.id == case_id)).first()
    if case is None:
        return False
    recipient = _recipient(conn, config, case, news, to)
    if recipient is None:
        return False
    if message_pk is None:  # news of the case itself (escalated, due): the customer's latest mail
        message_pk = conn.execute(sa.select(sa.func.max(CASE_MESSAGE.c.message_pk)).where(
            CASE_MESSAGE.c.case_id == case.id,
            CASE_MESSAGE.c.role.in_([CaseMessageRole.REQUEST.value, CaseMessageRole.FOLLOW_UP.value]))).scalar()
    text, attachments = _customer_text(conn, message_pk)
    try:
        with conn.begin_nested():
            mail = _news_mail(config, case, news, recipient, text, attachments, cause=cause,
                              message_pk=message_pk, detail=detail)
            return enqueue(conn, mail, config, config.hmac_key(), now)
    except Exception as exc:
        _failed(case, news, recipient, exc)
        return False


def customer_wrote(conn: Connection, config: Config, case_id: int, message_pk: int, sender: str,
                   now: datetime, reopened: bool) -> bool:
    """The customer wrote again: an event (a reopening has its own), and the owner hears.

    The status stays (states.py): an open case is still acknowledged, in progress
    or escalated -- a customer's mail is no staff work; a resolved one reopens
    (record.py).
    """
    if not reopened:
        event(conn, case_id, now, "mailcase", CaseEventKind.FOLLOW_UP, f"from {sender} (mail #{message_pk})")
    news = News.REOPENED if reopened else News.FOLLOW_UP
    return notify_staff(conn, config, case_id, news, now, cause=f"mail:{message_pk}", message_pk=message_pk)


def notify_assigned(conn: Connection, config: Config, case_id: int, now: datetime) -> bool:
    """The case's owner hears it is theirs (once per case and owner)."""
    owner = conn.execute(sa.select(CASE.c.owner_id).where(CASE.c.id == case_id)).scalar()
    if owner is None:
        return False
    first = conn.execute(sa.select(sa.func.min(CASE_MESSAGE.c.message_pk)).where(
        CASE_MESSAGE.c.case_id == case_id, CASE_MESSAGE.c.role == CaseMessageRole.REQUEST.value)).scalar()
    return notify_staff(conn, config, case_id, News.ASSIGNED, now, cause=f"owner:{owner}", message_pk=first)


def notify_batch_assigned(conn: Connection, config: Config, batch_id: int, now: datetime) -> int:
    """The owners of a cutoff's new cases hear of them; how many mails were queued.

    An owner given at most ``[staff] digest_over`` cases gets a mail per case;
    one given more gets one digest listing them (:func:`_digest_mail`): after
    a long weekend, a few hundred mails at 09:30 would bury the cases in the
    owner's inbox, and each costs the cutoff a render and a MIME mail.

    A cutoff makes thousands of cases: their rows, first requests and texts are
    read in a few queries and the mails go into one outbox queue (an insert per
    500), not a savepoint, four queries and an insert per case.  A mail that
    cannot be rendered or composed is left out (logged); if the database
    refuses the queued rows, each case is notified again on its own.
    """
    if not config.staff.notify:
        return 0
    first = (sa.select(sa.func.min(CASE_MESSAGE.c.message_pk))
             .where(CASE_MESSAGE.c.case_id == CASE.c.id, CASE_MESSAGE.c.role == CaseMessageRole.REQUEST.value)
             .scalar_subquery().label("first_pk"))
    cases = conn.execute(_case_rows().add_columns(first)
                         .where(CASE.c.batch_id == batch_id, CASE.c.owner_id.is_not(None))
                         .order_by(CASE.c.id)).all()
    if not cases:
        return 0
    pks = sorted({c.first_pk for c in cases if c.first_pk is not None})
    texts: dict[int, tuple[str, list[str]]] = {}
    for i in range(0, len(pks), 500):
        texts.update((r.message_pk, _text_of(r)) for r in conn.execute(
            sa.select(*_TEXT_COLUMNS).where(PARSED_MAIL.c.message_pk.in_(pks[i : i + 500]))))
    specialists = staff_addresses(conn)
    by_owner: dict[str, list[Any]] = {}
    for case in cases:
        recipient = _recipient(conn, config, case, News.ASSIGNED, None, specialists)
        if recipient is not None:
            by_owner.setdefault(recipient, []).append(case)
    queue = OutboxQueue(conn, config, config.hmac_key(), now, size=_CHUNK + 1)  # flushed below, per chunk
    # each unit: one owner's digest, or up to _CHUNK (recipient, case) mailed one by one
    units: list[tuple[bool, list[tuple[str, Any]]]] = []
    single: list[tuple[str, Any]] = []
    for recipient, group in by_owner.items():
        if len(group) > config.staff.digest_over:  # most severe first, at most DIGEST_CASES a mail
            group.sort(key=lambda c: (c.severity, c.number))
            units.extend((True, [(recipient, case) for case in group[i : i + DIGEST_CASES]])
                         for i in range(0, len(group), DIGEST_CASES))
        else:
            single.extend((recipient, case) for case in group)
    single.sort(key=lambda rc: rc[1].id)
    units.extend((False, single[i : i + _CHUNK]) for i in range(0, len(single), _CHUNK))
    queued = 0
    for digest, unit in units:
        rows: list[dict[str, Any]] = []
        if digest:
            recipient = unit[0][0]
            total = len(by_owner[recipient])
            part = (by_owner[recipient].index(unit[0][1]) // DIGEST_CASES + 1, -(-total // DIGEST_CASES), total)
            try:
                rows.append(queue.prepare(_digest_mail(config, batch_id, recipient, [c for _, c in unit], texts,
                                                       part)))
            except Exception as exc:  # the digest cannot be rendered: each case on its own
                _failed(unit[0][1], News.ASSIGNED, recipient, exc)
                queued += sum(notify_assigned(conn, config, case.id, now) for _, case in unit)
                continue
        for recipient, case in unit if not digest else ():
            text, attachments = texts.get(case.first_pk, ("", []))
            try:
                rows.append(queue.prepare(_news_mail(config, case, News.ASSIGNED, recipient, text, attachments,
                                                     cause=f"owner:{case.owner_id}", message_pk=case.first_pk)))
            except Exception as exc:
                _failed(case, News.ASSIGNED, recipient, exc)
        try:
            with conn.begin_nested():
                for row in rows:
                    queue.put(row)
                queued += queue.flush()
        except Exception as exc:
            if is_outage(exc):
                raise
            queue.discard()
            log.warning("event=staff-news-chunk-refused batch=%s error=%s", batch_id,
                        kv(f"{type(exc).__name__}: {exc}"))
            queued += sum(notify_assigned(conn, config, case.id, now) for _, case in unit)
    return queued


#: the most of each case's text a digest quotes
DIGEST_TEXT = 400
#: the most cases one digest lists (more go into a second, ...)
DIGEST_CASES = 200


def _digest_mail(config: Config, batch_id: int, recipient: str, cases: list[Any],
                 texts: dict[int, tuple[str, list[str]]], part: tuple[int, int, int]) -> OutgoingMail:
    """One mail telling an owner of the cases a cutoff gave them (``part``: this mail's number,
    how many mails and how many cases in all; a template that cannot be rendered raises here)."""
    entries = []
    for case in cases:
        text, attachments = texts.get(case.first_pk, ("", []))
        text = " ".join(text.split())
        entries.append({
            "number": case.number, "subject": case.subject, "requester": case.requester,
            "account": case.account_code or "", "tier": case.tier,
            "severity_name": SEVERITY_NAMES.get(case.severity, str(case.severity)),
            "text": text if len(text) <= DIGEST_TEXT else text[: DIGEST_TEXT - 1] + "…",
            "attachments": attachments,
        })
    variables: dict[str, Any] = {
        "count": len(entries), "cases": entries, "part": part[0], "parts": part[1], "total": part[2],
        "marker": config.staff.reply_marker, "reply_address": config.staff.reply_address or "",
    }
    owner = cases[0]
    return OutgoingMail(
        key=f"staff:assigned-digest:batch:{batch_id}:owner:{owner.owner_id}:part:{part[0]}", kind=MailKind.STAFF,
        notice_kind=None, to_addr=recipient, to_name="",
        rendered=render(templates(config.outgoing.templates_dir), "staff-digest", variables),
        case_ids=tuple(c.id for c in cases), batch_id=batch_id,
    )


def notify_escalated(conn: Connection, config: Config, number: int, tier: str, now: datetime) -> bool:
    """The tier a case was escalated to hears of it at its configured address."""
    address = config.staff.tier_address(tier)
    case_id = conn.execute(sa.select(CASE.c.id).where(CASE.c.number == number)).scalar()
    if address is None or case_id is None:
        return False
    return notify_staff(conn, config, case_id, News.ESCALATED, now, cause=f"tier:{tier.upper()}", to=address)
