"""Header lines of the mail we write: folded (RFC 5322 §2.2.3) and, when not
ASCII, RFC 2047 encoded words.

The email package does both (``Header``, a policy's ``fold``), at some 95
microseconds a field: a cutoff writing 13,000 mails spent 2.4 of its 20
seconds there, on subjects and References a little over a line long.  The
two cases our mail has are written here directly:

* an ASCII value is folded before white space that follows a word, each line
  at most 78 characters where the words allow it (a word longer than a line
  stays whole; a line longer than 998 is refused);
* any other value is written as UTF-8 base64 encoded words (RFC 2047 §4.1),
  each of whole characters (§5) and at most 75 characters long, one per line.

Unfolding (removing each CRLF) gives back the value exactly; a decoder gives
back the text.  Values reach here cleaned of CR, LF and control characters
(render.clean_header_text), so a value cannot start a header line.
"""

from __future__ import annotations

import base64
import re

from mailcase.core.errors import MailcaseError

#: RFC 5322 §2.1.1: lines SHOULD be at most 78 characters and MUST be at most 998
LINE = 78
MAX_LINE = 998
#: the UTF-8 bytes in one encoded word: 56 base64 characters, "=?utf-8?b?...?=" 68, "Subject: " + it 77
_WORD_BYTES = 42
#: where a line may be folded: before white space that follows a word
_FOLD_POINT = re.compile(r"(?<=[^ \t])[ \t]")


class HeaderTooLong(MailcaseError):
    """A header line longer than 998 characters that cannot be folded."""


def fold_field(name: str, value: str) -> str:
    """``name: value`` as header lines, each ending in CRLF."""
    if value.isascii():
        return _fold_ascii(name, value)
    return _encoded(name, value)


def _fold_ascii(name: str, value: str) -> str:
    line = f"{name}: {value}"
    if len(line) <= LINE:
        return line + "\r\n"
    points = [m.start() for m in _FOLD_POINT.finditer(line, len(name) + 2)]
    lines: list[str] = []
    start = 0
    i = 0
    while len(line) - start > LINE and i < len(points):
        # the last fold point that keeps this line within LINE, else the first one after it
        j = i
        while j + 1 < len(points) and points[j + 1] - start <= LINE:
            j += 1
        lines.append(line[start : points[j]])
        start = points[j]
        i = j + 1
    lines.append(line[start:])
    if max(map(len, lines)) > MAX_LINE:
        raise HeaderTooLong(f"{name} has a word longer than a header line may be")
    return "\r\n".join(lines) + "\r\n"


def encoded_words(value: str) -> list[str]:
    """``value`` as UTF-8 base64 encoded words of whole characters, each at most 75 characters."""
    words: list[str] = []
    chunk = bytearray()
    for ch in value:
        b = ch.encode("utf-8")
        if len(chunk) + len(b) > _WORD_BYTES:
            words.append(_word(chunk))
            chunk.clear()
        chunk.extend(b)
    if chunk or not words:
        words.append(_word(chunk))
    return words


def _word(data: bytes | bytearray) -> str:
    return f"=?utf-8?b?{base64.b64encode(bytes(data)).decode('ascii')}?="


def _encoded(name: str, value: str) -> str:
    return f"{name}: " + "\r\n ".join(encoded_words(value)) + "\r\n"
