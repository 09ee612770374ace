"""Rule 4: staff are never customers.

Mail from a configured staff address or domain on a case is a staff note;
anywhere else it is ignored, with the reason.  A spoofed From must not gain
staff rights: when sender authentication is on, staff mail needs the same
DMARC pass a representative needs.
"""

from __future__ import annotations

from mailcase.mail.subjects import case_label
from mailcase.rules.authentication import evaluate
from mailcase.rules.base import Context, Disposition, Mail, Outcome, Verdict
from mailcase.rules.threading import find_thread

RULE = "staff"


def staff(mail: Mail, ctx: Context, so_far: Outcome) -> Verdict | None:
    sender = mail.sender
    if not sender or not mail.info.from_strict or not ctx.directory.is_staff(sender):
        return None
    auth = evaluate(mail, ctx)
    if auth.checked and not auth.dmarc_pass:
        return Verdict(RULE, "staff-unverified",
                       f"From is staff address {sender} but {auth.detail}: not treated as staff",
                       Disposition.SUPPRESSED, auth=auth)
    case, how = find_thread(mail, ctx)
    if case is not None:
        return Verdict(RULE, "staff-note", f"staff mail on case {case_label(case.number)} ({how})",
                       Disposition.STAFF_NOTE, case=case, auth=auth)
    return Verdict(RULE, "staff-ignored",
                   f"staff mail from {sender} not on any case ({how}): ignored",
                   Disposition.SUPPRESSED, auth=auth)
