"""Rule 12: floods are held for review.

More than N mails with the same sender, subject and body within S seconds,
or more than M from one sender within T minutes, put the excess in
``held for review``: no case and no mail until staff release it.  So do
a mail whose sender sent the same normalised subject with a near-identical
newest text before more than K earlier cutoffs within H hours: an
autoresponder that does not thread would otherwise open a case and earn
an acknowledgement at every cutoff.  Counted over mail received before
this one -- mails received in the same second in the order they were
stored -- so the verdict is the same whenever the chain runs again.
"""

from __future__ import annotations

from datetime import timedelta

from mailcase.mail.subjects import normalise_subject
from mailcase.rules.base import Context, Disposition, Mail, Outcome, Verdict

RULE = "floods"


def floods(mail: Mail, ctx: Context, so_far: Outcome) -> Verdict | None:
    sender = mail.sender
    if not sender:
        return None
    s = ctx.settings.rules
    at = mail.received_at
    same = ctx.similar_mails_before(
        sender, mail.subject, mail.body_hash, at - timedelta(seconds=s.flood_same_seconds), at
    )
    if same >= s.flood_same_count:
        return Verdict(RULE, "flood-repeat",
                       f"{same + 1} mails with the same sender, subject and body within "
                       f"{s.flood_same_seconds} s (limit {s.flood_same_count}): held for review",
                       Disposition.HELD_FOR_REVIEW)
    total = ctx.sender_mails_before(sender, at - timedelta(minutes=s.flood_sender_minutes), at)
    if total >= s.flood_sender_count:
        return Verdict(RULE, "flood-sender",
                       f"{total + 1} mails from {sender} within {s.flood_sender_minutes} min "
                       f"(limit {s.flood_sender_count}): held for review",
                       Disposition.HELD_FOR_REVIEW)
    subject = normalise_subject(mail.subject)
    repeats = ctx.repeated_requests(sender, subject, mail.loose_hash,
                                    at - timedelta(hours=s.repeat_request_hours), at)
    if repeats >= s.repeat_request_count:
        return Verdict(RULE, "repeated-request",
                       f"{sender} sent the subject {subject!r} with a near-identical text before {repeats} earlier "
                       f"cutoffs within {s.repeat_request_hours} h (limit {s.repeat_request_count}): an "
                       "autoresponder or a loop; held for review", Disposition.HELD_FOR_REVIEW,
                       flags=("repeated-request",))
    return None
