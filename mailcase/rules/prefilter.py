"""A literal prefilter in front of a large case-insensitive alternation: the same answers, sooner.

The body rules (autoreplies.py) search a mail's newest text with alternations
of dozens of phrases, each starting with ``\\b``.  Python's ``re`` finds no
literal prefix to scan for in such a pattern, so it tries every phrase at
every position: about a tenth of a millisecond per pattern and mail, over ten
seconds for a cutoff of ten thousand mails.  Yet every phrase holds words
that each of its matches must contain ("we will ... get back", "out of
office"): when the text lacks them for every phrase, the pattern cannot match
and need not run.

:class:`Phrases` works those words out of each phrase's parsed form (so they
cannot drift from the pattern) and answers exactly as the joined pattern
does: it returns None without running the pattern only when no phrase's
words are all in the text, as case-insensitive matching sees it
(:func:`canon`); otherwise it runs the pattern and returns its match.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from typing import Any

try:
    #: the parser ``re`` compiles with (``sre_parse`` is its deprecated public name)
    _parser: Any = importlib.import_module("re._parser")
    _c: Any = importlib.import_module("re._constants")
    _EXTRA_CASES: dict[int, tuple[int, ...]] = importlib.import_module("re._casefix")._EXTRA_CASES
    #: the simple lower case ``re`` compares under IGNORECASE
    _tolower: Any = importlib.import_module("_sre").unicode_tolower
except (ImportError, AttributeError):  # a Python whose ``re`` is built otherwise: no prefilter, same answers
    _parser = None

#: repeats whose body matches at least once when their minimum is one or more
_REPEATS = frozenset() if _parser is None else frozenset(
    {_c.MAX_REPEAT, _c.MIN_REPEAT, getattr(_c, "POSSESSIVE_REPEAT", _c.MAX_REPEAT)})

Words = frozenset[str]


class _Canon(dict[int, str]):
    """A ``str.translate`` table: each character as case-insensitive matching sees it.

    ``re`` matches a character to a literal case-insensitively when their simple
    lower cases are equal or are one of a few listed pairs (``re._casefix``: the
    long s and "s", the dotless i and "i", ...).  Mapping both to the smallest of
    that set makes "the text, so mapped, contains the word, so mapped" follow
    from any match, whatever the script.
    """

    def __missing__(self, code: int) -> str:
        low = _tolower(code)
        self[code] = out = chr(min((low, *_EXTRA_CASES.get(low, ()))))
        return out


_CANON = _Canon()


def canon(text: str) -> str:
    """``text`` as case-insensitive matching sees it (plain lower case for ASCII)."""
    return text.lower() if text.isascii() else text.translate(_CANON)


def _shortest(words: Words) -> int:
    return min(map(len, words))


def _requirements(items: Sequence[Any]) -> list[Words]:
    """Sets of lower-cased words such that every match of ``items`` contains a word of each set."""
    sets: list[Words] = []
    run: list[str] = []
    for op, av in items:
        if op is _c.LITERAL:
            run.append(chr(av))
            continue
        if run:  # consecutive literals match consecutive characters
            sets.append(frozenset({canon("".join(run))}))
            run = []
        found: Words | None = None
        if op is _c.SUBPATTERN:
            found = _required(av[-1])
        elif op is _c.BRANCH:
            alternatives = [_required(a) for a in av[1]]
            if all(a is not None for a in alternatives):
                found = frozenset().union(*(a for a in alternatives if a is not None))
        elif op in _REPEATS and av[0] >= 1:
            found = _required(av[2])
        elif op is getattr(_c, "ATOMIC_GROUP", None):
            found = _required(av)
        # anything else (a class, an anchor, a lookaround, an optional part) ends a run and requires nothing
        if found:
            sets.append(found)
    if run:
        sets.append(frozenset({canon("".join(run))}))
    return sets


def _required(items: Sequence[Any]) -> Words | None:
    """The most selective of :func:`_requirements` (its shortest word longest); None if none."""
    sets = _requirements(items)
    return max(sets, key=_shortest) if sets else None


class _Phrase:
    """One alternative's word sets, most selective first."""

    def __init__(self, source: str, flags: int) -> None:
        sets = sorted(_requirements(_parser.parse(source, flags).data), key=_shortest, reverse=True)
        self.sets: tuple[tuple[str, ...], ...] = tuple(tuple(sorted(s, key=len, reverse=True)) for s in sets)

    def may_match(self, seen: str) -> bool:
        return all(any(w in seen for w in words) for words in self.sets)


class Phrases:
    """``re.compile("|".join(f"(?:{p})" for p in phrases), flags)`` with a prefilter:
    :meth:`search` returns what the compiled pattern's ``search`` returns."""

    def __init__(self, phrases: Sequence[str], flags: int) -> None:
        self.pattern = re.compile("|".join(f"(?:{p})" for p in phrases), flags)
        self.phrases: tuple[_Phrase, ...] | None = None
        if _parser is None:
            return
        try:
            parsed = [_Phrase(p, flags) for p in phrases]
        except Exception:  # an ``re`` internal changed shape: run the pattern on every text, as before
            return
        # a phrase that requires no word at all can match any text: no prefilter then
        if all(p.sets for p in parsed):
            self.phrases = tuple(parsed)

    def search(self, text: str) -> re.Match[str] | None:
        if self.phrases is not None:
            seen = canon(text)
            if not any(p.may_match(seen) for p in self.phrases):
                return None
        return self.pattern.search(text)
