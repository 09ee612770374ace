"""Rule 11: severity, 1 (critical) to 4 (low); 3 (normal) by default.

An explicit ``Severity: 1``-``4`` line (or, from a person, ``Priority: high``,
a named level) in the newest part of the body or an ``[S1]``/``[Sev 1]`` subject tag wins; otherwise configurable keyword rules
("system down", "cannot submit claims" -> high).  Keywords give high at
most: critical comes from an explicit marker, or from a phrase the operator
lists under ``critical`` on purpose (none by default).  A keyword the sender
negates ("this is not urgent", "no data loss") says the opposite of what it
names, so it does not count.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mailcase.rules.base import Context, Mail, Mark, Outcome, Verdict
from mailcase.rules.content import remembered, settings_digest
from mailcase.rules.scope import may_hold, phrase_pattern

RULE = "severity"
NAMES = {1: "critical", 2: "high", 3: "normal", 4: "low"}
_LINE = re.compile(r"^\s*(?:severity|priority|sev)(?:\s+level)?\s*[:=]?\s*([1-4]|critical|high|medium|normal|low)\b",
                   re.IGNORECASE | re.MULTILINE)
#: the named levels an explicit line may use ("Priority: High")
_WORDS = {"critical": 1, "high": 2, "medium": 3, "normal": 3, "low": 4}
_TAG = re.compile(r"\[\s*(?:S|Sev\s*)([1-4])\s*\]", re.IGNORECASE)
# a negation in the few words before a keyword, within its clause
_NEGATION = re.compile(
    r"(?:\b(?:not|no|non|never|nothing|without|nicht|kein\w*|pas|sans)\b|n't)\W+(?:\w+\W+){0,2}$",
    re.IGNORECASE)
_CLAUSE_END = re.compile(r"[.!?;:\n]")


def _negated(text: str, start: int) -> bool:
    before = text[max(0, start - 60):start]
    cut = max((m.end() for m in _CLAUSE_END.finditer(before)), default=0)
    return bool(_NEGATION.search(before[cut:]))


def find_keyword(text: str, phrases: tuple[str, ...]) -> str | None:
    """The first keyword of ``phrases`` in ``text`` that the sender did not negate."""
    pattern = phrase_pattern(phrases)
    if pattern is None or not may_hold(text, phrases):
        return None
    for m in pattern.finditer(text):
        if not _negated(text, m.start()):
            return " ".join(m.group(0).split())
    return None


def _markers(mail: Mail) -> list[Any]:
    """[the subject tag's level, the explicit line as written and its level word] (None: absent)."""
    m = _TAG.search(mail.subject or "")
    line = _LINE.search(mail.reply_text)
    return [int(m.group(1)) if m else None, [line.group(0), line.group(1)] if line else None]


def _keyword(mail: Mail, phrases: Mapping[int, tuple[str, ...]]) -> list[Any] | None:
    """[level, keyword] of the first configured keyword the sender did not negate, or None."""
    subject_and_text = f"{mail.subject}\n{mail.reply_text}"
    for level in sorted(phrases):
        found = find_keyword(subject_and_text, tuple(phrases[level]))
        if found:
            return [level, found]
    return None


def _same(value: Any) -> Any:
    return value


def severity(mail: Mail, ctx: Context, so_far: Outcome) -> Verdict | None:
    # what the mail says depends on it alone (content.py); how a named level
    # counts depends on whether an earlier rule found it automatic
    tag, line = remembered(mail, "severity", lambda: _markers(mail), _same, _same)
    if tag is not None:
        level = int(tag)
        return Verdict(RULE, "severity-explicit", f"subject tag [S{level}]: {NAMES[level]}", severity=level)
    # a machine's named level is its own scale (Zabbix "Severity: High" is its
    # fourth of six): only a person's "Priority: high" is ours
    if line and not str(line[1]).isdigit() and Mark.AUTOMATIC in so_far.marks:
        line = None
    if line:
        written, word = str(line[0]), str(line[1]).lower()
        level = _WORDS[word] if word in _WORDS else int(word)
        return Verdict(RULE, "severity-explicit", f"'{' '.join(written.split())}' line: {NAMES[level]}",
                       severity=level)
    phrases = ctx.settings.severity_phrases
    found = remembered(mail, "severity-keyword", lambda: _keyword(mail, phrases), _same, _same,
                       given=settings_digest(sorted(phrases.items())))
    if found:
        level, keyword = int(found[0]), str(found[1])
        return Verdict(RULE, "severity-keyword", f"{keyword!r}: {NAMES.get(level, level)}", severity=level)
    return None
