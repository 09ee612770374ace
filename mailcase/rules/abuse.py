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

from mailcase.mail.subjects import strip_prefixes
from mailcase.rules.base import Context, Mail, Outcome, Verdict

RULE = "abuse-flags"
_WORD = re.compile(r"[^\W\d_]{3,}", re.UNICODE)
# words that say nothing about what a request is about; greetings and
# sign-offs included, since they are what two mails of one sender share most
_STOPWORDS = frozenset("""
    the and for are but not you your yours our ours was were has have had this that these those
    with from into when what which who how why where there here then than them they their its
    can could would should will shall may might must does did doing done been being also just
    very again still any all some each every other such only own same too about after before
    since until while please thanks thank regards best kind dear hello hi team sincerely
    cheers greetings morning afternoon evening today yesterday tomorrow
    der die das und oder aber nicht ist sind war wir ihr sie uns euch mit von bei für auf aus
    dem den des ein eine einer eines einem noch schon auch bitte danke gruß grüße freundlichen
    hallo guten tag sehr geehrte geehrter viele
    les des une est sont pas pour par avec dans sur nous vous ils elles mais que qui quoi
    bonjour merci cordialement madame monsieur bien
""".split())
#: below this many content words a text is too short to call a repeat
MIN_WORDS = 5


def _words(text: str) -> set[str]:
    return {w for w in (m.lower() for m in _WORD.findall(text)) if w not in _STOPWORDS}


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
    if week + 1 > ctx.settings.weekly_request_threshold:
        flags.append("volume")
        reasons.append(f"{week + 1} requests from {account.code} in 7 days "
                       f"(threshold {ctx.settings.weekly_request_threshold})")
    if sender.eligible:
        text = strip_prefixes(mail.subject) + "\n" + mail.reply_text
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
