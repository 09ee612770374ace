"""The chain: the rules in order, as one table (Mailman 3's chains/builtin.py).

Rules run top to bottom.  A rule that gives a disposition ends the chain,
except that a ``notice-only`` disposition still lets the rules marked
``always`` run: whether the notice may be sent, abuse flags, and the
suppression of automatic mail from senders who are not eligible.
"""

from __future__ import annotations

from collections.abc import Iterable

from mailcase.rules.abuse import abuse_flags
from mailcase.rules.authentication import sender_authentication
from mailcase.rules.automatic import automatic_ineligible, automatic_mail
from mailcase.rules.backscatter import no_backscatter
from mailcase.rules.base import Context, Disposition, Mail, Outcome, RuleSpec
from mailcase.rules.bounce import bounce
from mailcase.rules.floods import floods
from mailcase.rules.identity import sender_identity
from mailcase.rules.pin import pin
from mailcase.rules.scope import scope
from mailcase.rules.severity import severity
from mailcase.rules.staff import staff
from mailcase.rules.standing import standing
from mailcase.rules.survey import survey
from mailcase.rules.threading import threading

CHAIN: tuple[RuleSpec, ...] = (
    # bounces first: a DSN also carries Auto-Submitted: auto-replied (RFC 3464)
    RuleSpec("bounce", bounce),
    RuleSpec("automatic-mail", automatic_mail),
    RuleSpec("floods", floods),
    RuleSpec("survey", survey),
    RuleSpec("threading", threading),
    RuleSpec("staff", staff),
    RuleSpec("sender-identity", sender_identity),
    RuleSpec("automatic-ineligible", automatic_ineligible, after_notice=True),
    RuleSpec("sender-authentication", sender_authentication),
    RuleSpec("pin", pin),
    RuleSpec("standing", standing),
    RuleSpec("scope", scope),
    RuleSpec("severity", severity),
    RuleSpec("abuse-flags", abuse_flags, after_notice=True),
    RuleSpec("no-backscatter", no_backscatter, after_notice=True),
)

RULE_NAMES = tuple(spec.name for spec in CHAIN)


def run_chain(
    mail: Mail, ctx: Context, chain: Iterable[RuleSpec] = CHAIN, disabled: frozenset[str] = frozenset()
) -> Outcome:
    outcome = Outcome()
    for spec in chain:
        if spec.name in disabled:
            continue
        if outcome.disposition is not None:
            if not spec.after_notice or outcome.disposition is not Disposition.NOTICE_ONLY:
                continue
        verdict = spec.fn(mail, ctx, outcome)
        if verdict is not None:
            outcome = outcome.fold(verdict)
    return outcome
