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
from dataclasses import dataclass, field
from email.header import Header
from email.message import Message as EmailMessage
from email.policy import compat32
from typing import Any

from mailcase.addresses import parse_address_list
from mailcase.charsets import decode_8bit_header, decode_encoded_words, decode_text
from mailcase.errors import MessageError
from mailcase.headers import HeaderBlock, HeaderInfo, read_headers, split_headers

log = logging.getLogger(__name__)

MAX_BODY_CHARS = 1_000_000
MAX_ATTACHMENTS = 1000
MAX_DEPTH = 50
MAX_CONTENTS = 200

_TEXT_TYPES = ("text/plain", "text/html")
_TNEF_TYPES = ("application/ms-tnef", "application/vnd.ms-tnef")
_UU_ENCODINGS = ("x-uuencode", "uuencode", "x-uue", "uue")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:+-]{1,40})""", re.I)
# a uuencoded file inside a text body: "begin <mode> <name>" ... "end"
_UU_BEGIN = re.compile(r"^begin [0-7]{3,4} ([^\r\n]+?)[ \t]*\r?$", re.M)
_UU_END = re.compile(r"^end[ \t]*\r?$", re.M)


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


def _tree(raw: bytes) -> tuple[EmailMessage, list[str], str]:
    """The MIME tree, defects found building it, and which parser built it."""
    try:
        import mailparser

        mp = mailparser.parse_from_bytes(raw)
        tree = mp.message
        if tree is not None:
            defects = sorted(str(c) for c in (mp.defects_categories or ()))
            return tree, defects, "mail-parser"
    except RecursionError:
        pass
    except Exception as exc:  # mail-parser raises on some broken mail: fall back
        log.debug("mail-parser failed (%s: %s); using the standard library", type(exc).__name__, exc)
    try:
        return email.message_from_bytes(raw, policy=compat32), [], "stdlib"
    except Exception as exc:
        raise MessageError(f"unreadable MIME structure: {type(exc).__name__}: {exc}") from exc


def _repaired(raw: bytes, block: HeaderBlock) -> bytes:
    """The bytes with the header block as headers.py read it."""
    if not block.folded_at and "text before the first header" not in block.defects:
        return raw  # (an mbox From line the parsers know themselves)
    pieces: list[bytes] = []
    prev = block.header_start
    for offset in block.folded_at:
        pieces.append(raw[prev:offset])
        pieces.append(b" ")
        prev = offset
    pieces.append(raw[prev:])
    return b"".join(pieces)


# -- reading parts ----------------------------------------------------------------------


def _safe_ctype(part: EmailMessage) -> str:
    try:
        return part.get_content_type().lower()
    except Exception:
        return "application/octet-stream"


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


def _text_of(part: EmailMessage, ctype: str, data: bytes | None = None) -> str:
    if data is None:
        data = _payload_bytes(part)
    try:
        label = part.get_content_charset()
    except Exception:
        label = None
    if label is None and ctype == "text/html":
        m = _META_CHARSET.search(data, 0, 4096)
        label = m.group(1).decode("ascii") if m else None
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
    name = re.sub(r"[\x00-\x1f\x7f]", "", name).strip()
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

    def add(
        self, name: str | None, ctype: str, data: bytes, contents: tuple[str, ...] = ()
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
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
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
                w.add(_filename(part, w.block), ctype, _payload_bytes(part))
            elif ctype == "multipart/alternative":
                _walk_alternative(children, w, pieces, depth)
            else:
                for child in children:
                    _walk(child, w, pieces, depth + 1)
        elif ctype.startswith("multipart/"):
            # the boundary never appears (RFC 2046 §5.1.1): the parsers keep
            # the body unsplit, and it is still the sender's text
            w.defects.append("multipart body without its boundary; read as text")
            text = _text_of(part, "text/plain")
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
    if _cte(part) in _UU_ENCODINGS:
        data, uu_name = _uu_payload(part)
        name = name or uu_name
    else:
        data = _payload_bytes(part)
    if ctype in _TNEF_TYPES or (name or "").lower() == "winmail.dat":
        contents, defect = _tnef_contents(data)
        if defect:
            w.defects.append(defect)
        w.add(name or "winmail.dat", ctype, data, contents)
        return
    if _is_attachment(part, ctype, name):
        w.add(name, ctype, data)
        return
    text = _text_of(part, ctype, data)
    if ctype == "text/plain":
        text = _cut_uuencoded(text, w)
    pieces.append(("html" if ctype == "text/html" else "plain", text))


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
    w.add(name, ctype, data, contents)


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


def parse_email(raw: bytes, info: HeaderInfo | None = None) -> ParsedEmail:
    """Parse raw bytes; raises :class:`MessageError` only if nothing can be read."""
    try:
        block = split_headers(raw)
        info = info or read_headers(raw, block)
    except Exception as exc:
        raise MessageError(f"unreadable header block: {type(exc).__name__}: {exc}") from exc
    tree, defects, parser = _tree(_repaired(raw, block))
    w = _Walk(block=block, defects=list(defects))
    pieces: list[_Piece] = []
    try:
        _walk(tree, w, pieces)
    except RecursionError:
        w.defects.append("MIME structure too deep")
    body, body_from_html = _body(pieces)
    body = body.replace("\x00", "")
    if len(body) > MAX_BODY_CHARS:
        body = body[:MAX_BODY_CHARS]
        w.defects.append(f"body longer than {MAX_BODY_CHARS} characters; truncated")

    def addrs(name: str) -> tuple[str, ...]:
        values = block.values(name)
        if not values:
            return ()
        return tuple(a.addr for a in parse_address_list(", ".join(values)).addresses)

    seen: set[str] = set()
    defects_out = []
    for d in list(info.defects) + w.defects:
        if d not in seen:
            seen.add(d)
            defects_out.append(d)
    return ParsedEmail(
        headers=info,
        to=addrs("to"),
        cc=addrs("cc"),
        reply_to=addrs("reply-to"),
        text_body=body,
        body_from_html=body_from_html,
        attachments=tuple(w.attachments),
        defects=tuple(defects_out),
        parser=parser,
    )
