"""Rule 5: who is writing?  Match the single From address exactly.

Normalised From only: never the display name, never Reply-To (a spoofer
sets those freely).  A representative or administrator of one account is
eligible; of several, the subject must name the account (its code or name)
or a notice asks which.  A known user who is not a representative gets a
"please go through your administrator" notice; an unknown sender gets "we
could not identify your account".  Neither opens a case.
"""

from __future__ import annotations

import re

from mailcase.rules.base import (
    Context,
    Disposition,
    Mail,
    Notice,
    Outcome,
    SenderMatch,
    Verdict,
)

RULE = "sender-identity"


def _names_account(subject: str, code: str, name: str) -> bool:
    text = subject.lower()
    for token in (code, name):
        token = token.strip().lower()
        if token and re.search(r"(?<![\w])" + re.escape(token) + r"(?![\w])", text):
            return True
    return False


def sender_identity(mail: Mail, ctx: Context, so_far: Outcome) -> Verdict | None:
    addr = mail.sender
    if not addr or not mail.info.from_strict:
        # no requester: the first address of a From the parser doubts (two
        # mailboxes, ``bob@x)<mallory@y>``) is whatever the forger put first
        why = "; ".join(mail.info.from_list.defects) or "no From address"
        return Verdict(RULE, "sender-unparseable",
                       f"From is not exactly one well-formed mailbox ({why}): never matched",
                       Disposition.NOTICE_ONLY, sender=SenderMatch("unparseable", None))
    people = list(ctx.directory.people(addr))
    if not people:
        return Verdict(RULE, "unknown-sender", f"{addr} is not a known address of any account",
                       Disposition.NOTICE_ONLY, sender=SenderMatch("unknown", addr),
                       notice=Notice.UNKNOWN_SENDER)
    reps = [p for p in people if p.is_representative]
    if reps:
        accounts = {p.account_id: p for p in reps}
        if len(accounts) > 1:
            named = []
            for account_id, person in accounts.items():
                acc = ctx.directory.account(account_id)
                if acc is not None and _names_account(mail.subject, acc.code, acc.name):
                    named.append((person, acc))
            if len(named) == 1:
                person, acc = named[0]
                return Verdict(RULE, "representative",
                               f"{addr} is a representative of several accounts; the subject names {acc.code}",
                               sender=SenderMatch("representative", addr, person, acc))
            return Verdict(RULE, "which-account",
                           f"{addr} represents {len(accounts)} accounts and the subject names "
                           f"{'none' if not named else 'several'} of them",
                           Disposition.NOTICE_ONLY, sender=SenderMatch("ambiguous", addr),
                           notice=Notice.WHICH_ACCOUNT)
        person = reps[0]
        acc = ctx.directory.account(person.account_id)
        return Verdict(RULE, "representative",
                       f"{addr} is {person.role} of {acc.code if acc else person.account_id}",
                       sender=SenderMatch("representative", addr, person, acc))
    person = people[0]
    acc = ctx.directory.account(person.account_id)
    return Verdict(RULE, "not-authorized",
                   f"{addr} is a user of {acc.code if acc else person.account_id} but not an "
                   "authorized representative: requests go through the account's administrator",
                   Disposition.NOTICE_ONLY, sender=SenderMatch("user", addr, person, acc),
                   notice=Notice.NOT_AUTHORIZED, flags=("outside-channel",))
