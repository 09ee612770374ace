"""Rule 1: automatic mail (RFC 3834).

RFC 3834 decides whether we may *reply*, not whether a request exists: a
representative's monitoring system or group alias may carry these markers
and still be a request (it gets a case, but no acknowledgement).  Mail with
any of the markers gets the ``no-auto-reply`` mark; out-of-office and
vacation replies and our own mail coming back are suppressed outright.
Automatic mail from a sender who is not eligible is suppressed later, by
:func:`automatic_ineligible`, once the sender is known.
"""

from __future__ import annotations

import re
from typing import Any

from mailcase.rules.autoreplies import Judgement, judge, machine_mail
from mailcase.rules.base import Context, Disposition, Mail, Mark, Outcome, Verdict
from mailcase.rules.content import remembered

RULE = "automatic-mail"

_AUTOREPLY_HEADERS = (
    "x-autoreply", "x-autorespond", "x-autoresponder", "x-auto-reply", "x-autoreply-from",
    "x-mail-autoreply",
)
# Exchange writes this on every mail a server agent generates, inbox-rule
# forwards and redirects included: machine-sent (a forward rule pointed back
# at us is a loop), but not an out-of-office reply.
_GENERATED_HEADERS = ("x-ms-exchange-generated-message-source",)
# X-Auto-Response-Suppress values that cover our acknowledgements: "AutoReply"
# means auto-replies other than OOF, "All" everything; DR, NDR, RN, NRN and
# OOF name reports and replies we never send ([MS-OXCMAIL] 2.2.3.2.14).
_XARS_OURS = {"all", "autoreply"}
_ROBOT_LOCALPART = re.compile(r"^(?:mailer-daemon|postmaster)$", re.IGNORECASE)
_NOREPLY_LOCALPART = re.compile(r"^(?:no[-_.]?reply|do[-_.]?not[-_.]?reply|donotreply)", re.IGNORECASE)


def _strip_comments(value: str) -> str:
    """``value`` without RFC 5322 comments (nested parentheses, quoted pairs)."""
    out: list[str] = []
    depth = 0
    escaped = False
    for ch in value:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(ch)
            continue
        if ch == "\\":
            escaped = True
            if depth == 0:
                out.append(ch)
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def _auto_submitted(mail: Mail) -> str | None:
    """The Auto-Submitted keyword, lower case, or None when the field is absent.

    RFC 3834 §5 allows CFWS around the keyword and parameters after it, so
    ``no (sent by a person)`` is ``no``.  A field with no readable keyword
    is kept as written: it is not ``no``, so it still counts as automatic;
    an empty one says nothing and counts as absent.
    """
    value = mail.header("auto-submitted")
    if value is None:
        return None
    text = " ".join(_strip_comments(value).split(";", 1)[0].split())
    return text.lower() or None


def _suppresses_our_replies(value: str) -> bool:
    tokens = {t.strip().lower() for t in re.split(r"[,;\s]+", value) if t.strip()}
    return bool(tokens & _XARS_OURS)


def automatic_markers(mail: Mail) -> tuple[list[str], list[str]]:
    """(markers of automatic mail, markers that only forbid an automatic reply)."""
    automatic: list[str] = []
    no_reply: list[str] = []
    auto = _auto_submitted(mail)
    if auto is not None and auto != "no":
        automatic.append(f"Auto-Submitted: {auto}")
    return_path = mail.header("return-path")
    if return_path is not None and return_path.strip() in ("<>", ""):
        automatic.append("null return path")
    precedence = (mail.header("precedence") or "").strip().lower()
    if precedence in ("bulk", "junk", "list", "auto_reply"):
        automatic.append(f"Precedence: {precedence}")
    for name in ("list-id", "list-unsubscribe", "list-post"):
        if mail.header(name) is not None:
            automatic.append(f"{name.title()} (list mail)")
            break
    for name in _AUTOREPLY_HEADERS + _GENERATED_HEADERS:
        if mail.header(name) is not None:
            automatic.append(f"{name} header")
    if mail.header("feedback-id") is not None or mail.header("x-campaign-id") is not None:
        automatic.append("bulk-sender header")
    local = (mail.sender or "").partition("@")[0]
    if _ROBOT_LOCALPART.match(local):
        automatic.append(f"sender {mail.sender}")
    elif _NOREPLY_LOCALPART.match(local):
        no_reply.append(f"sender {mail.sender} takes no replies")
    xars = mail.header("x-auto-response-suppress")
    if xars is not None and _suppresses_our_replies(xars):
        # asks us not to reply; does not make the mail automatic (docs/design.md §3)
        no_reply.append(f"X-Auto-Response-Suppress: {xars}")
    return automatic, no_reply


def _declared_auto_reply(mail: Mail) -> str | None:
    """A header that declares an auto-reply outright, or None."""
    # "no" declares nothing automatic, exactly like an absent field
    auto = _auto_submitted(mail)
    if auto == "auto-replied":
        return "Auto-Submitted: auto-replied (RFC 3834 §5: a reply sent by a machine)"
    if any(mail.header(h) is not None for h in _AUTOREPLY_HEADERS):
        return "an X-Autoreply-family header"
    if (mail.header("precedence") or "").strip().lower() == "auto_reply":
        return "Precedence: auto_reply"
    return None


def _judge(mail: Mail, automatic: list[str], no_reply: list[str]) -> Judgement:
    weak = automatic + [m for m in no_reply if m.startswith("X-Auto-Response-Suppress")]
    return judge(mail, weak, _declared_auto_reply(mail))


def _judgement_json(j: Judgement) -> list[Any]:
    return [j.auto_reply, list(j.reasons), sorted(j.kinds)]


def _judgement_from_json(data: Any) -> Judgement:
    auto_reply, reasons, kinds = data
    return Judgement(bool(auto_reply), tuple(str(r) for r in reasons), frozenset(str(k) for k in kinds))


def _same(value: str | None) -> str | None:
    return value


def _text_or_none(data: Any) -> str | None:
    return None if data is None else str(data)


def is_out_of_office(mail: Mail) -> str | None:
    """Why this is an automatic reply (out-of-office, vacation, another help
    desk's receipt), from headers, subject and text together; or None."""
    automatic, no_reply = automatic_markers(mail)
    judgement = _judge(mail, automatic, no_reply)
    return judgement.reason if judgement.auto_reply else None


def automatic_mail(mail: Mail, ctx: Context, so_far: Outcome) -> Verdict | None:
    if any(ctx.is_our_message_id(mid) for mid in (mail.info.message_id,)):
        return Verdict(RULE, "own-mail", "our own mail came back (Message-ID is ours): a loop",
                       Disposition.SUPPRESSED, frozenset({Mark.AUTOMATIC, Mark.NO_AUTO_REPLY}))
    if mail.sender and mail.sender in ctx.settings.our_addresses:
        return Verdict(RULE, "own-mail", f"sent from our own address {mail.sender}: a loop",
                       Disposition.SUPPRESSED, frozenset({Mark.AUTOMATIC, Mark.NO_AUTO_REPLY}))
    automatic, no_reply = automatic_markers(mail)
    judgement = remembered(mail, "auto-reply", lambda: _judge(mail, automatic, no_reply), _judgement_json,
                           _judgement_from_json)
    if judgement.auto_reply:
        # never a request, whoever sent it: answering an auto-reply starts a loop
        name = "out-of-office" if judgement.kinds - {"receipt-subject", "automatic"} - {
            k for k in judgement.kinds if k.startswith("receipt-")} else "auto-reply"
        what = "out-of-office or vacation reply" if name == "out-of-office" else "another system's automatic reply"
        return Verdict(RULE, name, f"{what}: {judgement.reason}",
                       Disposition.SUPPRESSED, frozenset({Mark.AUTOMATIC, Mark.NO_AUTO_REPLY}))
    if automatic:
        return Verdict(RULE, "automatic", "automatic mail: " + ", ".join(automatic) +
                       "; never answered automatically (RFC 3834)",
                       marks=frozenset({Mark.AUTOMATIC, Mark.NO_AUTO_REPLY}))
    machine = remembered(mail, "machine", lambda: machine_mail(mail), _same, _text_or_none)
    if machine:
        return Verdict(RULE, "automatic", f"automatic mail: {machine}; never answered automatically",
                       marks=frozenset({Mark.AUTOMATIC, Mark.NO_AUTO_REPLY}))
    if no_reply:
        return Verdict(RULE, "no-auto-reply", "no automatic reply: " + ", ".join(no_reply),
                       marks=frozenset({Mark.NO_AUTO_REPLY}))
    return None


def automatic_ineligible(mail: Mail, ctx: Context, so_far: Outcome) -> Verdict | None:
    """Automatic mail is a request only from an eligible representative."""
    if Mark.AUTOMATIC not in so_far.marks:
        return None
    sender = so_far.sender
    if sender is not None and sender.eligible:
        return Verdict(RULE, "automatic-request",
                       f"automatic mail from representative {sender.address} "
                       "(a monitoring system or group alias): a request, without acknowledgement")
    who = sender.address if sender and sender.address else "an unidentified sender"
    # the identity rule may have asked for a notice: record why none goes out
    return Verdict(RULE, "automatic-ineligible",
                   f"automatic mail from {who}, who is not an authorized representative: "
                   "kept, no case, no reply", Disposition.SUPPRESSED,
                   notice_allowed=False if so_far.notice is not None else None)
