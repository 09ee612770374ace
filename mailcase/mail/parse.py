"""Full parse: raw bytes -> :class:`ParsedEmail`, a frozen value.

mail-parser builds the MIME tree and reports defects; when it raises, the
standard library's parser builds the tree instead.  Body and attachments are
then read from the tree by :func:`_walk` here rather than taken from
mail-parser, because mail-parser (4.8, DESIGN §6) names unnamed attachments
randomly (not stable across re-parses), mixes the text of an attached
``message/rfc822`` into the body and decodes ISO-8859-1 labels that are
really windows-1252 as Latin-1.

Headers (From, Subject, Message-ID, ...) come from headers.py, which reads
the raw bytes itself: mail-parser drops raw non-UTF-8 header bytes.  Where
headers.py had to repair the header block (a folded line that lost its
leading whitespace, text before the first header), the tree is built from
the repaired bytes, so both agree on where the body starts.

The body is every inline text part in order (RFC 2183: inline parts are
shown in sequence), one alternative of each ``multipart/alternative``, HTML
converted to text.  Attachments are listed with what is inside them where
that can be read cheaply: an attached mail's attachments, the files inside
an Outlook ``winmail.dat`` (TNEF), and uuencoded files, which are cut out of
the body text.

Odd input is data: only a message that truly cannot be read raises
:class:`MessageError`; everything else becomes a defect string.
"""

from __future__ import annotations

import binascii
import email
import hashlib
import importlib
import logging
import mimetypes
import re
import secrets
from dataclasses import dataclass, field
from email.header import Header
from email.message import Message as EmailMessage
from email.policy import compat32
from typing import Any

from mailcase.core.errors import MessageError
from mailcase.mail.addresses import parse_address_list
from mailcase.mail.charsets import codec_for, decode_8bit_header, decode_encoded_words, decode_text, storable
from mailcase.mail.feedparser_eol import install as _install_feedparser_eol
from mailcase.mail.headers import HeaderBlock, HeaderInfo, read_headers, split_headers

log = logging.getLogger(__name__)
_install_feedparser_eol()

#: characters of body text kept
MAX_BODY_CHARS = 1_000_000
#: attachments listed (the rest is one "(more not listed)" entry)
MAX_ATTACHMENTS = 1000
#: MIME nesting read (the parser's own recursion ends near 900 levels)
MAX_DEPTH = 50
#: names listed inside one container (an attached mail, winmail.dat)
MAX_CONTENTS = 200
#: defects listed (they are for display)
MAX_DEFECTS = 100
#: bytes of one text part decoded: a character takes four at most
MAX_TEXT_PART_BYTES = 4 * MAX_BODY_CHARS
#: a body larger than this, or of more lines, is thinned before the tree is built
THIN_ABOVE_BYTES = 8 * 1024 * 1024
THIN_ABOVE_LINES = 150_000
#: MIME parts read; the rest of the mail is not (a part costs the parser a kilobyte)
MAX_MIME_PARTS = 20_000
#: part bodies kept in the tree of a thinned mail, in all
KEEP_BYTES = 8 * 1024 * 1024
KEEP_LINES = 150_000
#: a part body that is not text is kept whole up to this (budget permitting)
SMALL_PART_BYTES = 64 * 1024
SMALL_PART_LINES = 2_000
#: header lines kept of one part of a thinned mail (at least the minimum, more
#: while the budget lasts)
MAX_PART_HEADER_LINES = 50
MAX_PART_HEADER_BYTES = 16 * 1024
_MIN_PART_HEADER_LINES = 8
#: mail-parser parses every header field (and every Received in depth): not
#: run on a flood of them, where it would take seconds
_MAILPARSER_MAX_FIELDS = 1000
_MAILPARSER_MAX_HEADER_BYTES = 256 * 1024

_TEXT_TYPES = ("text/plain", "text/html")
_TNEF_TYPES = ("application/ms-tnef", "application/vnd.ms-tnef")
_UU_ENCODINGS = ("x-uuencode", "uuencode", "x-uue", "uue")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:+-]{1,40})""", re.I)
# a uuencoded file inside a text body: "begin <mode> <name>" ... "end"
_UU_BEGIN = re.compile(r"^begin [0-7]{3,4} ([^\r\n]+?)[ \t]*\r?$", re.M)
_UU_END = re.compile(r"^end[ \t]*\r?$", re.M)
_UU_BEGIN_BYTES = re.compile(rb"^begin [0-7]{3,4} [^\r\n]+?[ \t]*\r?$", re.M)


@dataclass(frozen=True)
class Attachment:
    name: str
    content_type: str
    size: int
    sha256: str
    #: for containers (winmail.dat, an attached mail): what is inside
    contents: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            "name": self.name,
            "content_type": self.content_type,
            "size": self.size,
            "sha256": self.sha256,
        }
        if self.contents:
            d["contents"] = list(self.contents)
        return d


@dataclass(frozen=True)
class ParsedEmail:
    headers: HeaderInfo
    to: tuple[str, ...]
    cc: tuple[str, ...]
    reply_to: tuple[str, ...]
    text_body: str
    body_from_html: bool
    attachments: tuple[Attachment, ...]
    defects: tuple[str, ...]
    parser: str


_HTML_SKIP = {"script", "style", "head", "title", "noscript", "template", "object", "svg", "xml"}
_HTML_PARAGRAPH = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul",
                   "ol", "dl"}
_HTML_BLOCK = _HTML_PARAGRAPH | {
    "address", "article", "aside", "center", "dd", "div", "dt", "fieldset", "figcaption",
    "figure", "footer", "form", "header", "hr", "li", "main", "nav", "section", "tbody", "thead",
    "tfoot", "tr", "caption",
}
_HTML_SPACE = re.compile(r"[ \t\r\n\f\xa0\u200b]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def _lxml() -> tuple[Any, Any] | None:
    # lxml has no type stubs; imported by name so the package type-checks
    try:
        return importlib.import_module("lxml.html"), importlib.import_module("lxml.etree")
    except ImportError:
        return None


def html_to_text(html: str) -> str:
    """HTML as plain text: blocks on their own lines, scripts and styles dropped.

    A single pass over lxml's tree; a third of the time inscriptis takes for
    the same mail, and a support case needs the words, not the layout.
    """
    mods = _lxml()
    try:
        if mods is None:
            raise ValueError("no lxml")
        lxml_html, etree = mods
        root = lxml_html.document_fromstring(
            html.encode("utf-8", "surrogatepass"),
            parser=lxml_html.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True),
        )
        walk = etree.iterwalk(root, events=("start", "end"))
    except Exception:  # empty or unparseable markup
        return _HTML_SPACE.sub(" ", re.sub(r"<[^>]*>", " ", html)).strip()
    out: list[str] = []
    skip = pre = 0

    def text(value: str | None) -> None:
        if value:
            out.append(value if pre else _HTML_SPACE.sub(" ", value))

    for event, el in walk:
        if not isinstance(el.tag, str):  # a comment or processing instruction
            if event == "end" and not skip:
                text(el.tail)
            continue
        tag = el.tag.lower()
        if event == "start":
            if skip or tag in _HTML_SKIP:
                skip += 1
                continue
            if tag == "br":
                out.append("\n")
            elif tag == "li":
                out.append("\n- ")
            elif tag in _HTML_PARAGRAPH:
                out.append("\n\n")
            elif tag in _HTML_BLOCK:
                out.append("\n")
            elif tag in ("td", "th"):
                out.append("\t")
            if tag == "pre":
                pre += 1
            text(el.text)
            continue
        if skip:
            skip -= 1
            if not skip:
                text(el.tail)
            continue
        if tag == "pre":
            pre -= 1
        if tag in _HTML_PARAGRAPH:
            out.append("\n\n")
        elif tag in _HTML_BLOCK and tag != "li":  # the next item starts its own line
            out.append("\n")
        text(el.tail)
    lines = (line.strip(" \t") for line in "".join(out).split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


# -- the tree --------------------------------------------------------------------------


def _tree(raw: bytes, header_bytes: int) -> tuple[EmailMessage, list[str], str]:
    """The MIME tree, defects found building it, and which parser built it.

    The standard library builds the tree (mail-parser 4.8 builds the very
    same one, ``email.message_from_bytes`` with compat32); where the tree
    has a defect, mail-parser looks it over for its defect categories.  It
    reads every header (Received chains, dates, addresses) and decodes every
    attachment to do so, about a quarter of the parse of a typical mail, so
    a mail whose MIME structure is clean is not sent to it (its address and
    date defects are ours: :func:`parse_email`), nor one where that would
    cost more than the tree itself.
    """
    try:
        tree = email.message_from_bytes(raw, policy=compat32)
    except Exception as exc:  # RecursionError on thousands of nested multiparts
        raise MessageError(f"unreadable MIME structure: {type(exc).__name__}: {exc}") from exc
    if not any(part.defects for part in tree.walk()):
        return tree, [], "stdlib"
    if len(tree) > _MAILPARSER_MAX_FIELDS or header_bytes > _MAILPARSER_MAX_HEADER_BYTES:
        return tree, ["header block too large for mail-parser: not run"], "stdlib"
    try:
        import mailparser

        mp = mailparser.MailParser(tree)
        defects = sorted(str(c) for c in (mp.defects_categories or ()))
        return tree, defects, "mail-parser"
    except Exception as exc:  # mail-parser raises on some broken mail: the tree stands
        log.debug("mail-parser failed (%s: %s); using the standard library", type(exc).__name__, exc)
    return tree, [], "stdlib"


def message_tree(raw: bytes) -> EmailMessage:
    """The MIME tree of ``raw``, built as :func:`parse_email` builds it: bounded.

    For code that walks a mail's parts itself (the bounce rule): a large
    mail is thinned first (:func:`_thin`), so the tree costs at most a few
    tens of megabytes whatever the mail; a part body left out reads as a
    marker line.  Raises :class:`MessageError` where ``parse_email`` would.
    """
    data, _ = _tree_input(raw, split_headers(raw))
    try:
        return email.message_from_bytes(data, policy=compat32)
    except Exception as exc:  # RecursionError on thousands of nested multiparts
        raise MessageError(f"unreadable MIME structure: {type(exc).__name__}: {exc}") from exc


def _head(raw: bytes, block: HeaderBlock, end: int) -> bytes:
    """``raw[:end]``, the header block as headers.py read it (repairs applied)."""
    if not block.folded_at and "text before the first header" not in block.defects:
        return raw[:end]  # (an mbox From line the parsers know themselves)
    pieces: list[bytes] = []
    prev = block.header_start
    for offset in block.folded_at:
        if offset >= end:
            break
        pieces.append(raw[prev:offset])
        pieces.append(b" ")
        prev = offset
    pieces.append(raw[prev:end])
    return b"".join(pieces)


def _tree_input(raw: bytes, block: HeaderBlock) -> tuple[bytes, _Thinned | None]:
    """What the tree is built from: the mail, or a thinned copy of it.

    The standard library's parser holds every line of a mail as an object
    and every part as a Message: a 25 MB mail of short lines costs it 15 s
    and 1.4 GB, 50 MB of base64 ten times its size.  So the header fields
    headers.py skipped (past ``_MAX_HEADER_FIELDS``) are left out, and a
    body over ``THIN_ABOVE_BYTES`` or ``THIN_ABOVE_LINES`` is thinned
    (:func:`_thin`).  Anything smaller is parsed exactly as it came.
    """
    head_end = block.fields_end if block.fields_end is not None else block.body_offset
    nul = "NUL bytes in the header block; removed" in block.defects
    repaired = bool(block.folded_at) or "text before the first header" in block.defects or nul
    body = block.body_offset
    size = len(raw) - body
    lines = max(raw.count(b"\n", body), raw.count(b"\r", body))
    thin = size > THIN_ABOVE_BYTES or lines > THIN_ABOVE_LINES
    if not thin and lines > 2 * MAX_MIME_PARTS:  # every part takes two lines at least
        delimiter = _delimiter_re(_boundaries(raw))
        thin = delimiter is not None and _count(delimiter, raw, body, MAX_MIME_PARTS + 1) > MAX_MIME_PARTS
    big_head = head_end - block.header_start > _MAILPARSER_MAX_HEADER_BYTES
    if not thin and not repaired and block.fields_end is None and not big_head:
        return raw, None
    if big_head:
        # the walk reads only the MIME fields of the top level (and mail-parser
        # is not run on such a header): the rest would cost the tree ten
        # times its size for nothing
        head = b"".join(
            name.encode("ascii") + b": " + value + b"\r\n"
            for name, value in block.fields
            if name.startswith("content-") or name == "mime-version"
        ) + b"\r\n"
    else:
        head = _head(raw, block, head_end)
        if nul:  # as headers.py read the block: a NUL in a field name ended it early
            head = head.replace(b"\0", b"")
        if block.fields_end is not None:
            head += b"\r\n"  # the blank line: the skipped fields are not the body
    if not thin:
        return head + raw[body:], None
    thinned = _thin(raw, block, body)
    return head + thinned.data, thinned


# -- thinning a large mail -----------------------------------------------------------------


@dataclass(frozen=True)
class _Elision:
    """A part body left out of the tree: what it decodes to, read by streaming."""

    size: int
    sha256: str
    kept: int  # bytes of it that are in the tree (a text part's beginning)
    total: int  # bytes of it in the mail
    ctype: str | None  # the part's Content-Type as the thinning read it


@dataclass
class _Thinned:
    data: bytes
    token: str
    elided: dict[int, _Elision]
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


def _boundaries(raw: bytes) -> list[bytes]:
    """Every boundary a Content-Type in the mail declares (any part's, any header's)."""
    found: dict[bytes, None] = {}
    for m in _BOUNDARY_PARAM.finditer(raw):
        b = (m.group(1) if m.group(1) is not None else m.group(2)).rstrip(b" \t")
        if b:
            found[b] = None
            if len(found) >= _MAX_BOUNDARIES:
                break
    return list(found)


def _delimiter_re(boundaries: list[bytes]) -> re.Pattern[bytes] | None:
    """A delimiter line of any of them (RFC 2046 §5.1.1), as the stdlib's feedparser matches it."""
    if not boundaries:
        return None
    # longest first: of "a" and "ab", a line "--ab" is the delimiter of "ab"
    alternatives = b"|".join(re.escape(b) for b in sorted(boundaries, key=len, reverse=True))
    return re.compile(rb"^--(?:" + alternatives + rb")(--)?[ \t]*(?=\r\n|\r|\n|\Z)", re.M)


def _count(pattern: re.Pattern[bytes], raw: bytes, start: int, limit: int) -> int:
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
    if cte in _UU_ENCODINGS:  # as _uu_payload reads it: from a begin line, if there is one
        uu_state = "before" if _UU_BEGIN_BYTES.search(raw, start, end) else "data"
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
            out, uu_state = _uu_chunk(chunk, uu_state)
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


def _uu_chunk(chunk: bytes, state: str) -> tuple[bytes, str]:
    """uudecode whole lines; ``state`` is before the begin line, in the data, or done."""
    out: list[bytes] = []
    for line in chunk.decode("ascii", "replace").splitlines():
        if state == "before":
            if _UU_BEGIN.match(line):
                state = "data"
            continue
        if state != "data":
            break
        if _UU_END.match(line) or line in ("`", " "):
            state = "done"
            break
        if line and line.strip() != "end":
            out.append(_uu_line(line))
    return b"".join(out), state


def _part_kind(ctype: str | None, after_closing: bool, preamble: bool) -> str:
    if after_closing or preamble:
        return "other"  # a preamble or epilogue: nobody reads it (RFC 2046 §5.1.1)
    if ctype is None or ctype in _TEXT_TYPES:
        return "text"  # no Content-Type: text/plain (RFC 2045 §5.2)
    if ctype.startswith(("multipart/", "message/")):
        return "text"  # a container: its beginning holds the structure
    return "other"


def _thin(raw: bytes, block: HeaderBlock, start: int) -> _Thinned:
    """The body with large part bodies left out of what the tree is built from.

    The body is cut at the delimiter lines of every boundary the mail
    declares.  Each part keeps its header (up to ``MAX_PART_HEADER_LINES``);
    its body is kept whole while it is small and the budget of
    ``KEEP_BYTES`` / ``KEEP_LINES`` lasts, or -- for text and containers --
    its beginning is kept up to what is left of the budget.  What is left
    out is read here once, by streaming, for the size and SHA-256 it
    decodes to, and replaced by a marker line; the walk lists the part with
    those.  Past ``MAX_MIME_PARTS`` parts the rest of the mail is not read.
    """
    token = secrets.token_hex(16)
    elided: dict[int, _Elision] = {}
    defects: list[str] = []
    out: list[bytes] = []
    budget_bytes, budget_lines = KEEP_BYTES, KEEP_LINES
    delimiter = _delimiter_re(_boundaries(raw))
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
                lines = max(_MIN_PART_HEADER_LINES, min(MAX_PART_HEADER_LINES, budget_lines))
                keep = _cut(raw, seg, head_end, MAX_PART_HEADER_BYTES, lines)
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
        elif total <= SMALL_PART_BYTES and nlines <= SMALL_PART_LINES and total <= budget_bytes \
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
        elided[index] = _Elision(size, sha, keep - body, total, ctype)
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
            if parts > MAX_MIME_PARTS:
                cut_short = True
                break
            line_end = _line_end(raw, m.end())
            out.append(raw[m.start() : line_end])
            after_closing = m.group(1) is not None
            pos = line_end
    if not cut_short:
        segment(pos, len(raw), first, after_closing, False)
    else:
        defects.append(f"more than {MAX_MIME_PARTS} MIME parts; the rest not read")
    if header_cut:
        defects.append(f"{header_cut} part header(s) cut short")
    if elided:
        defects.append(
            f"large mail ({len(raw) - start} bytes of body): {len(elided)} part bodies hashed,"
            f" not read into memory"
        )
    return _Thinned(b"".join(out), token, elided, defects)


# -- reading parts ----------------------------------------------------------------------


_NOT_TOKEN = re.compile(r"[^\x21-\x7e]")


def _safe_ctype(part: EmailMessage) -> str:
    try:
        ctype = part.get_content_type().lower()
    except Exception:
        return "application/octet-stream"
    if _NOT_TOKEN.search(ctype) or len(ctype) > 127:  # RFC 6838 §4.2: 127 characters
        return _NOT_TOKEN.sub("", ctype)[:127] or "application/octet-stream"
    return ctype


def _cte(part: EmailMessage) -> str:
    value = part.get("content-transfer-encoding", "")
    return str(value).strip().lower() if value else ""


def _uu_line(line: str) -> bytes:
    """One uuencoded line, forgiving the padding some encoders leave out."""
    data = line.encode("ascii", "ignore")
    try:
        return binascii.a2b_uu(data)
    except binascii.Error:
        # a truncated or over-long line: decode what its length byte claims
        nbytes = (((data[0] - 32) & 63) * 4 + 5) // 3 if data else 0
        try:
            return binascii.a2b_uu(data[:nbytes])
        except binascii.Error:
            return b""


def _uu_decode(lines: list[str]) -> bytes:
    out: list[bytes] = []
    for line in lines:
        line = line.rstrip("\r\n")
        if not line or line.strip() == "end":
            continue
        if line in ("`", " "):
            break  # the zero-length line that ends the data
        out.append(_uu_line(line))
    return b"".join(out)


def _uu_payload(part: EmailMessage) -> tuple[bytes, str | None]:
    """A Content-Transfer-Encoding: x-uuencode part: the file and its begin-line name."""
    payload = part.get_payload()
    if not isinstance(payload, str):
        return b"", None
    text = payload.encode("ascii", "surrogateescape").decode("ascii", "replace")
    m = _UU_BEGIN.search(text)
    name = None
    if m:
        name = m.group(1).strip()
        text = text[m.end() :]
    end = _UU_END.search(text)
    if end:
        text = text[: end.start()]
    return _uu_decode(text.splitlines()), name


def _payload_bytes(part: EmailMessage) -> bytes:
    if _cte(part) in _UU_ENCODINGS:
        return _uu_payload(part)[0]
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if isinstance(data, bytes):
        return data
    payload = part.get_payload()
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogateescape")
    if isinstance(payload, list):
        # message/delivery-status and friends: blocks of header fields
        chunks: list[bytes] = []
        for sub in payload:
            try:
                chunks.append(sub.as_bytes() if isinstance(sub, EmailMessage) else b"")
            except Exception:
                chunks.append(b"")
        return b"\n".join(chunks)
    return b""


def _elided_payload(part: EmailMessage, w: _Walk) -> tuple[str, _Elision] | None:
    """(what the tree kept of the body, what was left out), if thinning left some out."""
    if w.thinned is None or not w.thinned.elided:
        return None
    # the payload as parsed: get_payload() hands back 8-bit bytes already
    # decoded (with U+FFFD), and get_payload(decode=True) decodes the marker too
    payload = getattr(part, "_payload", None)
    if not isinstance(payload, str):
        return None
    for m in _MARK.finditer(payload):
        elision = w.thinned.elided.get(int(m.group(2)))
        if m.group(1) == w.thinned.token and elision is not None:
            return payload[: m.start()].rstrip("\r\n"), elision
    return None


def _decode_kept(part: EmailMessage, kept: str) -> bytes:
    """The beginning of a part body, decoded (its lines are whole: see ``_cut``)."""
    data = kept.encode("utf-8", "surrogateescape")
    cte = _cte(part)
    try:
        if cte == "base64":
            data = data.translate(None, _B64_JUNK)
            return binascii.a2b_base64(data[: len(data) - len(data) % 4])
        if cte == "quoted-printable":
            return binascii.a2b_qp(data)
    except binascii.Error:
        return b""
    return data


def _text_of(part: EmailMessage, ctype: str, data: bytes, w: _Walk) -> str:
    try:
        label = part.get_content_charset()
    except Exception:
        label = None
    if label is None and ctype == "text/html":
        m = _META_CHARSET.search(data, 0, 4096)
        label = m.group(1).decode("ascii") if m else None
    if len(data) > MAX_TEXT_PART_BYTES:
        # decoding costs time in proportion (ISO-2022-JP is read byte by byte):
        # more than the body keeps is not decoded
        w.defects.append(f"a text part of {len(data)} bytes: the first {MAX_TEXT_PART_BYTES} read")
        codec = codec_for(label) or ""
        if codec.startswith(("utf_16", "utf_32", "utf-16", "utf-32")):
            data = data[:MAX_TEXT_PART_BYTES]  # a multiple of 4: whole code units
        else:
            nl = data.rfind(b"\n", 0, MAX_TEXT_PART_BYTES)
            data = data[: nl + 1 if nl > 0 else MAX_TEXT_PART_BYTES]
    return decode_text(data, label)


def _header_str(part: EmailMessage, header: str, block: HeaderBlock) -> str | None:
    """A header of a part as text, its raw 8-bit bytes decoded like headers.py does."""
    value = part.get(header)
    if value is None:
        return None
    if not isinstance(value, Header):
        return str(value)
    # compat32 hands back a Header when the value has raw 8-bit bytes
    for name, raw_value in part.raw_items():
        if name.lower() == header:
            data = str(raw_value).encode("ascii", "surrogateescape")
            return decode_8bit_header(data, block.charsets)
    return None


def _param(part: EmailMessage, header: str, param: str, block: HeaderBlock) -> str | None:
    """A parameter's value: RFC 2231 (charset, continuations) and RFC 2047 decoded."""
    value = _header_str(part, header, block)
    if not value or param not in value.lower():
        return None
    holder = EmailMessage()
    holder[header] = value
    try:
        got = holder.get_param(param, header=header)
    except Exception:
        return None
    if got is None:
        return None
    if isinstance(got, tuple):  # RFC 2231: (charset, language, %-decoded value)
        charset, _, text = got
        text = str(text)
        if all(ord(c) < 256 for c in text):
            text = decode_text(text.encode("latin-1"), charset or None)
    else:
        text = str(got)
    return decode_encoded_words(text).strip() or None


def _filename(part: EmailMessage, block: HeaderBlock) -> str | None:
    return _param(part, "content-disposition", "filename", block) or _param(
        part, "content-type", "name", block
    )


def _clean_name(name: str, index: int) -> str:
    # a name is display data, never a path
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r"[\x00-\x1f\x7f]", "", storable(name)).strip()
    return name[:255] or f"part-{index}.bin"


def _default_name(index: int, ctype: str) -> str:
    ext = mimetypes.guess_extension(ctype) or ".bin"
    return f"part-{index}{ext}"


# -- the walk -----------------------------------------------------------------------------


@dataclass
class _Walk:
    block: HeaderBlock
    attachments: list[Attachment] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    counter: int = 0
    thinned: _Thinned | None = None

    def add(
        self, name: str | None, ctype: str, data: bytes, contents: tuple[str, ...] = (),
        elision: _Elision | None = None,
    ) -> None:
        self.counter += 1
        if len(self.attachments) >= MAX_ATTACHMENTS:
            if len(self.attachments) == MAX_ATTACHMENTS:
                self.defects.append(f"more than {MAX_ATTACHMENTS} attachments; rest not listed")
                self.attachments.append(
                    Attachment("(more not listed)", "application/octet-stream", 0, "")
                )
            return
        shown = _clean_name(name, self.counter) if name else _default_name(self.counter, ctype)
        self.attachments.append(
            Attachment(
                name=shown,
                content_type=ctype,
                size=elision.size if elision else len(data),
                sha256=elision.sha256 if elision else hashlib.sha256(data).hexdigest(),
                contents=contents[:MAX_CONTENTS],
            )
        )


#: a piece of body text: ("plain" | "html", text)
_Piece = tuple[str, str]


def _is_attachment(part: EmailMessage, ctype: str, name: str | None) -> bool:
    try:
        disposition = (part.get_content_disposition() or "").lower()
    except Exception:
        disposition = ""
    if disposition == "attachment":
        return True
    if ctype not in _TEXT_TYPES:
        return True
    return bool(name) and disposition != "inline"


def _walk(part: EmailMessage, w: _Walk, pieces: list[_Piece], depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        w.defects.append(f"MIME nesting deeper than {MAX_DEPTH}; rest not read")
        return
    ctype = _safe_ctype(part)
    for d in getattr(part, "defects", []) or []:
        w.defects.append(type(d).__name__)
    try:
        if ctype in ("message/rfc822", "message/global"):
            _attached_mail(part, w, ctype)
        elif part.is_multipart():
            children = [c for c in part.get_payload() if isinstance(c, EmailMessage)]
            if ctype.startswith("message/"):
                w.add(_filename(part, w.block), ctype, _payload_bytes(part), elision=_elision_in(part, w))
            elif ctype == "multipart/alternative":
                _walk_alternative(children, w, pieces, depth)
            else:
                for child in children:
                    _walk(child, w, pieces, depth + 1)
        elif ctype.startswith("multipart/"):
            # the boundary never appears (RFC 2046 §5.1.1): the parsers keep
            # the body unsplit, and it is still the sender's text
            w.defects.append("multipart body without its boundary; read as text")
            found = _elided_payload(part, w)
            data = _decode_kept(part, found[0]) if found else _payload_bytes(part)
            text = _text_of(part, "text/plain", data, w)
            if text.strip():
                pieces.append(("plain", text))
        else:
            _leaf(part, w, pieces, ctype)
    except RecursionError:
        raise
    except Exception as exc:  # one unreadable part must not cost the rest
        w.defects.append(f"unreadable {ctype} part: {type(exc).__name__}")


def _leaf(part: EmailMessage, w: _Walk, pieces: list[_Piece], ctype: str) -> None:
    name = _filename(part, w.block)
    elision: _Elision | None = None
    found = _elided_payload(part, w)
    if found is not None:
        data, elision = _decode_kept(part, found[0]), found[1]
    elif _cte(part) in _UU_ENCODINGS:
        data, uu_name = _uu_payload(part)
        name = name or uu_name
    else:
        data = _payload_bytes(part)
    if ctype in _TNEF_TYPES or (name or "").lower() == "winmail.dat":
        if elision is not None:
            contents: tuple[str, ...] = ()
            w.defects.append(f"winmail.dat of {elision.total} bytes: its files not listed")
        else:
            contents, defect = _tnef_contents(data)
            if defect:
                w.defects.append(defect)
        w.add(name or "winmail.dat", ctype, data, contents, elision)
        return
    if _is_attachment(part, ctype, name):
        w.add(name, ctype, data, elision=elision)
        return
    if elision is not None:
        w.defects.append(f"a text part of {elision.total} bytes: the first {elision.kept} read")
    text = _text_of(part, ctype, data, w)
    if ctype == "text/plain":
        text = _cut_uuencoded(text, w)
    pieces.append(("html" if ctype == "text/html" else "plain", text))


def _elision_in(part: EmailMessage, w: _Walk) -> _Elision | None:
    """For an attached mail thinning cut short: the record of the whole of it.

    Parts of the attached mail left out have records of their own (and
    markers inside it); the mail as a whole is then listed as read.
    """
    if w.thinned is None or not w.thinned.elided:
        return None
    try:
        data = part.as_bytes()
    except Exception:
        return None
    inner = False
    for m in _MARK_BYTES.finditer(data):
        elision = w.thinned.elided.get(int(m.group(2)))
        if m.group(1).decode("ascii") != w.thinned.token or elision is None:
            continue
        if (elision.ctype or "").startswith("message/"):
            return elision
        inner = True
    if inner:
        w.defects.append("an attached mail with parts not read: listed with the size and hash of what was read")
    return None


def _walk_alternative(
    children: list[EmailMessage], w: _Walk, pieces: list[_Piece], depth: int
) -> None:
    """One alternative for the body; the attachments of all of them.

    The plain-text alternative when it says something, else the last one
    that yields text (RFC 2046 §5.1.4: the last is the richest).
    """
    chosen: list[_Piece] | None = None
    results: list[list[_Piece]] = []
    for child in children:
        sub: list[_Piece] = []
        _walk(child, w, sub, depth + 1)
        results.append(sub)
        if chosen is None and _safe_ctype(child) == "text/plain" and any(t.strip() for _, t in sub):
            chosen = sub
    if chosen is None:
        for sub in reversed(results):
            if any(t.strip() for _, t in sub):
                chosen = sub
                break
    pieces.extend(chosen or ())


def _attached_mail(part: EmailMessage, w: _Walk, ctype: str) -> None:
    """An attached mail: listed with its attachments; its text stays out of the body."""
    payload = part.get_payload()
    inner = payload[0] if isinstance(payload, list) and payload else None
    if isinstance(inner, EmailMessage):
        try:
            data = inner.as_bytes()
        except Exception:
            data = _payload_bytes(part)
    else:
        data = _payload_bytes(part)
    name = _filename(part, w.block)
    contents: tuple[str, ...] = ()
    if isinstance(inner, EmailMessage):
        if not name:
            subject = decode_encoded_words(_header_str(inner, "subject", w.block) or "").strip()
            if subject:
                name = re.sub(r"[\\/\x00-\x1f]", "_", subject)[:200] + ".eml"
        contents = _inner_attachments(inner, w.block)
    elision = _elision_in(part, w)
    if elision is not None:
        w.defects.append(f"an attached mail of {elision.total} bytes: the first {elision.kept} read")
    w.add(name, ctype, data, contents, elision)


def _inner_attachments(msg: EmailMessage, block: HeaderBlock) -> tuple[str, ...]:
    names: list[str] = []
    try:
        for sub in msg.walk():
            if sub.is_multipart():
                continue
            ctype = _safe_ctype(sub)
            if sub is msg and ctype in _TEXT_TYPES:
                continue
            name = _filename(sub, block)
            if _is_attachment(sub, ctype, name):
                names.append(_clean_name(name, len(names) + 1) if name else _default_name(len(names) + 1, ctype))
            if len(names) >= MAX_CONTENTS:
                break
    except Exception:
        pass
    return tuple(names)


def _tnef_contents(data: bytes) -> tuple[tuple[str, ...], str | None]:
    """The file names inside an Outlook winmail.dat (TNEF)."""
    try:
        from tnefparse import TNEF

        tnef = TNEF(data, do_checksum=False)
    except Exception as exc:  # not TNEF, or damaged
        return (), f"winmail.dat unreadable: {type(exc).__name__}"
    names: list[str] = []
    for att in tnef.attachments[:MAX_CONTENTS]:
        try:
            name = att.long_filename() or att.name
        except Exception:
            name = ""
        if isinstance(name, bytes):
            name = decode_text(name.rstrip(b"\x00"), None)
        name = str(name).strip("\x00").strip()
        names.append(_clean_name(name, len(names) + 1) if name else f"part-{len(names) + 1}.bin")
    return tuple(names), None


def _cut_uuencoded(text: str, w: _Walk) -> str:
    """Move uuencoded files out of a plain-text body into the attachments."""
    if "begin " not in text:
        return text
    out: list[str] = []
    pos = 0
    for m in _UU_BEGIN.finditer(text):
        if m.start() < pos:
            continue
        end = _UU_END.search(text, m.end())
        if end is None:
            break
        lines = text[m.end() : end.start()].splitlines()
        data = _uu_decode(lines)
        if not data and any(line.strip() for line in lines[:3]):
            continue  # "begin 644 something" in prose, not a file
        name = m.group(1).strip()
        w.add(name, mimetypes.guess_type(name)[0] or "application/octet-stream", data)
        out.append(text[pos : m.start()])
        pos = end.end()
    out.append(text[pos:])
    return "".join(out)


# -- the whole message -------------------------------------------------------------------


def _body(pieces: list[_Piece]) -> tuple[str, bool]:
    texts: list[str] = []
    from_html = False
    for kind, text in pieces:
        if kind == "html":
            text = html_to_text(text)
            if text.strip():
                from_html = True
        text = text.replace("\r\n", "\n").replace("\r", "\n").strip("\n")
        if text.strip():
            texts.append(text)
    return "\n\n".join(texts), from_html


_ADDRESS_FIELDS = {"to": "To", "cc": "Cc", "reply-to": "Reply-To"}


def parse_email(raw: bytes, info: HeaderInfo | None = None, identity: bool = True) -> ParsedEmail:
    """Parse raw bytes; raises :class:`MessageError` only if nothing can be read.

    ``identity=False``: the headers are read without the logical identity
    (see :func:`read_headers`), for the parse stage, where it is stored already.
    """
    try:
        block = split_headers(raw)
        info = info or read_headers(raw, block, identity=identity)
    except Exception as exc:
        raise MessageError(f"unreadable header block: {type(exc).__name__}: {exc}") from exc
    data, thinned = _tree_input(raw, block)
    head_end = block.fields_end if block.fields_end is not None else block.body_offset
    tree, defects, parser = _tree(data, head_end - block.header_start)
    del data
    w = _Walk(block=block, defects=list(defects) + (thinned.defects if thinned else []), thinned=thinned)
    pieces: list[_Piece] = []
    try:
        _walk(tree, w, pieces)
    except RecursionError:
        w.defects.append("MIME structure too deep")
    body, body_from_html = _body(pieces)
    body = storable(body)
    if thinned is not None and thinned.elided:  # our markers only: the sender may write anything
        body = re.sub(f"mailcase-elided-{thinned.token}-[0-9]+", "", body)
    if len(body) > MAX_BODY_CHARS:
        body = body[:MAX_BODY_CHARS]
        w.defects.append(f"body longer than {MAX_BODY_CHARS} characters; truncated")

    def addrs(name: str) -> tuple[str, ...]:
        values = block.values(name)
        if not values:
            return ()
        found = parse_address_list(", ".join(values))
        w.defects.extend(f"{_ADDRESS_FIELDS[name]}: {d}" for d in found.defects)
        return tuple(a.addr for a in found.addresses)

    to, cc, reply_to = addrs("to"), addrs("cc"), addrs("reply-to")

    seen: set[str] = set()
    defects_out: list[str] = []
    for d in list(info.defects) + w.defects:
        d = storable(d)[:500]
        if d not in seen:
            seen.add(d)
            if len(defects_out) == MAX_DEFECTS:
                defects_out.append("more defects not listed")
                break
            defects_out.append(d)
    return ParsedEmail(
        headers=info,
        to=to,
        cc=cc,
        reply_to=reply_to,
        text_body=body,
        body_from_html=body_from_html,
        attachments=tuple(w.attachments),
        defects=tuple(defects_out),
        parser=parser,
    )
