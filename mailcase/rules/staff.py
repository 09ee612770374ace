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

import re

from mailcase.mail.subjects import case_label
from mailcase.rules.authentication import evaluate
from mailcase.rules.base import Context, Disposition, Mail, Outcome, Verdict
from mailcase.rules.effects import StaffReply
from mailcase.rules.threading import find_thread

RULE = "staff"

#: reply and forward prefixes a mail client puts before the subject
_PREFIXES = re.compile(r"^(?:\s*(?:re|aw|sv|fw|fwd|wg)\s*(?:\[\d+\])?\s*:\s*)+", re.IGNORECASE)


def reply_intent(mail: Mail, marker: str, reply_address: str | None) -> tuple[str | None, str]:
    """(the text for the customer, how the mail was marked) when staff mail is a reply; (None, why not) else."""
    mark = marker.strip().lower()
    lines = mail.reply_text.splitlines()
    kept = [line for line in lines if line.strip().lower() != mark]
    subject = mail.subject.strip()
    how: str | None = None
    if len(kept) != len(lines):
        how = f"a line {marker!r}"
    elif subject.lower().startswith(mark) or _PREFIXES.sub("", subject).lower().startswith(mark):
        how = f"the subject starts with {marker!r}"
    elif reply_address and reply_address.lower() in {a.lower() for a in mail.to + mail.cc}:
        how = f"sent to {reply_address}"
    if how is None:
        return None, "no reply marker and not sent to the reply address"
    return "\n".join(kept).strip(), how


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
    if text is None:
        return Verdict(RULE, "staff-note", f"staff mail on case {label} ({how}; {marked}): a private note",
                       Disposition.STAFF_NOTE, case=case, auth=auth)
    if not text:
        return Verdict(RULE, "staff-note", f"staff mail on case {label} ({how}) marked as a reply ({marked}) "
                       "but with no text: a private note", Disposition.STAFF_NOTE, case=case, auth=auth)
    return Verdict(RULE, "staff-reply", f"staff reply on case {label} ({how}; {marked}): sent to the customer",
                   Disposition.STAFF_NOTE, case=case, auth=auth,
                   effects=(StaffReply(case.id, case.number, text, sender),))
