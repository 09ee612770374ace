"""Rule 10: coding, billing and payer-specific advice are out of scope.

Recognised by concept (scope_concepts.py): a question that asks for a
decision about codes, charges or a payer's rules, and is not about what the
software does, in the subject or the newest, unquoted part of the body.  An
operator may add phrases of their own (``[rules.scope]``, none by default).
Such a request still becomes a case, marked out of scope, and is answered
with the out-of-scope template.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from mailcase.mail.subjects import is_forward
from mailcase.rules.base import Context, Mail, Notice, Outcome, Verdict
from mailcase.rules.content import remembered
from mailcase.rules.scope_concepts import ScopeJudgement, judge

RULE = "scope"


@lru_cache(maxsize=64)
def phrase_pattern(phrases: tuple[str, ...]) -> re.Pattern[str] | None:
    if not phrases:
        return None
    alternatives = "|".join(r"\s+".join(map(re.escape, p.split())) for p in phrases if p.strip())
    return re.compile(r"(?<![\w])(?:" + alternatives + r")(?![\w])", re.IGNORECASE)


@lru_cache(maxsize=64)
def _plain_phrases(phrases: tuple[str, ...]) -> tuple[str, ...] | None:
    """Each phrase lower-cased with single spaces; None if any is not ASCII."""
    plain = tuple(" ".join(p.lower().split()) for p in phrases if p.strip())
    return plain if all(p.isascii() for p in plain) else None


# the only characters outside ASCII that a case-insensitive expression
# matches to ASCII letters (checked over all of Unicode: tests/test_rules_props.py)
_ASCII_FOLDS = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})


@lru_cache(maxsize=8)
def _plain_text(text: str) -> str:
    return " ".join(text.translate(_ASCII_FOLDS).lower().split())


def may_hold(text: str, phrases: tuple[str, ...]) -> bool:
    """False when no phrase can match ``text``: a substring test at C speed.

    A case-insensitive regular expression can use no prefix to skip ahead,
    so it tries every phrase at every position.  For ASCII phrases, ignoring
    case is lower-casing the text once the four characters outside ASCII
    that fold to ASCII letters are made those letters, and the expression's
    ``\\s+`` between words is any run of whitespace (the same characters
    ``str.split`` splits on), so a phrase that is not a substring of that
    text with its whitespace runs made single spaces cannot match.
    """
    plain = _plain_phrases(phrases)
    if plain is None:
        return True
    low = _plain_text(text)
    return any(p in low for p in plain)


def find_phrase(text: str, phrases: tuple[str, ...]) -> str | None:
    pattern = phrase_pattern(phrases)
    if pattern is None or not may_hold(text, phrases):
        return None
    m = pattern.search(text)
    return " ".join(m.group(0).split()) if m else None


def _scope_json(j: ScopeJudgement) -> list[Any]:
    return [j.category, j.sentence, list(j.objects)]


def _scope_from_json(data: Any) -> ScopeJudgement:
    category, sentence, objects = data
    return ScopeJudgement(None if category is None else str(category), str(sentence), tuple(str(o) for o in objects))


def _out_of_scope(category: str, why: str, so_far: Outcome) -> Verdict:
    # an account on hold hears about the hold first: the case stays out of
    # scope when it is released
    notice = Notice.OUT_OF_SCOPE if so_far.notice is None else None
    return Verdict(RULE, "out-of-scope", f"asks for {category} advice ({why}), which the agreement does not cover",
                   notice=notice, out_of_scope=True, flags=(f"out-of-scope:{category}",))


def scope(mail: Mail, ctx: Context, so_far: Outcome) -> Verdict | None:
    # a forward passes on someone else's question: it is below the quote line
    text = mail.body if is_forward(mail.subject) else mail.reply_text
    judged = remembered(mail, "scope", lambda: judge(mail.subject, text), _scope_json, _scope_from_json)
    if judged.category is not None:
        named = f"; about {', '.join(judged.objects)}" if judged.objects else ""
        return _out_of_scope(judged.category, f"{judged.sentence!r}{named}", so_far)
    text = f"{mail.subject}\n{mail.reply_text}"
    for category, phrases in ctx.settings.rules.scope.items():
        found = find_phrase(text, tuple(phrases))
        if found:
            return _out_of_scope(category, f"the configured phrase {found!r}", so_far)
    return None
