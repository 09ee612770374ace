"""Subjects: the case and survey tokens, reply prefixes, and the subject compared.

One definition of each: the threading rule reads ``[Case #000123]``, the
outbox writes it, the templates show it; every rule that asks "is this a
reply or a forward" uses :data:`REPLY_PREFIX`.
"""

from __future__ import annotations

import re

CASE_TOKEN = re.compile(r"\[\s*Case\s*#\s*(\d{1,9})\s*\]", re.IGNORECASE)
SURVEY_TOKEN = re.compile(r"\[\s*Survey\s*#\s*(\d{1,9})\s*\]", re.IGNORECASE)

# reply and forward prefixes of the mail clients in use: English, German
# (AW, WG, Antw), Nordic (SV, VS), French (TR, RÉF), Italian (R, RIF, I),
# Spanish and Portuguese (RV, ENC, RES), Dutch (Doorst), with Outlook's [2]
_PREFIXES = r"re|fw|fwd|aw|wg|sv|vs|antw|antwort|tr|réf|ref|rif|r|i|rv|enc|res|doorst"
#: one or more reply/forward prefixes at the start of a subject
REPLY_PREFIX = re.compile(rf"^\s*(?:(?:{_PREFIXES})\s*(?:\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_TAGS = re.compile(r"\[[^\]]{0,40}\]")


def format_case_token(number: int) -> str:
    return f"[Case #{int(number):06d}]"


def format_survey_token(number: int) -> str:
    return f"[Survey #{int(number):06d}]"


def case_number(subject: str | None) -> int | None:
    """The case number a subject's token names, if any."""
    m = CASE_TOKEN.search(subject or "")
    return int(m.group(1)) if m else None


def survey_number(subject: str | None) -> int | None:
    """The case number a subject's survey token names, if any."""
    m = SURVEY_TOKEN.search(subject or "")
    return int(m.group(1)) if m else None


def is_reply_or_forward(subject: str | None) -> bool:
    return bool(REPLY_PREFIX.match(subject or ""))


def strip_prefixes(subject: str | None) -> str:
    """The subject without its leading reply/forward prefixes."""
    return REPLY_PREFIX.sub("", subject or "")


def normalise_subject(subject: str | None) -> str:
    """Re:/Fwd:/AW:/WG: and [tags] stripped, case and spacing folded."""
    s = subject or ""
    for _ in range(5):
        before = s
        s = REPLY_PREFIX.sub("", _TAGS.sub(" ", CASE_TOKEN.sub(" ", s))).strip()
        if s == before:
            break
    return " ".join(s.lower().split())
