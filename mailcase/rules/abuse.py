"""Rule 13: abuse flags -- visible on the case and in reports, never refusals.

* ``volume``: the account's requests this week are over a threshold;
* ``repeats-case-N``: the request closely repeats one of the account's
  resolved cases (the acknowledgement points to the earlier resolution);
* ``outside-channel``: a request from a user who is not a representative
  (set by the identity rule; counted per account in reports).
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

from mailcase.mail.subjects import case_label, strip_prefixes
from mailcase.mail.words import STOPWORDS
from mailcase.rules.base import Context, Mail, Outcome, Verdict

RULE = "abuse-flags"
_WORD = re.compile(r"[^\W\d_]{3,}", re.UNICODE)
#: below this many content words a text is too short to call a repeat
MIN_WORDS = 5


def _words(text: str) -> set[str]:
    return {w for w in (m.lower() for m in _WORD.findall(text)) if w not in STOPWORDS}


def similarity(a: str, b: str) -> float:
    """Cosine similarity of the two texts' content-word sets (Ochiai).

    Jaccard punishes every word only one text has: a new mail restating a
    resolved case with its own greeting, context and signature scores well
    under any useful threshold.  Ochiai grows with the shared words against
    the size of both texts, so a short request inside a long one still
    counts, and neither text alone decides.
    """
    wa, wb = _words(a), _words(b)
    if len(wa) < MIN_WORDS or len(wb) < MIN_WORDS:
        return 0.0
    return len(wa & wb) / math.sqrt(len(wa) * len(wb))


def abuse_flags(mail: Mail, ctx: Context, so_far: Outcome) -> Verdict | None:
    sender = so_far.sender
    if sender is None or sender.account is None:
        return None
    account = sender.account
    flags: list[str] = []
    reasons: list[str] = []
    week = ctx.account_requests(account.id, mail.received_at - timedelta(days=7), mail.received_at)
    if week + 1 > ctx.settings.rules.weekly_request_threshold:
        flags.append("volume")
        reasons.append(f"{week + 1} requests from {account.code} in 7 days "
                       f"(threshold {ctx.settings.rules.weekly_request_threshold})")
    if sender.eligible:
        text = strip_prefixes(mail.subject) + "\n" + mail.reply_text
        best: tuple[float, int] | None = None
        for case in ctx.resolved_cases(account.id):
            score = similarity(text, f"{case.subject}\n{case.text}")
            if best is None or score > best[0]:
                best = (score, case.number)
        if best is not None and best[0] >= ctx.settings.rules.repeat_similarity:
            flags.append(f"repeats-case-{best[1]}")
            reasons.append(f"closely repeats resolved case {case_label(best[1])} (similarity {best[0]:.2f})")
    if so_far.sender is not None and so_far.sender.kind == "user":
        reasons.append(f"request outside the representative channel of {account.code}")
    if not flags and not reasons:
        return None
    return Verdict(RULE, "abuse-flagged" if flags else "outside-channel", "; ".join(reasons),
                   flags=tuple(flags))
