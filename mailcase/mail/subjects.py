"""Subjects: the case and survey tokens, reply and forward prefixes, and the subject compared.

One definition of each: the threading rule reads ``[Case #000123]``, the
outbox writes it, the templates show it, every message names a case as
``#000123`` (:func:`case_label`); every rule that asks "is this a reply or a
forward" uses :data:`REPLY_PREFIX`, and "is this a forward" :data:`FORWARD_PREFIX`.
"""

from __future__ import annotations

import re

#: how many digits a case number is written with
_DIGITS = 6

CASE_TOKEN = re.compile(r"\[\s*Case\s*#\s*(\d{1,9})\s*\]", re.IGNORECASE)
SURVEY_TOKEN = re.compile(r"\[\s*Survey\s*#\s*(\d{1,9})\s*\]", re.IGNORECASE)

# the prefixes of the mail clients in use, by what they mean
#: a reply: English (Re), German (AW, Antwort), Dutch (Antw), Nordic (SV),
#: French (RÉF, Ref), Italian (R, RIF), Portuguese (RES)
_REPLY_WORDS = ("re", "aw", "antw", "antwort", "sv", "réf", "ref", "rif", "r", "res")
#: a forward: English (Fw, Fwd), German (WG), Nordic (VS), French (TR),
#: Italian (I), Spanish (RV), Portuguese (ENC), Dutch (Doorst)
_FORWARD_WORDS = ("fw", "fwd", "wg", "vs", "tr", "i", "rv", "enc", "doorst")
#: a tag a list, a gateway or a person puts in front ("[EXTERNAL]", "[Case #000123]")
_TAG = r"\[[^\]]{0,40}\]"


def _prefix(words: tuple[str, ...]) -> str:
    """One prefix: tags before it, the word, Outlook's counter (``Re[2]:``), the colon."""
    return rf"(?:{_TAG}\s*)*(?:{'|'.join(words)})\s*(?:\[\d+\])?\s*:\s*"


#: one or more reply or forward prefixes at the start of a subject, in any mix
REPLY_PREFIX = re.compile(rf"^\s*(?:{_prefix(_REPLY_WORDS + _FORWARD_WORDS)})+", re.IGNORECASE)
#: a subject that starts as a forward (a person passing something on)
FORWARD_PREFIX = re.compile(rf"^\s*{_prefix(_FORWARD_WORDS)}", re.IGNORECASE)
_TAGS = re.compile(_TAG)


def case_label(number: int) -> str:
    """A case number as every message and mail writes it: ``#000123``."""
    return f"#{int(number):0{_DIGITS}d}"


def format_case_token(number: int) -> str:
    return f"[Case {case_label(number)}]"


def format_survey_token(number: int) -> str:
    return f"[Survey {case_label(number)}]"


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


def is_forward(subject: str | None) -> bool:
    """The subject starts with a forward prefix ("Fwd:", "WG:", "TR:", ...)."""
    return bool(FORWARD_PREFIX.match(subject or ""))


def strip_prefixes(subject: str | None) -> str:
    """The subject without its leading reply/forward prefixes (and the tags among them)."""
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
