"""The walk over a mail's MIME tree: the body's pieces of text and the attachments.

Every inline text part in order (RFC 2183), one alternative of each
``multipart/alternative``; everything else is an attachment, listed with
what is inside it where that can be read cheaply.  One unreadable part
costs a defect, not the rest of the mail.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from email.message import Message as EmailMessage

from mailcase.mail.charsets import decode_encoded_words
from mailcase.mail.headers import HeaderBlock
from mailcase.mail.parse import limits
from mailcase.mail.parse.parts import (
    TNEF_TYPES,
    clean_name,
    default_name,
    filename,
    header_str,
    inner_attachments,
    is_attachment,
    payload_bytes,
    safe_ctype,
    text_of,
    tnef_contents,
    transfer_encoding,
)
from mailcase.mail.parse.result import Attachment
from mailcase.mail.parse.thinning import Elision, Thinned, decode_kept, elided_payload, elision_in
from mailcase.mail.parse.uuencode import UU_ENCODINGS, cut_uuencoded, uu_payload


@dataclass
class Walk:
    block: HeaderBlock
    attachments: list[Attachment] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    counter: int = 0
    thinned: Thinned | None = None
    #: with a list here, each listed attachment's bytes are kept in it too (None: a part the
    #: thinning of a large mail left out, not in memory): to write attachments out
    files: list[bytes | None] | None = None

    def add(
        self, name: str | None, ctype: str, data: bytes, contents: tuple[str, ...] = (),
        elision: Elision | None = None,
    ) -> None:
        self.counter += 1
        if len(self.attachments) >= limits.MAX_ATTACHMENTS:
            if len(self.attachments) == limits.MAX_ATTACHMENTS:
                self.defects.append(f"more than {limits.MAX_ATTACHMENTS} attachments; rest not listed")
                self.attachments.append(
                    Attachment("(more not listed)", "application/octet-stream", 0, "")
                )
                if self.files is not None:
                    self.files.append(None)
            return
        shown = clean_name(name, self.counter) if name else default_name(self.counter, ctype)
        self.attachments.append(
            Attachment(
                name=shown,
                content_type=ctype,
                size=elision.size if elision else len(data),
                sha256=elision.sha256 if elision else hashlib.sha256(data).hexdigest(),
                contents=contents[:limits.MAX_CONTENTS],
            )
        )
        if self.files is not None:
            self.files.append(None if elision else data)


#: a piece of body text: ("plain" | "html", text)
Piece = tuple[str, str]


def walk(part: EmailMessage, w: Walk, pieces: list[Piece], depth: int = 0) -> None:
    if depth > limits.MAX_DEPTH:
        w.defects.append(f"MIME nesting deeper than {limits.MAX_DEPTH}; rest not read")
        return
    ctype = safe_ctype(part)
    for d in getattr(part, "defects", []) or []:
        w.defects.append(type(d).__name__)
    try:
        if ctype in ("message/rfc822", "message/global"):
            _attached_mail(part, w, ctype)
        elif part.is_multipart():
            children = [c for c in part.get_payload() if isinstance(c, EmailMessage)]
            if ctype.startswith("message/"):
                elision = elision_in(part, w.thinned, w.defects)
                w.add(filename(part, w.block), ctype, payload_bytes(part), elision=elision)
            elif ctype == "multipart/alternative":
                _walk_alternative(children, w, pieces, depth)
            else:
                for child in children:
                    walk(child, w, pieces, depth + 1)
        elif ctype.startswith("multipart/"):
            # the boundary never appears (RFC 2046 §5.1.1): the parsers keep
            # the body unsplit, and it is still the sender's text
            w.defects.append("multipart body without its boundary; read as text")
            found = elided_payload(part, w.thinned)
            data = decode_kept(part, found[0]) if found else payload_bytes(part)
            text = text_of(part, "text/plain", data, w.defects)
            if text.strip():
                pieces.append(("plain", text))
        else:
            _leaf(part, w, pieces, ctype)
    except RecursionError:
        raise
    except Exception as exc:  # one unreadable part must not cost the rest
        w.defects.append(f"unreadable {ctype} part: {type(exc).__name__}")


def _leaf(part: EmailMessage, w: Walk, pieces: list[Piece], ctype: str) -> None:
    name = filename(part, w.block)
    elision: Elision | None = None
    found = elided_payload(part, w.thinned)
    if found is not None:
        data, elision = decode_kept(part, found[0]), found[1]
    elif transfer_encoding(part) in UU_ENCODINGS:
        data, uu_name = uu_payload(part)
        name = name or uu_name
    else:
        data = payload_bytes(part)
    if ctype in TNEF_TYPES or (name or "").lower() == "winmail.dat":
        if elision is not None:
            contents: tuple[str, ...] = ()
            w.defects.append(f"winmail.dat of {elision.total} bytes: its files not listed")
        else:
            contents, defect = tnef_contents(data)
            if defect:
                w.defects.append(defect)
        w.add(name or "winmail.dat", ctype, data, contents, elision)
        return
    if is_attachment(part, ctype, name):
        w.add(name, ctype, data, elision=elision)
        return
    if elision is not None:
        w.defects.append(f"a text part of {elision.total} bytes: the first {elision.kept} read")
    text = text_of(part, ctype, data, w.defects)
    if ctype == "text/plain":
        text, files = cut_uuencoded(text)
        for file_name, file_type, file_data in files:
            w.add(file_name, file_type, file_data)
    pieces.append(("html" if ctype == "text/html" else "plain", text))


def _walk_alternative(
    children: list[EmailMessage], w: Walk, pieces: list[Piece], depth: int
) -> None:
    """One alternative for the body; the attachments of all of them.

    The plain-text alternative when it says something, else the last one
    that yields text (RFC 2046 §5.1.4: the last is the richest).
    """
    chosen: list[Piece] | None = None
    results: list[list[Piece]] = []
    for child in children:
        sub: list[Piece] = []
        walk(child, w, sub, depth + 1)
        results.append(sub)
        if chosen is None and safe_ctype(child) == "text/plain" and any(t.strip() for _, t in sub):
            chosen = sub
    if chosen is None:
        for sub in reversed(results):
            if any(t.strip() for _, t in sub):
                chosen = sub
                break
    pieces.extend(chosen or ())


def _attached_mail(part: EmailMessage, w: Walk, ctype: str) -> None:
    """An attached mail: listed with its attachments; its text stays out of the body."""
    payload = part.get_payload()
    inner = payload[0] if isinstance(payload, list) and payload else None
    if isinstance(inner, EmailMessage):
        try:
            data = inner.as_bytes()
        except Exception:
            data = payload_bytes(part)
    else:
        data = payload_bytes(part)
    name = filename(part, w.block)
    contents: tuple[str, ...] = ()
    if isinstance(inner, EmailMessage):
        if not name:
            subject = decode_encoded_words(header_str(inner, "subject", w.block) or "").strip()
            if subject:
                name = re.sub(r"[\\/\x00-\x1f]", "_", subject)[:200] + ".eml"
        contents = inner_attachments(inner, w.block)
    elision = elision_in(part, w.thinned, w.defects)
    if elision is not None:
        w.defects.append(f"an attached mail of {elision.total} bytes: the first {elision.kept} read")
    w.add(name, ctype, data, contents, elision)
