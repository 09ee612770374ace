"""The standard library's MIME parser, without one needless scan of every part.

``email.feedparser`` strips the line break that belongs to a MIME boundary
from the end of the part before it with ``NLCRE_eol.search(payload)``, a
regular expression ``(\\r\\n|\\r|\\n)\\Z`` that the ``re`` engine tries at every
position of the payload: a 300 KB attachment costs a millisecond, about 15%
of our whole parse of the benchmark's mail.  The answer only depends on the
last two characters.  :class:`LineBreakAtEnd` gives the same ``search``
answer (a match whose ``group(0)`` is the line break at the very end, or
None) from those.

Importing this module changes nothing.  :func:`install` puts a
:class:`LineBreakAtEnd` in place of the pattern, for the whole process; the
parse worker's initializer calls it (parse_worker.py), and so does the parse
stage where it parses in its own process.  It does so only when the module
global is the pattern this replaces *and* the parser builds the same trees
with it as without it from :data:`PROBES` (CRLF, LF, bare CR and mixed line
ends, multiparts with preambles and epilogues): the trial runs in a private
copy of ``email.feedparser``, so nothing is changed until the answer is
yes.  Otherwise (a later Python) the stock parser stays, and the reason is
logged once.  tests/test_feedparser_eol.py checks all of this; tests/test_fuzz.py
checks both agree on every short string of line-break characters and build
the same trees from the corpus.
"""

from __future__ import annotations

import email.feedparser as _feedparser
import importlib.util
import logging
from email.message import Message as EmailMessage
from email.policy import compat32
from types import ModuleType
from typing import Any

from mailcase.core.log import kv

log = logging.getLogger(__name__)

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


def _with_line_ends(text: str, ends: tuple[str, ...]) -> bytes:
    """``text`` (lines ending in ``\\n``) with its line ends taken from ``ends`` in turn."""
    lines = text.split("\n")
    out = [line + ends[i % len(ends)] for i, line in enumerate(lines[:-1])]
    return ("".join(out) + lines[-1]).encode("utf-8")


_SIMPLE = (
    "From alice@example.org Mon Nov 23 09:00:00 2026\n"  # an mbox line: its line break is stripped too
    "From: Alice <alice@example.org>\nTo: support@example.com\nSubject: line ends\n"
    "Message-ID: <probe-1@example.org>\n\nHello,\n\nthe export fails.\n"
)
_MULTIPART = (
    "From: Alice <alice@example.org>\nSubject: parts\nMIME-Version: 1.0\n"
    'Content-Type: multipart/mixed; boundary="outer"\n\n'
    "This is the preamble.\n\n"
    "--outer\n"
    'Content-Type: multipart/alternative; boundary="inner"\n\n'
    "--inner\nContent-Type: text/plain; charset=utf-8\n\nplain text\n\n"
    "--inner\nContent-Type: text/html\n\n<p>html</p>\n"
    "--inner--\ninner epilogue\n\n"
    "--outer\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n"
    'Content-Disposition: attachment; filename="a.bin"\n\nAAECAwQF\n'
    "--outer\nContent-Type: text/plain\n\nno line break before the boundary"
    "\n--outer\nContent-Type: text/plain\n\n"
    "\n--outer--\nthe epilogue\n"
)
_LINE_ENDS = (("\r\n",), ("\n",), ("\r",), ("\r\n", "\n", "\r"), ("\n", "\r\n"))

#: messages the stock and the patched parser must build the same trees from
PROBES: tuple[bytes, ...] = tuple(
    _with_line_ends(text, ends) for text in (_SIMPLE, _MULTIPART) for ends in _LINE_ENDS
) + (
    _with_line_ends(_MULTIPART, ("\n",)) + b"\r",  # ends in a bare CR
    _with_line_ends(_MULTIPART.replace("\n--outer--\nthe epilogue\n", "\n--outer--"), ("\r\n",)),
)


def tree_shape(module: Any, raw: bytes) -> list[tuple[Any, ...]]:
    """The tree ``module``'s parser builds from ``raw``, as plain data (undecoded, as parsed)."""
    parser = module.BytesFeedParser(policy=compat32)
    parser.feed(raw)
    msg: EmailMessage = parser.close()
    return [
        (part.get_unixfrom(), part.items(), part.get_content_type(), part.preamble, part.epilogue,
         [type(d).__name__ for d in part.defects], None if part.is_multipart() else getattr(part, "_payload", None))
        for part in msg.walk()
    ]


def _private_copy() -> ModuleType:
    """A fresh ``email.feedparser``, not the one in ``sys.modules``: its globals are its own."""
    spec = importlib.util.find_spec(_feedparser.__name__)
    if spec is None or spec.loader is None:
        raise ImportError(f"no source for {_feedparser.__name__}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def incompatibility() -> str | None:
    """Why :class:`LineBreakAtEnd` must not replace the module's pattern here; None if it may."""
    current = getattr(_feedparser, "NLCRE_eol", None)  # not in typeshed: a module global
    if getattr(current, "pattern", None) != _PATTERN:
        return f"email.feedparser.NLCRE_eol is not {_PATTERN!r} here"
    try:
        trial = _private_copy()
        setattr(trial, "NLCRE_eol", LineBreakAtEnd())  # noqa: B010
        for i, raw in enumerate(PROBES):
            if tree_shape(trial, raw) != tree_shape(_feedparser, raw):
                return f"probe message {i} parses differently with it"
    except Exception as exc:  # the trial itself failed: the stock parser is the safe answer
        return f"the trial failed: {type(exc).__name__}: {exc}"
    return None


_NOT_CHECKED = object()
#: the module global install() last refused to replace (asked again about it, the answer stands)
_refused: object = _NOT_CHECKED
_logged = False


def install() -> bool:
    """Replace ``email.feedparser.NLCRE_eol`` if that is safe; True when it is (now) replaced."""
    global _refused, _logged
    current = getattr(_feedparser, "NLCRE_eol", None)
    if isinstance(current, LineBreakAtEnd):
        return True
    if current is _refused:
        return False
    reason = incompatibility()
    if reason is not None:
        _refused = current
        if not _logged:
            _logged = True
            log.warning("event=feedparser-speedup-off reason=%s", kv(reason))
        return False
    setattr(_feedparser, "NLCRE_eol", LineBreakAtEnd())  # noqa: B010
    return True
