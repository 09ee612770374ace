"""Rule 8: the representative's PIN, where the account requires one.

The PIN written in the newest part of the mail or in its subject, in any of
the forms people write (pins.py), must match the representative's PIN; two
different PINs are ambiguous.  The digits are never stored: the parse stage
keeps an HMAC of each candidate (keyed with a secret from the credentials)
and redacts every PIN-like form from the stored text and subject, so the PIN
is in no derived text, notice or log.  Missing or wrong: a PIN notice, no
case.  Repeated failures lock PIN acceptance for the account until staff
unlock it, with an alert and one notice per lock.
"""

from __future__ import annotations

import hmac
from datetime import timedelta

from mailcase.rules.base import Context, Disposition, Mail, Notice, Outcome, Verdict
from mailcase.rules.effects import Alert, Effect, LockPin

RULE = "pin"
#: the verdicts of a PIN failure: what locks PIN acceptance when repeated
PIN_FAILURES = ("pin-missing", "pin-wrong", "pin-ambiguous")


def pin(mail: Mail, ctx: Context, so_far: Outcome) -> Verdict | None:
    sender = so_far.sender
    if sender is None or not sender.eligible or sender.account is None:
        return None
    account = sender.account
    if not account.pin_required:
        return None
    if account.pin_locked:
        return Verdict(RULE, "pin-locked",
                       f"PIN acceptance for {account.code} is locked after repeated failures; "
                       "staff must unlock it", Disposition.NOTICE_ONLY, notice=Notice.PIN_LOCKED)
    expected = sender.person.pin_hash if sender.person else None
    candidates = set(mail.pin_hmacs)
    problem = None
    if not candidates:
        problem = "pin-missing", "no PIN in the mail's newest text or subject"
    elif len(candidates) > 1:
        problem = "pin-ambiguous", f"{len(candidates)} different PINs"
    elif expected is None or not hmac.compare_digest(next(iter(candidates)), expected):
        problem = "pin-wrong", "the PIN does not match"
    if problem is None:
        return Verdict(RULE, "pin-ok", f"PIN matches the representative's for {account.code}")
    name, why = problem
    window = timedelta(hours=ctx.settings.rules.pin_failure_hours)
    failures = ctx.pin_failures(account.id, mail.received_at - window) + 1
    effects: tuple[Effect, ...] = ()
    if failures >= ctx.settings.rules.pin_max_failures:
        effects = (
            LockPin(account.id),
            Alert(f"PIN acceptance locked for {account.code} after "
                                     f"{failures} failures in {ctx.settings.rules.pin_failure_hours} h"),
        )
    return Verdict(RULE, name, f"{why} ({failures} failure(s) for {account.code} in "
                   f"{ctx.settings.rules.pin_failure_hours} h)", Disposition.NOTICE_ONLY,
                   notice=Notice.PIN, effects=effects)
