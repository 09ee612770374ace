"""Rule 3: follow-ups of a case.

A mail whose In-Reply-To/References name a Message-ID already in a case
(ours, or the customer's own earlier mail) attaches to that case, whoever
sent it (a Cc'd colleague replying on the case is a follow-up, not misuse;
a Message-ID is not guessable the way a case number is).  A subject token
``[Case #000123]`` attaches only when the sender belongs to the case's
account (osTicket's rule) and, unless authentication is off, the mail
passed DMARC aligned with its From domain: a stranger cannot inject mail
into a case by writing its number, nor by also writing a customer's
address in From (case numbers are sequential, addresses are public).  A
reply to a closed case within the reopen window reopens it; after that it
is a new request linked to the old one.  A follow-up or a reopening tells
the case's owner (:class:`CustomerWrote`).
Mail of a merged case (our Message-IDs naming it, its token) lands in the
case it was merged into: the context follows ``merged_into_id``.
Staff mail is left to the staff rule.
"""

from __future__ import annotations

from datetime import timedelta

from mailcase.core.states import CLOSED_CASE_STATUSES
from mailcase.mail.subjects import case_label, case_number
from mailcase.rules.authentication import evaluate
from mailcase.rules.base import CaseRef, Context, Disposition, Mail, Outcome, Verdict
from mailcase.rules.effects import CustomerWrote, LinkCase, ReopenCase

RULE = "threading"


def find_thread(mail: Mail, ctx: Context) -> tuple[CaseRef | None, str]:
    """The case this mail replies to, and how it was found (or why not)."""
    ids = list(mail.info.in_reply_to) + [i for i in mail.info.references if i not in mail.info.in_reply_to]
    if ids:
        case = ctx.case_for_message_ids(ids)
        if case is not None:
            return case, "In-Reply-To/References name a mail of the case"
    number = case_number(mail.subject)
    if number is None:
        return None, "no known Message-ID and no case token"
    case = ctx.case_by_number(number)
    if case is None:
        return None, f"subject names case {case_label(number)}, which does not exist"
    sender = mail.sender
    how: str | None = None
    if sender and mail.info.from_strict:
        if sender == case.requester:
            how = "subject token, sender is the case's requester"
        elif ctx.directory.is_staff(sender):
            how = "subject token, sender is staff"
        elif case.account_id is not None and any(
            p.account_id == case.account_id for p in ctx.directory.people(sender)
        ):
            how = "subject token, sender belongs to the case's account"
    if how is None:
        return None, (f"subject names case {case_label(number)} but {sender or 'the sender'} does not belong "
                      "to its account: token ignored")
    auth = evaluate(mail, ctx)
    if auth.checked and not auth.dmarc_pass:
        return None, (f"subject names case {case_label(number)} and From is {sender}, but the mail is not "
                      f"authenticated ({auth.detail}): token ignored")
    return case, how


def threading(mail: Mail, ctx: Context, so_far: Outcome) -> Verdict | None:
    if mail.sender and mail.info.from_strict and ctx.directory.is_staff(mail.sender):
        return None  # the staff rule decides
    case, how = find_thread(mail, ctx)
    if case is None:
        if case_number(mail.subject) is not None:
            return Verdict(RULE, "case-token-ignored", how)
        return None
    return attach(mail, ctx, case, how)


def attach(mail: Mail, ctx: Context, case: CaseRef, how: str, rule: str = RULE) -> Verdict:
    """The verdict for mail that belongs to ``case``: a follow-up, a reopening, or
    (after the reopen window) a new request linked to it."""
    if case.status in CLOSED_CASE_STATUSES:  # a reply reopens it (within the window)
        window = timedelta(days=ctx.settings.rules.reopen_window_days)
        closed = case.closed_at or case.resolved_at
        if closed is not None and mail.received_at - closed > window:
            return Verdict(
                rule, "reply-to-old-case",
                f"replies to case {case_label(case.number)}, {case.status} {closed:%Y-%m-%d}, more than "
                f"{ctx.settings.rules.reopen_window_days} days ago: a new request linked to it",
                effects=(LinkCase(case.id, case.number),),
            )
        return Verdict(
            rule, "reopen", f"replies to {case.status} case {case_label(case.number)} within "
            f"{ctx.settings.rules.reopen_window_days} days ({how}): reopened",
            Disposition.FOLLOW_UP, case=case,
            effects=(ReopenCase(case.id), CustomerWrote(case.id, reopened=True)),
        )
    return Verdict(rule, "follow-up", f"follow-up of case {case_label(case.number)} ({how})",
                   Disposition.FOLLOW_UP, case=case, effects=(CustomerWrote(case.id),))
