"""Rule 9: no support for an account not in good financial standing until paid.

The request is accepted and becomes a ``held`` case with a hold notice;
when the account's standing is restored, held cases join the next batch.
"""

from __future__ import annotations

from mailcase.core.states import Standing
from mailcase.rules.base import Context, Mail, Notice, Outcome, Verdict

RULE = "standing"


def standing(mail: Mail, ctx: Context, so_far: Outcome) -> Verdict | None:
    sender = so_far.sender
    if sender is None or not sender.eligible or sender.account is None:
        return None
    if sender.account.standing == Standing.GOOD:
        return None
    return Verdict(RULE, "account-on-hold",
                   f"{sender.account.code} is not in good financial standing: the case is held "
                   "until it is", notice=Notice.HOLD, hold=True)
