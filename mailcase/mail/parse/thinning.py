"""A large mail thinned: its large part bodies left out of what the tree is built from.

The standard library's parser holds every line of a mail as an object and
every part as a Message, so a large mail is cut at its MIME delimiter lines
(found in the raw bytes) and each part body left out is hashed here by
streaming and replaced by a marker line carrying a per-parse random token.
The walk reads the markers back (:func:`elided_payload`, :func:`elision_in`)
and lists such a part with the size and SHA-256 recorded here.
"""

from __future__ import annotations

import binascii
import hashlib
import re
import secrets
from dataclasses import dataclass
from email.message import Message as EmailMessage

from mailcase.mail.headers import HeaderBlock
from mailcase.mail.parse import limits
from mailcase.mail.parse.parts import TEXT_TYPES, transfer_encoding
from mailcase.mail.parse.uuencode import UU_BEGIN_BYTES, UU_ENCODINGS, uu_chunk


@dataclass(frozen=True)
class Elision:
    """A part body left out of the tree: what it decodes to, read by streaming."""

    size: int
    sha256: str
    kept: int  # bytes of it that are in the tree (a text part's beginning)
    total: int  # bytes of it in the mail
    ctype: str | None  # the part's Content-Type as the thinning read it


@dataclass
class Thinned:
    data: bytes
    token: str
    elided: dict[int, Elision]
    defects: list[str]


_BOUNDARY_PARAM = re.compile(rb"""boundary[ \t]*=[ \t]*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))""", re.I)
_PART_CTYPE = re.compile(rb"^content-type[ \t]*:[ \t\r\n]*([A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+)",
                         re.I | re.M)
_PART_CTE = re.compile(rb"^content-transfer-encoding[ \t]*:[ \t\r\n]*([A-Za-z0-9_.-]+)", re.I | re.M)
_BLANK_LINE = re.compile(rb"\n\r?\n|\r\r")
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_B64_JUNK = bytes(c for c in range(256) if chr(c) not in
                  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
_MARK = re.compile(r"mailcase-elided-([0-9a-f]{32})-([0-9]{1,7})")
_MARK_BYTES = re.compile(rb"mailcase-elided-([0-9a-f]{32})-([0-9]{1,7})")
_MAX_BOUNDARIES = 500
_DIGEST_CHUNK = 1 << 20


def declared_boundaries(raw: bytes) -> list[bytes]:
    """Every boundary a Content-Type in the mail declares (any part's, any header's)."""
    found: dict[bytes, None] = {}
    for m in _BOUNDARY_PARAM.finditer(raw):
        b = (m.group(1) if m.group(1) is not None else m.group(2)).rstrip(b" \t")
        if b:
            found[b] = None
            if len(found) >= _MAX_BOUNDARIES:
                break
    return list(found)


def delimiter_re(boundaries: list[bytes]) -> re.Pattern[bytes] | None:
    """A delimiter line of any of them (RFC 2046 §5.1.1), as the stdlib's feedparser matches it."""
    if not boundaries:
        return None
    # longest first: of "a" and "ab", a line "--ab" is the delimiter of "ab"
    alternatives = b"|".join(re.escape(b) for b in sorted(boundaries, key=len, reverse=True))
    return re.compile(rb"^--(?:" + alternatives + rb")(--)?[ \t]*(?=\r\n|\r|\n|\Z)", re.M)


def count_matches(pattern: re.Pattern[bytes], raw: bytes, start: int, limit: int) -> int:
    count = 0
    for _ in pattern.finditer(raw, start):
        count += 1
        if count >= limit:
            break
    return count


def _line_end(raw: bytes, pos: int) -> int:
    """The position after the line break at ``pos`` (or ``pos`` if there is none)."""
    if raw.startswith(b"\r\n", pos):
        return pos + 2
    if raw[pos : pos + 1] in (b"\r", b"\n"):
        return pos + 1
    return pos


def _cut(raw: bytes, start: int, end: int, max_bytes: int, max_lines: int) -> int:
    """Where to cut ``raw[start:end]`` to keep at most that many bytes and lines, at a line end."""
    if max_bytes <= 0 or max_lines <= 0:
        return start
    limit = min(end, start + max_bytes)
    if max(raw.count(b"\n", start, limit), raw.count(b"\r", start, limit)) > max_lines:
        for i, m in enumerate(_LINE_BREAK.finditer(raw, start, limit)):
            if i + 1 >= max_lines:
                limit = m.end()
                break
    if limit >= end:
        return end
    last = max(raw.rfind(b"\n", start, limit), raw.rfind(b"\r", start, limit))
    if last < start:
        return limit  # one long line: cut inside it
    return _line_end(raw, last) if raw[last] == 0x0D else last + 1


def _digest(raw: bytes, start: int, end: int, cte: str) -> tuple[int, str]:
    """Size and SHA-256 of a part body as it decodes, read a megabyte at a time.

    Clean base64, quoted-printable and uuencode decode exactly as the
    standard library decodes them; base64 with stray padding inside may
    differ (the result is still the same for the same bytes).
    """
    h = hashlib.sha256()
    size = 0
    carry = b""
    uu_state = ""
    if cte in UU_ENCODINGS:  # as uu_payload reads it: from a begin line, if there is one
        uu_state = "before" if UU_BEGIN_BYTES.search(raw, start, end) else "data"
    pos = start
    while pos < end:
        stop = min(end, pos + _DIGEST_CHUNK)
        if stop < end:  # whole lines only: quoted-printable soft breaks end a line
            nl = raw.rfind(b"\n", pos, stop)
            stop = nl + 1 if nl > pos else stop
        chunk = raw[pos:stop]
        pos = stop
        if cte == "base64":
            data = carry + chunk.translate(None, _B64_JUNK)
            whole = len(data) - len(data) % 4
            carry = data[whole:]
            out = _a2b_base64(data[:whole])
        elif cte == "quoted-printable":
            out = binascii.a2b_qp(chunk)
        elif uu_state:
            out, uu_state = uu_chunk(chunk, uu_state)
        else:
            out = chunk
        h.update(out)
        size += len(out)
    carry = carry.rstrip(b"=")
    if len(carry) % 4 == 1:
        # the standard library gives up on such base64 and keeps the text
        # as it is, without its line breaks (bpo-27397)
        h, size = hashlib.sha256(), 0
        for i in range(start, end, _DIGEST_CHUNK):
            out = raw[i : min(end, i + _DIGEST_CHUNK)].replace(b"\r", b"").replace(b"\n", b"")
            h.update(out)
            size += len(out)
    elif carry:
        out = _a2b_base64(carry + b"=" * (-len(carry) % 4))
        h.update(out)
        size += len(out)
    return size, h.hexdigest()


def _a2b_base64(data: bytes) -> bytes:
    try:
        return binascii.a2b_base64(data)
    except binascii.Error:  # a pad character where none can be: ignore them all
        data = data.replace(b"=", b"")
        try:
            return binascii.a2b_base64(data[: len(data) - len(data) % 4])
        except binascii.Error:
            return b""


def _part_kind(ctype: str | None, after_closing: bool, preamble: bool) -> str:
    if after_closing or preamble:
        return "other"  # a preamble or epilogue: nobody reads it (RFC 2046 §5.1.1)
    if ctype is None or ctype in TEXT_TYPES:
        return "text"  # no Content-Type: text/plain (RFC 2045 §5.2)
    if ctype.startswith(("multipart/", "message/")):
        return "text"  # a container: its beginning holds the structure
    return "other"


def thin(raw: bytes, block: HeaderBlock, start: int) -> Thinned:
    """The body with large part bodies left out of what the tree is built from.

    The body is cut at the delimiter lines of every boundary the mail
    declares.  Each part keeps its header (up to ``limits.MAX_PART_HEADER_LINES``);
    its body is kept whole while it is small and the budget of
    ``limits.KEEP_BYTES`` / ``limits.KEEP_LINES`` lasts, or -- for text and containers --
    its beginning is kept up to what is left of the budget.  What is left
    out is read here once, by streaming, for the size and SHA-256 it
    decodes to, and replaced by a marker line; the walk lists the part with
    those.  Past ``limits.MAX_MIME_PARTS`` parts the rest of the mail is not read.
    """
    token = secrets.token_hex(16)
    elided: dict[int, Elision] = {}
    defects: list[str] = []
    out: list[bytes] = []
    budget_bytes, budget_lines = limits.KEEP_BYTES, limits.KEEP_LINES
    delimiter = delimiter_re(declared_boundaries(raw))
    top_ctype = (block.first("content-type") or "text/plain").split(";", 1)[0].strip().lower()
    top_cte = (block.first("content-transfer-encoding") or "").strip().lower()
    header_cut = 0

    def segment(seg: int, end: int, first: bool, after_closing: bool, before_delimiter: bool) -> None:
        nonlocal budget_bytes, budget_lines, header_cut
        body = seg
        if first:
            ctype: str | None = top_ctype
            cte = top_cte
        elif after_closing:
            ctype, cte = None, ""
        else:
            head = b""
            if raw.startswith((b"\r\n", b"\n", b"\r"), seg):
                body = _line_end(raw, seg)  # no header fields
                out.append(raw[seg:body])
            else:
                m = _BLANK_LINE.search(raw, seg, end)
                head_end = m.start() + 1 if m else end
                body = m.end() if m else end
                # a few lines each whatever the budget says: the structure needs them
                lines = max(limits.MIN_PART_HEADER_LINES, min(limits.MAX_PART_HEADER_LINES, budget_lines))
                keep = _cut(raw, seg, head_end, limits.MAX_PART_HEADER_BYTES, lines)
                if keep < head_end:
                    header_cut += 1
                head = raw[seg:keep]
                budget_bytes -= keep - seg
                budget_lines -= max(head.count(b"\n"), head.count(b"\r"))
                out.append(head)
                if keep < head_end and raw[keep - 1 : keep] not in (b"\n", b"\r"):
                    out.append(b"\r\n")
                out.append(raw[head_end:body])  # the blank line
            mt = _PART_CTYPE.search(head)
            ctype = mt.group(1).decode("ascii").lower() if mt else None
            mc = _PART_CTE.search(head)
            cte = mc.group(1).decode("ascii").lower() if mc else ""
        preamble = first and before_delimiter and top_ctype.startswith("multipart/")
        kind = _part_kind(ctype, after_closing, preamble)
        total = end - body
        if total <= 0:
            return
        nlines = max(raw.count(b"\n", body, end), raw.count(b"\r", body, end))
        if kind == "text":
            keep = _cut(raw, body, end, budget_bytes, budget_lines)
        elif total <= limits.SMALL_PART_BYTES and nlines <= limits.SMALL_PART_LINES and total <= budget_bytes \
                and nlines <= budget_lines:
            keep = end
        else:
            keep = body
        budget_bytes -= keep - body
        budget_lines -= max(raw.count(b"\n", body, keep), raw.count(b"\r", body, keep))
        out.append(raw[body:keep])
        if keep == end:
            return
        # the feedparser drops the line break before a delimiter (RFC 2046 §5.1.1)
        stop = end
        if before_delimiter:
            if raw[stop - 2 : stop] == b"\r\n":
                stop -= 2
            elif raw[stop - 1 : stop] in (b"\n", b"\r"):
                stop -= 1
        size, sha = _digest(raw, body, max(stop, body), cte)
        index = len(elided)
        elided[index] = Elision(size, sha, keep - body, total, ctype)
        if keep > body and raw[keep - 1 : keep] not in (b"\n", b"\r"):
            out.append(b"\r\n")
        out.append(f"mailcase-elided-{token}-{index}\r\n".encode("ascii"))

    pos = start
    first = True
    after_closing = False
    parts = 0
    cut_short = False
    if delimiter is not None:
        for m in delimiter.finditer(raw, start):
            segment(pos, m.start(), first, after_closing, True)
            first = False
            parts += 1
            if parts > limits.MAX_MIME_PARTS:
                cut_short = True
                break
            line_end = _line_end(raw, m.end())
            out.append(raw[m.start() : line_end])
            after_closing = m.group(1) is not None
            pos = line_end
    if not cut_short:
        segment(pos, len(raw), first, after_closing, False)
    else:
        defects.append(f"more than {limits.MAX_MIME_PARTS} MIME parts; the rest not read")
    if header_cut:
        defects.append(f"{header_cut} part header(s) cut short")
    if elided:
        defects.append(
            f"large mail ({len(raw) - start} bytes of body): {len(elided)} part bodies hashed,"
            f" not read into memory"
        )
    return Thinned(b"".join(out), token, elided, defects)


# -- reading back what the thinning left out ------------------------------------------------


def elided_payload(part: EmailMessage, thinned: Thinned | None) -> tuple[str, Elision] | None:
    """(what the tree kept of the body, what was left out), if thinning left some out."""
    if thinned is None or not thinned.elided:
        return None
    # the payload as parsed: get_payload() hands back 8-bit bytes already
    # decoded (with U+FFFD), and get_payload(decode=True) decodes the marker too
    payload = getattr(part, "_payload", None)
    if not isinstance(payload, str):
        return None
    for m in _MARK.finditer(payload):
        elision = thinned.elided.get(int(m.group(2)))
        if m.group(1) == thinned.token and elision is not None:
            return payload[: m.start()].rstrip("\r\n"), elision
    return None


def decode_kept(part: EmailMessage, kept: str) -> bytes:
    """The beginning of a part body, decoded (its lines are whole: see ``_cut``)."""
    data = kept.encode("utf-8", "surrogateescape")
    cte = transfer_encoding(part)
    try:
        if cte == "base64":
            data = data.translate(None, _B64_JUNK)
            return binascii.a2b_base64(data[: len(data) - len(data) % 4])
        if cte == "quoted-printable":
            return binascii.a2b_qp(data)
    except binascii.Error:
        return b""
    return data


def elision_in(part: EmailMessage, thinned: Thinned | None, defects: list[str]) -> Elision | None:
    """For an attached mail thinning cut short: the record of the whole of it.

    Parts of the attached mail left out have records of their own (and
    markers inside it); the mail as a whole is then listed as read.
    """
    if thinned is None or not thinned.elided:
        return None
    try:
        data = part.as_bytes()
    except Exception:
        return None
    inner = False
    for m in _MARK_BYTES.finditer(data):
        elision = thinned.elided.get(int(m.group(2)))
        if m.group(1).decode("ascii") != thinned.token or elision is None:
            continue
        if (elision.ctype or "").startswith("message/"):
            return elision
        inner = True
    if inner:
        defects.append("an attached mail with parts not read: listed with the size and hash of what was read")
    return None


def without_markers(text: str, thinned: Thinned) -> str:
    """``text`` without the marker lines of this parse: ours only, the sender may write anything."""
    if not thinned.elided:
        return text
    return re.sub(f"mailcase-elided-{thinned.token}-[0-9]+", "", text)
