"""Rule 13: abuse flags -- visible on the case and in reports, never refusals.

* ``volume``: the account's requests this week are over a threshold;
* ``repeats-case-N``: the request closely repeats one of the account's
  resolved cases (the acknowledgement points to the earlier resolution);
* ``outside-channel``: a request from a user who is not a representative
  (set by the identity rule; counted per account in reports).
"""

from __future__ import annotations

import re
from datetime import timedelta

from mailcase.quoting import latest_reply
from mailcase.rules.base import Context, Mail, Outcome, Verdict

RULE = "abuse-flags"
_WORD = re.compile(r"[^\W_]{3,}", re.UNICODE)
_REPLY_PREFIX = re.compile(r"^\s*((re|fw|fwd|aw|wg|sv|vs|antw|tr)\s*:\s*)+", re.IGNORECASE)


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def similarity(a: str, b: str) -> float:
    """Jaccard similarity of the two texts' word sets."""
    wa, wb = _words(a), _words(b)
    if not wa or not wb:
        return 0.0
    return len(wa & wb) / len(wa | wb)


def abuse_flags(mail: Mail, ctx: Context, so_far: Outcome) -> Verdict | None:
    sender = so_far.sender
    if sender is None or sender.account is None:
        return None
    account = sender.account
    flags: list[str] = []
    reasons: list[str] = []
    week = ctx.account_requests(account.id, mail.received_at - timedelta(days=7), mail.received_at)
    if week + 1 > ctx.settings.weekly_request_threshold:
        flags.append("volume")
        reasons.append(f"{week + 1} requests from {account.code} in 7 days "
                       f"(threshold {ctx.settings.weekly_request_threshold})")
    if sender.eligible:
        text = _REPLY_PREFIX.sub("", mail.subject or "") + "\n" + latest_reply(mail.body)
        best: tuple[float, int] | None = None
        for case in ctx.resolved_cases(account.id):
            score = similarity(text, f"{case.subject}\n{case.text}")
            if best is None or score > best[0]:
                best = (score, case.number)
        if best is not None and best[0] >= ctx.settings.repeat_similarity:
            flags.append(f"repeats-case-{best[1]}")
            reasons.append(f"closely repeats resolved case #{best[1]:06d} (similarity {best[0]:.2f})")
    if so_far.sender is not None and so_far.sender.kind == "user":
        reasons.append(f"request outside the representative channel of {account.code}")
    if not flags and not reasons:
        return None
    return Verdict(RULE, "abuse-flagged" if flags else "outside-channel", "; ".join(reasons),
                   flags=tuple(flags))
