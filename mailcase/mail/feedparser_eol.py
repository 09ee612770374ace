"""The standard library's MIME parser, without one needless scan of every part.

``email.feedparser`` strips the line break that belongs to a MIME boundary
from the end of the part before it with ``NLCRE_eol.search(payload)``, a
regular expression ``(\\r\\n|\\r|\\n)\\Z`` that the ``re`` engine tries at every
position of the payload: a 300 KB attachment costs a millisecond, about 15%
of our whole parse of the benchmark's mail.  The answer only depends on the
last two characters.  :func:`install` puts an object with the same
``search`` answer (a match whose ``group(0)`` is the line break at the very
end, or None) in place of that pattern, once per process; it leaves the
module alone when its pattern is not the one this replaces (a later Python).
A test checks both agree on every short string of line-break characters and
that the parsed trees of the corpus are the same.
"""

from __future__ import annotations

import email.feedparser as _feedparser

_PATTERN = r"(\r\n|\r|\n)\Z"


class _EndMatch:
    __slots__ = ("_text",)

    def __init__(self, text: str) -> None:
        self._text = text

    def group(self, *_groups: object) -> str:
        return self._text  # the pattern has one group, equal to the whole match


class LineBreakAtEnd:
    """``NLCRE_eol`` answered from the end of the string."""

    pattern = _PATTERN

    def search(self, text: str) -> _EndMatch | None:
        if text.endswith("\n"):
            return _EndMatch("\r\n" if text.endswith("\r\n") else "\n")
        if text.endswith("\r"):
            return _EndMatch("\r")
        return None


def install() -> bool:
    """Replace ``email.feedparser.NLCRE_eol``; True when it is (now) replaced."""
    current = getattr(_feedparser, "NLCRE_eol", None)  # not in typeshed: a module global
    if isinstance(current, LineBreakAtEnd):
        return True
    if getattr(current, "pattern", None) != _PATTERN:
        return False
    setattr(_feedparser, "NLCRE_eol", LineBreakAtEnd())  # noqa: B010
    return True
