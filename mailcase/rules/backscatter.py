"""Rule 7: no backscatter.

A support inbox is mostly forged spam; a notice to a forged sender is
backscatter.  Notices go only to senders that passed aligned SPF or DKIM in
our own server's header and were not marked as spam, never to mail we may
not answer automatically (RFC 3834), and at most one of each kind per
address per period -- except to a representative whose mail passed DMARC:
a notice that says why no case was opened (the PIN, which account) goes
to them every time, bounded only by the outbox's daily cap per address,
for they need it to get their request in.  The PIN-locked notice goes
once per lock.  A notice not sent is recorded with the reason.  The
verdict carries what our server said about the sender: the notice to a
known user names the administrators only when the sender authenticated.
"""

from __future__ import annotations

from datetime import timedelta

from mailcase.rules.authentication import evaluate
from mailcase.rules.base import Context, Mail, Mark, Notice, Outcome, Verdict

RULE = "no-backscatter"
#: notices that tell an authenticated representative why no case was opened
_EVERY_TIME = (Notice.PIN.value, Notice.WHICH_ACCOUNT.value)


def no_backscatter(mail: Mail, ctx: Context, so_far: Outcome) -> Verdict | None:
    if so_far.notice is None:
        return None
    kind = so_far.notice.value
    auth = so_far.auth or evaluate(mail, ctx)
    addr = mail.sender
    if not addr or not mail.info.from_strict:
        return Verdict(RULE, "notice-withheld", f"{kind} notice not sent: no single From address",
                       notice_allowed=False, auth=auth)
    if Mark.NO_AUTO_REPLY in so_far.marks:
        return Verdict(RULE, "notice-withheld",
                       f"{kind} notice not sent: the mail may not be answered automatically (RFC 3834)",
                       notice_allowed=False, auth=auth)
    if auth.spam:
        return Verdict(RULE, "notice-withheld", f"{kind} notice not sent: marked as spam",
                       notice_allowed=False, auth=auth)
    if not auth.may_receive_notice:
        return Verdict(RULE, "notice-withheld",
                       f"{kind} notice not sent: no aligned SPF or DKIM pass ({auth.detail})",
                       notice_allowed=False, auth=auth)
    sender = so_far.sender
    representative = bool(sender and sender.kind in ("representative", "ambiguous")
                          and (auth.dmarc_pass or not auth.checked))
    if kind == Notice.PIN_LOCKED.value:
        locked = sender.account.pin_locked_at if sender and sender.account else None
        since = locked or mail.received_at - timedelta(days=3650)
        if ctx.notices_sent(addr, kind, since) > 0:
            return Verdict(RULE, "notice-withheld",
                           f"{kind} notice not sent: {addr} was told of this lock already",
                           notice_allowed=False, auth=auth)
    elif representative and kind in _EVERY_TIME:
        pass  # they need it to get their request in: the outbox's daily cap is the bound
    else:
        period = ctx.settings.rules.notice_period_days
        if ctx.notices_sent(addr, kind, mail.received_at - timedelta(days=period)) > 0:
            return Verdict(RULE, "notice-withheld",
                           f"{kind} notice not sent: {addr} had one in the last {period} days",
                           notice_allowed=False, auth=auth)
    return Verdict(RULE, "notice-allowed", f"{kind} notice may go to {addr}", notice_allowed=True, auth=auth)
