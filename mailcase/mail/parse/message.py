"""The full parse's entry point, :func:`parse_email`: raw bytes -> :class:`ParsedEmail`, a frozen value.

mail-parser builds the MIME tree and reports defects; when it raises, the
standard library's parser builds the tree instead.  Body and attachments are
then read from the tree by the walk (walk.py) rather than taken from
mail-parser, because mail-parser (4.8, docs/design.md §6) names unnamed attachments
randomly (not stable across re-parses), mixes the text of an attached
``message/rfc822`` into the body and decodes ISO-8859-1 labels that are
really windows-1252 as Latin-1.

Headers (From, Subject, Message-ID, ...) come from headers.py and
header_info.py, which read the raw bytes themselves: mail-parser drops raw
non-UTF-8 header bytes.  Where headers.py had to repair the header block (a
folded line that lost its leading whitespace, text before the first header),
the tree is built from the repaired bytes, so both agree on where the body
starts.

The body is every inline text part in order (RFC 2183: inline parts are
shown in sequence), one alternative of each ``multipart/alternative``, HTML
converted to text.  Attachments are listed with what is inside them where
that can be read cheaply: an attached mail's attachments, the files inside
an Outlook ``winmail.dat`` (TNEF), and uuencoded files, which are cut out of
the body text.

Odd input is data: only a message that truly cannot be read raises
:class:`MessageError`; everything else becomes a defect string.

The parse package has one module per job, each importing only those above it here:

* ``limits``: how much of a mail is read (sizes, counts, depth);
* ``result``: :class:`Attachment` and :class:`ParsedEmail`, what a parse returns;
* ``html_text``: HTML as plain text;
* ``uuencode``: uuencoded files, in a part or inside body text;
* ``parts``: one MIME part read (its type, payload, text, file name, winmail.dat);
* ``thinning``: a large mail with its large part bodies left out, hashed by streaming;
* ``tree``: the MIME tree built, bounded (:func:`message_tree` for the rules);
* ``walk``: the tree walked into body pieces and attachments;
* ``message``: :func:`parse_email`, the entry point.
"""

from __future__ import annotations

from mailcase.core.errors import MessageError
from mailcase.mail.addresses import parse_address_list
from mailcase.mail.charsets import storable
from mailcase.mail.header_info import HeaderInfo, read_headers
from mailcase.mail.headers import split_headers
from mailcase.mail.parse import limits
from mailcase.mail.parse.html_text import html_to_text
from mailcase.mail.parse.result import ParsedEmail
from mailcase.mail.parse.thinning import without_markers
from mailcase.mail.parse.tree import build_tree, tree_input
from mailcase.mail.parse.walk import Piece, Walk, walk


def _body(pieces: list[Piece]) -> tuple[str, bool]:
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
    (see :func:`~mailcase.mail.header_info.read_headers`), for the parse
    stage, where it is stored already.
    """
    try:
        block = split_headers(raw)
        info = info or read_headers(raw, block, identity=identity)
    except Exception as exc:
        raise MessageError(f"unreadable header block: {type(exc).__name__}: {exc}") from exc
    data, thinned = tree_input(raw, block)
    head_end = block.fields_end if block.fields_end is not None else block.body_offset
    tree, defects, parser = build_tree(data, head_end - block.header_start)
    del data
    w = Walk(block=block, defects=list(defects) + (thinned.defects if thinned else []), thinned=thinned)
    pieces: list[Piece] = []
    try:
        walk(tree, w, pieces)
    except RecursionError:
        w.defects.append("MIME structure too deep")
    body, body_from_html = _body(pieces)
    body = storable(body)
    if thinned is not None:
        body = without_markers(body, thinned)
    if len(body) > limits.MAX_BODY_CHARS:
        body = body[:limits.MAX_BODY_CHARS]
        w.defects.append(f"body longer than {limits.MAX_BODY_CHARS} characters; truncated")

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
            if len(defects_out) == limits.MAX_DEFECTS:
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
