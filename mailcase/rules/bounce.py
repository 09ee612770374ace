"""Rule 2: bounces, read receipts and abuse reports never create cases.

RFC 3464 delivery status notifications (``multipart/report;
report-type=delivery-status``) are read field by field; the common vendor
formats (Exchange, qmail, Exim, Postfix without DSN, ...) are recognised by
flufl.bounce when the mail looks like a bounce at all: it comes from a mail
system (MAILER-DAEMON, postmaster), has a null return path, or has a
bounce's subject -- not a person's "Fwd:" or "Re:" of one, which is a
request about the bounce.  A mail system's own notice in no known format
is still a bounce, with no recipient to count.  Each failed
recipient is recorded with its status code and the original Message-ID: the
delivery stage (issue 6) counts a bounce against one of our mails only when
it matches a mail we sent.  Read receipts (RFC 8098
``disposition-notification``) and abuse feedback reports (RFC 5965
``feedback-report``) are not requests either.
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass
from email.header import Header, decode_header
from email.message import Message
from email.policy import compat32

from mailcase.core.states import BounceKind, report_kind
from mailcase.mail.header_info import message_ids
from mailcase.mail.parse.tree import message_tree
from mailcase.mail.subjects import is_reply_or_forward
from mailcase.rules.base import Context, Disposition, Mail, Mark, Outcome, Verdict
from mailcase.rules.effects import RecordBounce

RULE = "bounce"
#: the stored result (content.py): was the mail a bounce, a receipt or a report?
FACT = "bounce"

_BOUNCE_SUBJECT = re.compile(
    r"(undeliver|delivery (status )?notification|delivery fail|returned mail|mail delivery"
    r"|failure notice|unzustellbar|nicht zustellbar|non remis|could not be delivered"
    r"|delivery has failed|message not delivered|undelivered|non recapitabile|onbestelbaar"
    r"|no se pudo entregar|n[ãa]o entregue|rejected|returned to sender"
    # delay and warning reports (RFC 3464 Action: delayed, and the MTAs' own texts)
    r"|delay|warning: message|still being retried|verz[öo]gert|retard|retrasad|ritardat|vertraagd"
    r"|atrasad)", re.IGNORECASE)
_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
# local parts and display names of mail systems (not of people): the MTAs'
# MAILER-DAEMON and postmaster, Exchange Online's MicrosoftExchange<hex>,
# bounce handlers, and the names they sign with
_ROBOT_LOCAL = re.compile(
    r"^(?:mailer[-_.]?daemon|mail[-_.]?daemon|postmaster|mdaemon|mail[-_.]?delivery(?:[-_.]?(?:sub)?system)?"
    r"|bounces?(?:[-+._=].*)?|microsoftexchange[0-9a-f]{16,}|returned[-_.]?mail|mail[-_.]?returned"
    r"|mailer|nobody|mta|smtp)$", re.IGNORECASE)
_ROBOT_NAME = re.compile(
    r"^\s*(?:mail delivery (?:sub)?system|mail delivery service|mailer[- ]daemon|postmaster"
    r"|microsoft outlook|mail administrator|e-?mail delivery system|mail system|delivery status notification)"
    r"\s*$", re.IGNORECASE)
#: DSN actions that report no failure: a delay, a relay, a delivery (RFC 3464 §2.3.3)
_NOT_FAILED = ("delayed", "relayed", "delivered", "expanded")


@dataclass(frozen=True)
class Failure:
    recipient: str | None
    status: str | None
    action: str | None
    #: RFC 3464 Original-Recipient, when it differs (mail through an alias or a forward)
    original: str | None = None


def _report_type(mail: Mail) -> str | None:
    ctype = (mail.header("content-type") or "").lower()
    if not ctype.startswith("multipart/report"):
        return None
    m = re.search(r'report-type\s*=\s*"?([a-z0-9-]+)', ctype)
    return m.group(1) if m else "unknown"


def _tree(raw: bytes) -> Message:
    # the bounded tree the parse stage builds: a bounce-looking mail of millions
    # of header lines must not take the classify stage minutes and gigabytes
    return message_tree(raw)


def _text(value: object) -> str | None:
    """A compat32 header value as text.

    compat32 hands back raw 8-bit bytes as a Header object, not a str; in a
    delivery status report they are UTF-8 (RFC 6533), so that is what they
    are read as.
    """
    if value is None:
        return None
    if not isinstance(value, Header):
        return str(value)
    out = []
    for chunk, charset in decode_header(value):
        if isinstance(chunk, str):
            out.append(chunk)
            continue
        try:
            out.append(chunk.decode(charset if charset and charset != "unknown-8bit" else "utf-8", "replace"))
        except LookupError:
            out.append(chunk.decode("utf-8", "replace"))
    return "".join(out)


def _addr(value: str | None) -> str | None:
    if not value:
        return None
    _, _, addr = value.partition(";")
    addr = (addr or value).strip().strip("<>").strip()
    return addr.lower() or None


def dsn_failures(tree: Message) -> list[Failure]:
    """Per-recipient fields of every message/delivery-status part (RFC 3464 §2.3)."""
    out: list[Failure] = []
    for part in tree.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        blocks = payload if isinstance(payload, list) else []
        if not blocks and isinstance(payload, str):
            blocks = [email.message_from_string(b) for b in re.split(r"\r?\n\r?\n", payload) if b.strip()]
        for block in blocks[1:] if len(blocks) > 1 else blocks:
            if not isinstance(block, Message):
                continue
            final = _addr(_text(block.get("Final-Recipient")))
            original = _addr(_text(block.get("Original-Recipient")))
            status = (_text(block.get("Status")) or "").strip() or None
            action = (_text(block.get("Action")) or "").strip().lower() or None
            if final or original or status:
                out.append(Failure(final or original, status, action,
                                   original if original and original != (final or original) else None))
    return out


def original_message_id(tree: Message) -> str | None:
    for part in tree.walk():
        ctype = part.get_content_type()
        if ctype == "text/rfc822-headers":
            text = part.get_payload(decode=True)
            if isinstance(text, bytes):
                inner = email.message_from_bytes(text, policy=compat32)
                ids = message_ids(_text(inner.get("Message-ID")))
                if ids:
                    return ids[0]
        elif ctype in ("message/rfc822", "message/rfc822-headers"):
            payload = part.get_payload()
            inner_msg = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner_msg, Message):
                ids = message_ids(_text(inner_msg.get("Message-ID")))
                if ids:
                    return ids[0]
    return None


def _from_robot(mail: Mail) -> bool:
    """A mail system's address or name, not a person's."""
    local = (mail.sender or "").partition("@")[0]
    return bool(_ROBOT_LOCAL.match(local)) or bool(_ROBOT_NAME.match(mail.info.from_name or ""))


def _null_return_path(mail: Mail) -> bool:
    return (mail.header("return-path") or "").strip() == "<>"


def _bounce_subject(mail: Mail) -> bool:
    """A bounce's subject, not a person's reply to one or forward of one."""
    subject = mail.subject or ""
    return bool(_BOUNCE_SUBJECT.search(subject)) and not is_reply_or_forward(subject)


def _looks_like_bounce(mail: Mail) -> bool:
    """Worth reading as a bounce: from a mail system, with a null return path, or
    with a bounce's subject.  A reply-prefixed bounce subject ("Re: Undeliverable")
    counts only from a mail system: from a person it is a request about one."""
    if _from_robot(mail) or _null_return_path(mail):
        return True
    return _bounce_subject(mail)


def _vendor_failures(tree: Message) -> list[Failure]:
    from flufl.bounce import scan_message

    try:
        found = scan_message(tree)
    except Exception:  # a vendor heuristic choking on odd mail is not a bounce
        return []
    out = []
    for addr in sorted(found):
        text = addr.decode("utf-8", "replace") if isinstance(addr, bytes) else str(addr)
        out.append(Failure(text.strip("<>").lower(), None, "failed"))
    return out


def bounce(mail: Mail, ctx: Context, so_far: Outcome) -> Verdict | None:
    # what the mail is depends on it alone: a pass that found no bounce says so
    # for the next (content.py); a bounce is worked out again for its effects
    if mail.facts.get(FACT) is False:
        return None
    verdict = _bounce(mail)
    mail.facts[FACT] = verdict is not None
    return verdict


def _bounce(mail: Mail) -> Verdict | None:
    report = _report_type(mail)
    marks = frozenset({Mark.AUTOMATIC, Mark.NO_AUTO_REPLY})
    if report == "disposition-notification":
        return Verdict(RULE, "read-receipt", "a read receipt (RFC 8098), not a request",
                       Disposition.SUPPRESSED, marks,
                       effects=(RecordBounce(BounceKind.READ_RECEIPT.value),))
    if report == "feedback-report":
        return Verdict(RULE, "abuse-report", "an abuse feedback report (RFC 5965), not a request",
                       Disposition.SUPPRESSED, marks,
                       effects=(RecordBounce(BounceKind.ABUSE_REPORT.value),))
    if report is None and not _looks_like_bounce(mail):
        return None
    robot = _from_robot(mail)
    tree = _tree(mail.whole_raw())
    failures = dsn_failures(tree) if report is not None else []
    kind: str = BounceKind.DSN
    if not failures:
        failures = _vendor_failures(tree)
        kind = BounceKind.VENDOR
        if failures and not any(f.status for f in failures):
            m = _STATUS.search(mail.body)
            status = m.group(1) if m else None
            failures = [Failure(f.recipient, status, f.action) for f in failures]
    if not failures:
        if report is None and not (robot and (_null_return_path(mail) or _BOUNCE_SUBJECT.search(mail.subject or ""))):
            return None
        # a report without its delivery-status part, or a mail system's own
        # notice in a format no detector knows: no request, nothing to count
        kind = BounceKind.UNPARSED if report is None else report_kind(report)
    elif all((f.action or "failed") in _NOT_FAILED for f in failures):
        kind = BounceKind.DELAY
    if kind == BounceKind.UNPARSED and re.search(r"delay|warning|retried|verz[öo]gert|retard", mail.subject or "",
                                                 re.I):
        kind = BounceKind.DELAY
    original = original_message_id(tree)
    effects = tuple(
        RecordBounce(str(kind), recipient=f.recipient, status=f.status, action=f.action,
                     original_message_id=original, original_recipient=f.original)
        for f in (failures or [Failure(None, None, None)])
    )
    if kind == BounceKind.DELAY:
        who = ", ".join(f"{f.recipient} ({f.status or 'no status'})" for f in failures[:5]) or "no recipient named"
        return Verdict(RULE, "delay-report", f"a delay or warning report, not a failure: {who}",
                       Disposition.SUPPRESSED, marks, effects=effects)
    failed = [f for f in failures if (f.action or "failed") in ("failed", "delayed")]
    who = ", ".join(f"{f.recipient} ({f.status or 'no status'})" for f in failed[:5]) or "no recipient named"
    return Verdict(RULE, "bounce", f"delivery status notification ({kind}): {who}",
                   Disposition.SUPPRESSED, marks, effects=effects)
