"""Full parse: raw bytes -> :class:`ParsedEmail`, a frozen value.

mail-parser builds the MIME tree (with its recovery of parts lost in a broken
epilogue) and reports defects; when it raises, the standard library's parser
builds the tree instead.  Body and attachments are then read from the tree by
:func:`_walk` here rather than taken from mail-parser, because mail-parser
(4.8, DESIGN §6) names unnamed attachments randomly (not stable across
re-parses), mixes the text of an attached ``message/rfc822`` into the body and
decodes ISO-8859-1 labels that are really windows-1252 as Latin-1.

Headers (From, Subject, Message-ID, ...) come from headers.py, which reads
the raw bytes itself: mail-parser drops raw non-UTF-8 header bytes.

Odd input is data: only a message that truly cannot be read raises
:class:`MessageError`; everything else becomes a defect string.
"""

from __future__ import annotations

import email
import hashlib
import logging
import mimetypes
import re
from dataclasses import dataclass
from email.message import Message as EmailMessage
from email.policy import compat32
from typing import Any

from mailcase.addresses import parse_address_list
from mailcase.charsets import decode_encoded_words, decode_text
from mailcase.errors import MessageError
from mailcase.headers import HeaderInfo, read_headers, split_headers

log = logging.getLogger(__name__)

MAX_BODY_CHARS = 1_000_000
MAX_ATTACHMENTS = 1000
MAX_DEPTH = 50


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


def html_to_text(html: str) -> str:
    from inscriptis import get_text

    try:
        return str(get_text(html)).strip()
    except Exception:  # inscriptis/lxml on pathological markup
        return re.sub(r"<[^>]+>", " ", html).strip()


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


def _part_name(part: EmailMessage, index: int, ctype: str) -> str:
    name: str | None = None
    try:
        name = part.get_filename()
    except Exception:
        name = None
    if name:
        name = decode_encoded_words(str(name)).strip()
    if not name:
        ext = mimetypes.guess_extension(ctype) or ".bin"
        name = f"part-{index}{ext}"
    # a name is display data, never a path
    name = name.replace("\\", "/").rsplit("/", 1)[-1].replace("\x00", "")
    return name[:255] or f"part-{index}.bin"


def _payload_bytes(part: EmailMessage) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if isinstance(data, bytes):
        return data
    payload = part.get_payload()
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogateescape")
    return b""


def _text_of(part: EmailMessage) -> str:
    return decode_text(_payload_bytes(part), part.get_content_charset())


@dataclass
class _Walk:
    plain: list[str]
    html: list[str]
    attachments: list[Attachment]
    defects: list[str]
    counter: int = 0


def _is_attachment(part: EmailMessage, ctype: str) -> bool:
    disposition = (part.get_content_disposition() or "").lower()
    if disposition == "attachment":
        return True
    if ctype not in ("text/plain", "text/html"):
        return True
    try:
        named = bool(part.get_filename())
    except Exception:
        named = False
    return named and disposition != "inline"


def _add_attachment(w: _Walk, part: EmailMessage, ctype: str, data: bytes) -> None:
    w.counter += 1
    if len(w.attachments) >= MAX_ATTACHMENTS:
        if len(w.attachments) == MAX_ATTACHMENTS:
            w.defects.append(f"more than {MAX_ATTACHMENTS} attachments; rest not listed")
            w.attachments.append(
                Attachment("(more not listed)", "application/octet-stream", 0, "")
            )
        return
    w.attachments.append(
        Attachment(
            name=_part_name(part, w.counter, ctype),
            content_type=ctype,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
    )


def _walk(part: EmailMessage, w: _Walk, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        w.defects.append(f"MIME nesting deeper than {MAX_DEPTH}; rest not read")
        return
    ctype = part.get_content_type().lower()
    for d in getattr(part, "defects", []) or []:
        w.defects.append(type(d).__name__)
    if part.is_multipart():
        children = part.get_payload()
        if not isinstance(children, list):
            return
        if ctype == "multipart/alternative":
            _walk_alternative(children, w, depth)
            return
        for child in children:
            if isinstance(child, EmailMessage):
                _walk(child, w, depth + 1)
        return
    if ctype in ("message/rfc822", "message/global"):
        # an attached mail: listed, its text stays out of the outer body
        inner = part.get_payload()
        inner_msg = inner[0] if isinstance(inner, list) and inner else None
        data = inner_msg.as_bytes() if isinstance(inner_msg, EmailMessage) else _payload_bytes(part)
        w.counter += 1
        subject = ""
        if isinstance(inner_msg, EmailMessage):
            subject = decode_encoded_words(str(inner_msg.get("Subject", "") or "")).strip()
        name = _part_name(part, w.counter, ctype)
        if name.startswith("part-") and subject:
            name = re.sub(r"[\\/\x00-\x1f]", "_", subject)[:200] + ".eml"
        w.attachments.append(
            Attachment(name, ctype, len(data), hashlib.sha256(data).hexdigest())
        )
        return
    if _is_attachment(part, ctype):
        _add_attachment(w, part, ctype, _payload_bytes(part))
        return
    text = _text_of(part)
    (w.html if ctype == "text/html" else w.plain).append(text)


def _walk_alternative(children: list[Any], w: _Walk, depth: int) -> None:
    plain = [c for c in children if isinstance(c, EmailMessage) and c.get_content_type() == "text/plain"]
    chosen: EmailMessage | None = None
    for c in plain:
        if _text_of(c).strip():
            chosen = c
            break
    for child in children:
        if not isinstance(child, EmailMessage):
            continue
        ctype = child.get_content_type().lower()
        if ctype in ("text/plain", "text/html"):
            if chosen is not None:
                if child is chosen:
                    w.plain.append(_text_of(child))
                continue
            if ctype == "text/html":
                w.html.append(_text_of(child))
            continue
        if child.is_multipart() and chosen is not None:
            # e.g. multipart/related holding the HTML body and its images
            sub = _Walk([], [], w.attachments, w.defects, w.counter)
            _walk(child, sub, depth + 1)
            w.counter = sub.counter
            continue
        _walk(child, w, depth + 1)


def parse_email(raw: bytes, info: HeaderInfo | None = None) -> ParsedEmail:
    """Parse raw bytes; raises :class:`MessageError` only if nothing can be read."""
    block = split_headers(raw)
    info = info or read_headers(raw, block)
    tree, defects, parser = _tree(raw)
    w = _Walk([], [], [], list(defects))
    try:
        _walk(tree, w)
    except RecursionError:
        w.defects.append("MIME structure too deep")
    body_from_html = False
    if any(t.strip() for t in w.plain):
        body = "\n\n".join(t.strip("\n") for t in w.plain if t.strip())
    elif w.html:
        body = "\n\n".join(html_to_text(h) for h in w.html)
        body_from_html = True
    else:
        body = ""
    body = body.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
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
