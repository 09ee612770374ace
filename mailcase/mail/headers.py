"""Reading a mail's header block: the fast, durable step of ingestion.

The header fields in order and where the body starts, from raw bytes; what
they mean (the logical identity, Message-IDs, dates) is header_info.py's.
Never raises on odd input: every oddity becomes a defect string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

from mailcase.mail.charsets import decode_8bit_header, decode_encoded_words

# RFC 5322 field-name: printable US-ASCII except colon
_FIELD_NAME = re.compile(rb"^[\x21-\x39\x3b-\x7e]+$")
#: fields kept of one header block; the rest is skipped (a header flood)
_MAX_HEADER_FIELDS = 5000
#: bytes kept of one field's value (RFC 5322 §2.1.1 allows 998 a line; a long
#: References or a folded Subject stays far below this)
_MAX_FIELD_BYTES = 256 * 1024
_CHARSET_PARAM = re.compile(rb"""charset\s*=\s*["']?([A-Za-z0-9_.:+-]{1,40})""", re.I)
_MAX_CHARSETS = 8
# header fields that, seen after a stray line, show the header block goes on
_KNOWN_FIELDS = {
    "from", "to", "cc", "bcc", "subject", "date", "message-id", "received", "return-path",
    "reply-to", "sender", "mime-version", "in-reply-to", "references", "delivered-to",
    "dkim-signature", "authentication-results", "importance", "priority", "thread-topic",
    "thread-index", "accept-language", "content-language", "user-agent", "precedence",
}
_KNOWN_PREFIXES = ("x-", "content-", "arc-", "list-", "resent-", "auto-")
_LOOKAHEAD_LINES = 40
_EMPTY_LINE = re.compile(rb"\n\r?\n")
_LINE_BREAK_EDGES = re.compile(r"^[\r\n]+|[\r\n]+$")
_LINE_BREAKS = re.compile(r"[\r\n]+")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def display_text(value: str) -> str:
    """A decoded unstructured header value as one line of display text.

    A field body cannot hold a line break (RFC 5322 §2.2): one an
    encoded-word smuggles in becomes a space (or goes, at either end), and
    other control characters go.  All other whitespace is kept: spaces inside
    an encoded-word are text the sender wrote (RFC 2047 §5), and folding
    whitespace is already unfolded by removing only the CRLF (§2.2.3).
    """
    if any(c < " " or c == "\x7f" for c in value):
        value = _LINE_BREAKS.sub(" ", _LINE_BREAK_EDGES.sub("", value))
        value = _CONTROLS.sub("", value)
    return value


@dataclass(frozen=True)
class HeaderBlock:
    """The header fields in order, as (lower-case name, unfolded raw value)."""

    fields: tuple[tuple[str, bytes], ...]
    body_offset: int
    defects: tuple[str, ...]
    #: where the first header field starts (after an mbox From line or junk)
    header_start: int = 0
    #: offsets of header lines that lacked their folding whitespace
    folded_at: tuple[int, ...] = ()
    #: the message the block was read from (for the charsets it declares)
    raw: bytes = field(default=b"", repr=False, compare=False)
    #: where the fields past ``_MAX_HEADER_FIELDS`` begin (None: all were read)
    fields_end: int | None = None
    #: the fields whose value held NUL bytes (removed)
    nul_fields: tuple[str, ...] = ()

    @cached_property
    def _by_name(self) -> dict[str, list[bytes]]:
        # the rules ask a block for some twenty fields: one pass, not twenty
        index: dict[str, list[bytes]] = {}
        for n, v in self.fields:
            index.setdefault(n, []).append(v)
        return index

    def raw_values(self, name: str) -> list[bytes]:
        return list(self._by_name.get(name.lower(), ()))

    def _decode(self, value: bytes) -> str:
        if value.isascii():
            return value.decode("ascii")
        return decode_8bit_header(value, self.charsets)

    def values(self, name: str) -> list[str]:
        """Every value of ``name``, 8-bit bytes decoded, encoded-words left alone."""
        return [self._decode(v).strip() for v in self.raw_values(name)]

    @cached_property
    def _first(self) -> dict[str, str | None]:
        return {}

    def first(self, name: str) -> str | None:
        """The first value of ``name``, decoded as :meth:`values` does (kept: the rules ask often)."""
        name = name.lower()
        cache = self._first
        if name not in cache:
            raw = self._by_name.get(name)
            cache[name] = self._decode(raw[0]).strip() if raw else None
        return cache[name]

    def text(self, name: str) -> str | None:
        """The first value of ``name`` as display text (encoded-words decoded)."""
        value = self.first(name)
        if value is None:
            return None
        return display_text(decode_encoded_words(value))

    def has(self, name: str) -> bool:
        return name.lower() in self._by_name

    @property
    def declared_charset(self) -> str | None:
        for n, v in self.fields:
            if n == "content-type":
                m = re.search(rb'charset\s*=\s*"?([A-Za-z0-9_.:+-]+)', v, re.I)
                return m.group(1).decode("ascii") if m else None
        return None

    @cached_property
    def charsets(self) -> tuple[str, ...]:
        """Every charset the message declares, top-level first.

        Raw 8-bit header bytes carry no label; the charsets of the message's
        parts are the best evidence of what the sender's mailer used.
        """
        found: list[str] = []
        top = self.declared_charset
        if top:
            found.append(top.lower())
        for m in _CHARSET_PARAM.finditer(self.raw):
            label = m.group(1).decode("ascii").lower()
            if label not in found:
                found.append(label)
                if len(found) >= _MAX_CHARSETS:
                    break
        return tuple(found)


def split_headers(raw: bytes) -> HeaderBlock:
    """Split ``raw`` into header fields and the offset where the body starts.

    Unfolding removes only the line break (RFC 5322 §2.2.3): the whitespace
    that follows it is part of the value.

    Bounded whatever the input: NUL bytes (which RFC 5322 §2.2 does not
    allow in a header, and PostgreSQL cannot store) are dropped; a field
    keeps at most ``_MAX_FIELD_BYTES``; past ``_MAX_HEADER_FIELDS`` fields the
    rest of the header block is skipped to the first empty line, so 100,000
    header lines cost one search, not 100,000 stored fields, and the body
    stays the body.
    """
    pos = 0
    n = len(raw)
    if raw.startswith(b"From "):  # mbox envelope line, not a header
        nl = raw.find(b"\n")
        pos = n if nl < 0 else nl + 1
    return _split_well_formed(raw, pos) or _split_any(raw, pos)


# a header block with nothing odd in it: fields (with folded lines) then an empty line
# (possessive: lines cannot be read two ways, and no backtracking stack grows per line)
_WELL_FORMED = re.compile(rb"(?:[\x21-\x39\x3b-\x7e]++[ \t]*+:[^\r\n\0]*+\r?\n(?:[ \t][^\r\n\0]*+\r?\n)*+)*+\r?\n")
_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:[ \t]*([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)\r?\n")


def _split_well_formed(raw: bytes, pos: int) -> HeaderBlock | None:
    """The common case at C speed; None when anything needs the careful reader
    (a stray line, NUL, a bare CR, no empty line, a flood of fields)."""
    end = _EMPTY_LINE.search(raw, pos, pos + _MAX_FIELD_BYTES)
    if end is None and not raw.startswith((b"\n", b"\r\n"), pos):
        return None  # no header block end within bounds: the careful reader decides
    m = _WELL_FORMED.match(raw, pos, pos + _MAX_FIELD_BYTES)
    if m is None:
        return None
    fields = tuple(
        # unfolded: every line break out, with the CR before it (a well-formed block has no bare CR)
        (name.decode("ascii").lower(),
         (value.replace(b"\r\n", b"").replace(b"\n", b"") if b"\n" in value else value).rstrip(b" \t"))
        for name, value in _FIELD.findall(raw, pos, m.end())
    )
    if len(fields) > _MAX_HEADER_FIELDS:
        return None
    return HeaderBlock(fields=fields, body_offset=m.end(), defects=(), header_start=pos, raw=raw)


def _split_any(raw: bytes, pos: int) -> HeaderBlock:
    """The careful reader: any input, every oddity a defect."""
    fields: list[tuple[str, bytearray]] = []
    defects: list[str] = []
    folded_at: list[int] = []
    n = len(raw)
    header_start = pos
    body_offset = n
    fields_end: int | None = None
    skipped_junk = False
    had_nul = False
    nul_fields: list[str] = []
    long_fields: list[str] = []

    def extend(value: bytearray, more: bytes) -> None:
        room = _MAX_FIELD_BYTES - len(value)
        if len(more) > room:
            more = more[: max(room, 0)]
            if fields and fields[-1][0] not in long_fields:
                long_fields.append(fields[-1][0])
        value.extend(more)

    while pos < n:
        eol = raw.find(b"\n", pos)
        nxt = n if eol < 0 else eol + 1
        line = raw[pos : (n if eol < 0 else eol)]
        if line.endswith(b"\r"):
            line = line[:-1]
        nul_here = b"\0" in line
        if nul_here:
            had_nul = True
            line = line.replace(b"\0", b"")
        if not line:
            body_offset = nxt
            break
        if line[:1] in (b" ", b"\t"):
            if fields:
                extend(fields[-1][1], line)
                if nul_here:
                    nul_fields.append(fields[-1][0])
            else:
                defects.append("continuation line before the first header")
            pos = nxt
            continue
        colon = line.find(b":")
        name = line[:colon].rstrip(b" \t") if colon > 0 else b""
        if colon > 0 and _FIELD_NAME.match(name):
            if len(fields) >= _MAX_HEADER_FIELDS:
                defects.append(f"more than {_MAX_HEADER_FIELDS} header fields; rest ignored")
                fields_end = pos
                # the rest of the block is skipped, not read: it ends at the
                # first empty line (found at C speed, not line by line)
                m = _EMPTY_LINE.search(raw, pos)
                body_offset = m.end() if m else n
                break
            value = bytearray()
            fields.append((name.decode("ascii").lower(), value))
            extend(value, line[colon + 1 :].lstrip(b" \t"))
            if nul_here:
                nul_fields.append(fields[-1][0])
            pos = nxt
            continue
        if not fields and not skipped_junk and _headers_follow(raw, nxt):
            # text before the first header (seen in real mail): skip one line
            defects.append("text before the first header")
            skipped_junk = True
            pos = header_start = nxt
            continue
        if fields and _header_block_resumes(raw, nxt):
            # a folded line that lost its leading whitespace (seen in real
            # mail: long X- headers broken by a gateway)
            if not folded_at:
                defects.append("header line without folding whitespace")
            folded_at.append(pos)
            extend(fields[-1][1], b" " + line)
            pos = nxt
            continue
        defects.append("no blank line between header and body")
        body_offset = pos
        break
    if had_nul:
        defects.append("NUL bytes in the header block; removed")
    defects.extend(f"{name} field longer than {_MAX_FIELD_BYTES} bytes; cut" for name in long_fields)
    return HeaderBlock(
        fields=tuple((k, bytes(v).rstrip(b" \t")) for k, v in fields),
        body_offset=body_offset,
        defects=tuple(defects),
        header_start=header_start,
        folded_at=tuple(folded_at),
        raw=raw,
        fields_end=fields_end,
        nul_fields=tuple(dict.fromkeys(nul_fields)),
    )


def _header_block_resumes(raw: bytes, pos: int) -> bool:
    """After a stray line, does a well-known header field follow before a blank line?"""
    for _ in range(_LOOKAHEAD_LINES):
        if pos >= len(raw):
            return False
        eol = raw.find(b"\n", pos)
        line = raw[pos : (len(raw) if eol < 0 else eol)].rstrip(b"\r").replace(b"\0", b"")
        if not line:
            return False
        colon = line.find(b":")
        if colon > 0 and line[:1] not in (b" ", b"\t") and _FIELD_NAME.match(line[:colon]):
            name = line[:colon].decode("ascii").lower()
            return name in _KNOWN_FIELDS or name.startswith(_KNOWN_PREFIXES)
        if eol < 0:
            return False
        pos = eol + 1
    return False


def _headers_follow(raw: bytes, pos: int) -> bool:
    """Do the next two lines look like header fields?"""
    count = 0
    for _ in range(2):
        eol = raw.find(b"\n", pos)
        line = raw[pos : (len(raw) if eol < 0 else eol)].rstrip(b"\r").replace(b"\0", b"")
        colon = line.find(b":")
        if colon <= 0 or not _FIELD_NAME.match(line[:colon]):
            return False
        count += 1
        if eol < 0:
            break
        pos = eol + 1
    return count > 0
