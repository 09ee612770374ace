"""Rule 4: staff are never customers; their mail on a case is a note or a reply.

Mail from a staff address (configured addresses or domains, a specialist's
address) that answers a case -- our notification, any mail of the case's
thread, or its case token -- is by default a private staff note on the case.
Marked as a reply to the customer (RT's comment/correspond split: a line of
only the ``[staff] reply_marker``, or the marker at the start of the subject,
or the mail sent To/Cc the ``[staff] reply_address``) its newest text, the
marker line removed, is queued to the customer in the case's thread
(:class:`StaffReply`; the same path as ``case reply``).  Staff mail anywhere
else is ignored, with the reason.

A spoofed From must not gain staff rights: when sender authentication is on,
staff mail needs the same DMARC pass a representative needs; a forged staff
address gets neither a note nor a reply, and the verdict says why.  Staff mail
never tells staff of itself (no :class:`CustomerWrote`): nothing loops.
"""

from __future__ import annotations

from mailcase.mail.subjects import case_label, strip_prefixes
from mailcase.rules.authentication import evaluate
from mailcase.rules.base import Context, Disposition, Mail, Outcome, Verdict
from mailcase.rules.effects import StaffReply
from mailcase.rules.threading import find_thread

RULE = "staff"

def _marked(text: str, mark: str) -> str | None:
    """``text`` without the marker when it starts with the marker as a whole word; None when it does not."""
    if not mark:
        return None
    head = text.lstrip()
    if head.lower().startswith(mark) and (len(head) == len(mark) or head[len(mark)] in " \t:\r\n"):
        return head[len(mark):].lstrip(" \t:")
    return None


def reply_intent(mail: Mail, marker: str, reply_address: str | None) -> tuple[str | None, str]:
    """(the text for the customer, how the mail was marked) when staff mail is a reply; (None, why not) else.

    The marker counts only as a whole word at the start of the first line the
    sender wrote, or of the subject after the reply prefixes: a customer's
    subject or quoted text that merely contains it marks nothing."""
    mark = marker.strip().lower()
    text = mail.reply_text.strip()
    rest = _marked(text, mark)
    if rest is not None:
        return rest.strip(), f"a first line {marker!r}"
    if _marked(strip_prefixes(mail.subject), mark) is not None:
        return text, f"the subject starts with {marker!r}"
    if reply_address and reply_address.lower() in {a.lower() for a in mail.to + mail.cc}:
        return text, f"sent to {reply_address}"
    return None, "no reply marker and not sent to the reply address"


def staff(mail: Mail, ctx: Context, so_far: Outcome) -> Verdict | None:
    sender = mail.sender
    if not sender or not mail.info.from_strict or not ctx.directory.is_staff(sender):
        return None
    auth = evaluate(mail, ctx)
    if auth.checked and not auth.dmarc_pass:
        return Verdict(RULE, "staff-unverified",
                       f"From is staff address {sender} but {auth.detail}: not treated as staff "
                       "(no note, no reply)",
                       Disposition.SUPPRESSED, auth=auth)
    case, how = find_thread(mail, ctx)
    if case is None:
        return Verdict(RULE, "staff-ignored",
                       f"staff mail from {sender} not on any case ({how}): ignored",
                       Disposition.SUPPRESSED, auth=auth)
    label = case_label(case.number)
    settings = ctx.settings.staff
    text, marked = reply_intent(mail, settings.reply_marker, settings.reply_address)
    if text is not None and not auth.checked:
        # with sender authentication off nothing proves the mail came from staff:
        # a note is harmless, mail to a customer is not
        return Verdict(RULE, "staff-note", f"staff mail on case {label} ({how}) marked as a reply ({marked}), "
                       "but sender authentication is off: a private note, nothing sent",
                       Disposition.STAFF_NOTE, case=case, auth=auth)
    if text is None:
        return Verdict(RULE, "staff-note", f"staff mail on case {label} ({how}; {marked}): a private note",
                       Disposition.STAFF_NOTE, case=case, auth=auth)
    if not text:
        return Verdict(RULE, "staff-note", f"staff mail on case {label} ({how}) marked as a reply ({marked}) "
                       "but with no text: a private note", Disposition.STAFF_NOTE, case=case, auth=auth)
    return Verdict(RULE, "staff-reply", f"staff reply on case {label} ({how}; {marked}): sent to the customer",
                   Disposition.STAFF_NOTE, case=case, auth=auth,
                   effects=(StaffReply(case.id, case.number, text, sender),))
