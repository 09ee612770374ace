"""Rule 10: coding, billing and payer-specific advice are out of scope.

Recognised by configurable phrase rules (defaults in
config/mailcase.example.toml, [rules.scope]) over the subject and the
newest, unquoted part of the body.  Such a request still becomes a case,
marked out of scope, and is answered with the out-of-scope template.
"""

from __future__ import annotations

import re
from functools import lru_cache

from mailcase.rules.base import Context, Mail, Notice, Outcome, Verdict

RULE = "scope"


@lru_cache(maxsize=64)
def phrase_pattern(phrases: tuple[str, ...]) -> re.Pattern[str] | None:
    if not phrases:
        return None
    alternatives = "|".join(r"\s+".join(map(re.escape, p.split())) for p in phrases if p.strip())
    return re.compile(r"(?<![\w])(?:" + alternatives + r")(?![\w])", re.IGNORECASE)


def find_phrase(text: str, phrases: tuple[str, ...]) -> str | None:
    pattern = phrase_pattern(phrases)
    if pattern is None:
        return None
    m = pattern.search(text)
    return " ".join(m.group(0).split()) if m else None


def scope(mail: Mail, ctx: Context, so_far: Outcome) -> Verdict | None:
    text = f"{mail.subject}\n{mail.reply_text}"
    for category, phrases in ctx.settings.scope_phrases.items():
        found = find_phrase(text, tuple(phrases))
        if found:
            # an account on hold hears about the hold first: the case stays
            # out of scope when it is released
            notice = Notice.OUT_OF_SCOPE if so_far.notice is None else None
            return Verdict(RULE, "out-of-scope",
                           f"asks for {category} advice ({found!r}), which the agreement does not cover",
                           notice=notice, out_of_scope=True,
                           flags=(f"out-of-scope:{category}",))
    return None
