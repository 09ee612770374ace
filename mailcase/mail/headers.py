"""Reading a mail's header block: the fast, durable step of ingestion.

Enough to store the mail under its logical identity and to run the
ingest-time rules (loops, bounces, threading); the full parse (parse.py)
runs later.  Works on raw bytes and never raises on odd input: every oddity
becomes a defect string.

Logical identity (issue 2 decision): one logical mail is identified by its
Message-ID plus From, Date and a hash of the body with line ends normalised.
Raw copies of one mail differ (CRLF from IMAP, LF from a Maildir, extra
Received: lines at a second support address) but share all four; a forged
mail re-using a real Message-ID differs in the others and so cannot pre-empt
the real one.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import cached_property

from dateutil import parser as date_parser

from mailcase.mail.addresses import AddressList, parse_address_list
from mailcase.mail.charsets import decode_8bit_header, decode_encoded_words
from mailcase.mail.pins import redact as redact_pins

# RFC 5322 field-name: printable US-ASCII except colon
_FIELD_NAME = re.compile(rb"^[\x21-\x39\x3b-\x7e]+$")
# no whitespace or control characters inside an id (RFC 5322 §3.6.4: dot-atom-text)
_MSGID = re.compile(r"<([^<>\s\x00-\x1f\x7f]+)>")
_BARE_MSGID = re.compile(r"^[^<>\s@\x00-\x1f\x7f]+@[^<>\s@\x00-\x1f\x7f]+$")
_MAX_IDS = 200
#: fields kept of one header block; the rest is skipped (a header flood)
_MAX_HEADER_FIELDS = 5000
#: bytes kept of one field's value (RFC 5322 §2.1.1 allows 998 a line; a long
#: References or a folded Subject stays far below this)
_MAX_FIELD_BYTES = 256 * 1024
#: Received fields read for a time: RFC 5321 §6.3 treats a hundred hops as a loop
_MAX_RECEIVED = 100
#: characters of a Subject kept (display text; a case title, not a document)
MAX_SUBJECT_CHARS = 4000
#: characters of a Date value read: a date-time with a comment is under 100
_MAX_DATE_CHARS = 200
#: an id longer than a header line (RFC 5322 §2.1.1) is no Message-ID
_MAX_ID_CHARS = 998
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

DERIVED_MSGID_DOMAIN = "derived.mailcase.invalid"


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


def message_ids(value: str | None) -> tuple[str, ...]:
    """Every ``<id>`` in a Message-ID / In-Reply-To / References value."""
    if not value:
        return ()
    ids = tuple(f"<{m}>" for m in _MSGID.findall(value) if len(m) <= _MAX_ID_CHARS)
    if not ids:
        bare = value.strip()
        if len(bare) <= _MAX_ID_CHARS and _BARE_MSGID.match(bare):
            ids = (f"<{bare}>",)
    if len(ids) > _MAX_IDS:
        # keep the root and the most recent ancestors (RFC 5322 §3.6.4 trims the middle)
        ids = ids[:1] + ids[-(_MAX_IDS - 1) :]
    return ids


def parse_date(value: str | None) -> datetime | None:
    """An aware UTC datetime from a Date:-like value, or None."""
    if not value:
        return None
    # dateutil's fuzzy parser costs milliseconds per long value: a date is short
    value = " ".join(value[: _MAX_DATE_CHARS * 4].split())[:_MAX_DATE_CHARS]
    result: datetime | None
    try:
        result = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        try:
            with warnings.catch_warnings():
                # unknown zone names warn; the zone is then unknown, as for "-0000"
                warnings.simplefilter("ignore")
                result = date_parser.parse(value, fuzzy=True)
        except (ValueError, OverflowError, TypeError):
            return None
    if result is None:
        return None
    if result.tzinfo is None:
        result = result.replace(tzinfo=UTC)  # "-0000": zone unknown, RFC 5322 §3.3
    try:
        result = result.astimezone(UTC)
    except (OverflowError, ValueError):
        return None
    if not 1970 <= result.year <= 2200:
        return None
    return result


def normalised_body(raw: bytes, body_offset: int) -> bytes:
    """The body with CRLF -> LF and trailing blank space removed."""
    return raw[body_offset:].replace(b"\r\n", b"\n").rstrip(b"\n\r\t ")


_HASH_CHUNK = 1 << 20


_BARE_CR = re.compile(rb"\r(?!\n)")


def hash_normalised_body(h: "hashlib._Hash", raw: bytes, body_offset: int) -> None:
    """Feed :func:`normalised_body` to ``h`` a megabyte at a time.

    The same bytes, without the two or three whole copies of the body the
    one-liner makes (a 50 MB mail would cost 150 MB just to be hashed).
    """
    end = len(raw)
    while end > body_offset:  # trailing blank space, a chunk at a time
        start = max(body_offset, end - _HASH_CHUNK)
        kept = len(raw[start:end].rstrip(b"\n\r\t "))
        end = start + kept
        if kept:
            break
    view = memoryview(raw)
    pos = body_offset
    while pos < end:
        stop = min(pos + _HASH_CHUNK, end)
        if stop < end and raw[stop - 1] == 0x0D and stop - 1 > pos:  # never split a CRLF
            stop -= 1
        chunk = bytes(view[pos:stop])
        # with no bare CR, CRLF -> LF is deleting every CR: three times faster
        h.update(chunk.replace(b"\r\n", b"\n") if _BARE_CR.search(chunk) else chunk.translate(None, b"\r"))
        pos = stop


@dataclass(frozen=True)
class HeaderInfo:
    message_id: str
    message_id_derived: bool
    from_list: AddressList
    subject: str
    date_at: datetime | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    identity: str
    defects: tuple[str, ...] = field(default=())

    @property
    def from_addr(self) -> str | None:
        a = self.from_list.addresses
        return a[0].addr if a else None

    @property
    def from_name(self) -> str | None:
        a = self.from_list.addresses
        return a[0].name or None if a else None

    @property
    def from_strict(self) -> bool:
        return self.from_list.single is not None


def _from_list(block: HeaderBlock) -> AddressList:
    """The author; of several From fields, the first that holds an address.

    RFC 5322 §3.6 allows one From field.  With several the author is in
    doubt: the result says so in its defects, so it is never taken as a
    strict sender.
    """
    values = block.values("from")
    if len(values) <= 1:
        return parse_address_list(values[0] if values else None)
    chosen = None
    for value in values:
        candidate = parse_address_list(value)
        if candidate.addresses:
            chosen = candidate
            break
    chosen = chosen or parse_address_list(values[0])
    return AddressList(chosen.addresses, chosen.defects + (f"{len(values)} From fields",))


def read_headers(raw: bytes, block: HeaderBlock | None = None, identity: bool = True) -> HeaderInfo:
    """What the ledger reads from a header block.

    ``identity=False`` leaves out the logical identity (``identity`` is then
    empty, and a derived Message-ID is made without the body's hash): for a
    reader that wants the rest and has the identity stored already.
    """
    block = block or split_headers(raw)
    from_list = _from_list(block)
    if "from" in block.nul_fields:
        # what our receiving server authenticated may have ended at the NUL:
        # such a From is shown, never trusted
        from_list = AddressList(from_list.addresses, from_list.defects + ("NUL bytes in From",))
    full_subject = block.text("subject") or ""
    # a PIN written in the subject is redacted from everything derived from it
    # (the parse stage reads it from the raw header to check it)
    subject = redact_pins(full_subject)[:MAX_SUBJECT_CHARS]
    subject_cut = len(full_subject) > MAX_SUBJECT_CHARS
    date_value = block.first("date")
    date_at = parse_date(date_value)
    # the top-level MIME headers belong to the body: two mails with the same
    # bytes under a different Content-Type are different mails
    mime = "\0".join(" ".join((block.first(h) or "").lower().split())
                     for h in ("content-type", "content-transfer-encoding"))
    body_hash = ""
    if identity:
        hasher = hashlib.sha256(mime.encode("utf-8", "surrogatepass") + b"\0")
        hash_normalised_body(hasher, raw, block.body_offset)
        body_hash = hasher.hexdigest()
    from_key = from_list.addresses[0].addr if from_list.addresses else (block.first("from") or "")
    date_key = date_at.isoformat() if date_at else " ".join((date_value or "").split())

    ids = message_ids(block.first("message-id"))
    derived = not ids
    if ids:
        message_id = ids[0][:998]
    else:
        seed = "\0".join((from_key, date_key, full_subject, body_hash)).encode("utf-8", "surrogatepass")
        message_id = f"<{hashlib.sha256(seed).hexdigest()[:40]}@{DERIVED_MSGID_DOMAIN}>"

    identity_src = "\0".join((message_id, from_key, date_key, body_hash))
    key = hashlib.sha256(identity_src.encode("utf-8", "surrogatepass")).hexdigest() if identity else ""
    defects = list(block.defects) + [f"From: {d}" for d in from_list.defects]
    if not block.has("from"):
        defects.append("no From field")
    if derived:
        defects.append("no Message-ID; derived one")
    if date_value and date_at is None:
        defects.append("unparseable Date")
    if subject_cut:
        defects.append(f"Subject longer than {MAX_SUBJECT_CHARS} characters; cut")
    return HeaderInfo(
        message_id=message_id,
        message_id_derived=derived,
        from_list=from_list,
        subject=subject,
        date_at=date_at,
        in_reply_to=message_ids(block.first("in-reply-to")),
        references=message_ids(" ".join(block.values("references"))),
        identity=key,
        defects=tuple(defects),
    )


_RECEIVED_BY = re.compile(r"\bby\s+([A-Za-z0-9.\-\[\]:]+)", re.I)


def received_header_time(
    block: HeaderBlock, receiving_hosts: tuple[str, ...] = ()
) -> datetime | None:
    """The time on the topmost Received: our own server added.

    With ``receiving_hosts`` empty the topmost Received: counts (the last hop,
    which delivered the file to us); otherwise the topmost whose ``by`` host
    is one of them.  Anything lower down is the sender's to write.
    """
    hosts = {h.lower().rstrip(".") for h in receiving_hosts}
    for value in block.values("received")[:_MAX_RECEIVED]:
        if hosts:
            m = _RECEIVED_BY.search(value)
            if not m or m.group(1).lower().rstrip(".") not in hosts:
                continue
        _, semi, when = value.rpartition(";")
        if not semi:
            if hosts:
                return None
            continue
        at = parse_date(when)
        if at is not None or hosts:
            return at
    return None
