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

from mailcase.rules.base import Context, Mail, Mark, Outcome, Verdict
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


def severity(mail: Mail, ctx: Context, so_far: Outcome) -> Verdict | None:
    m = _TAG.search(mail.subject or "")
    if m:
        level = int(m.group(1))
        return Verdict(RULE, "severity-explicit", f"subject tag [S{level}]: {NAMES[level]}", severity=level)
    text = mail.reply_text
    m = _LINE.search(text)
    # a machine's named level is its own scale (Zabbix "Severity: High" is its
    # fourth of six): only a person's "Priority: high" is ours
    if m and not m.group(1).isdigit() and Mark.AUTOMATIC in so_far.marks:
        m = None
    if m:
        word = m.group(1).lower()
        level = _WORDS[word] if word in _WORDS else int(word)
        return Verdict(RULE, "severity-explicit", f"'{' '.join(m.group(0).split())}' line: {NAMES[level]}",
                       severity=level)
    subject_and_text = f"{mail.subject}\n{text}"
    for level in sorted(ctx.settings.severity_phrases):
        found = find_keyword(subject_and_text, tuple(ctx.settings.severity_phrases[level]))
        if found:
            return Verdict(RULE, "severity-keyword", f"{found!r}: {NAMES.get(level, level)}", severity=level)
    return None
