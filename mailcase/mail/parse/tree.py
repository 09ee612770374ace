"""The MIME tree of a mail, built by the standard library's parser: bounded.

What the parser is given is the mail as headers.py read it (a repaired
header block, a header flood left out) and, for a large mail, a thinned copy
(thinning.py), so the tree costs at most a few tens of megabytes whatever
the mail.  mail-parser then looks over a tree with defects for its defect
categories.
"""

from __future__ import annotations

import email
import logging
from email.message import Message as EmailMessage
from email.policy import compat32

from mailcase.core.errors import MessageError
from mailcase.mail.headers import HeaderBlock, split_headers
from mailcase.mail.parse import limits
from mailcase.mail.parse.thinning import Thinned, count_matches, declared_boundaries, delimiter_re, thin

log = logging.getLogger(__name__)


def build_tree(raw: bytes, header_bytes: int) -> tuple[EmailMessage, list[str], str]:
    """The MIME tree, defects found building it, and which parser built it.

    The standard library builds the tree (mail-parser 4.8 builds the very
    same one, ``email.message_from_bytes`` with compat32); where the tree
    has a defect, mail-parser looks it over for its defect categories.  It
    reads every header (Received chains, dates, addresses) and decodes every
    attachment to do so, about a quarter of the parse of a typical mail, so
    a mail whose MIME structure is clean is not sent to it (its address and
    date defects are ours: message.py), nor one where that would
    cost more than the tree itself.
    """
    try:
        tree = email.message_from_bytes(raw, policy=compat32)
    except Exception as exc:  # RecursionError on thousands of nested multiparts
        raise MessageError(f"unreadable MIME structure: {type(exc).__name__}: {exc}") from exc
    if not any(part.defects for part in tree.walk()):
        return tree, [], "stdlib"
    if len(tree) > limits.MAILPARSER_MAX_FIELDS or header_bytes > limits.MAILPARSER_MAX_HEADER_BYTES:
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
    """The MIME tree of ``raw``, built as ``parse_email`` builds it: bounded.

    For code that walks a mail's parts itself (the bounce rule): a large
    mail is thinned first (:func:`thin`), so the tree costs at most a few
    tens of megabytes whatever the mail; a part body left out reads as a
    marker line.  Raises :class:`MessageError` where ``parse_email`` would.
    """
    data, _ = tree_input(raw, split_headers(raw))
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


def tree_input(raw: bytes, block: HeaderBlock) -> tuple[bytes, Thinned | None]:
    """What the tree is built from: the mail, or a thinned copy of it.

    The standard library's parser holds every line of a mail as an object
    and every part as a Message: a 25 MB mail of short lines costs it 15 s
    and 1.4 GB, 50 MB of base64 ten times its size.  So the header fields
    headers.py skipped (past its ``_MAX_HEADER_FIELDS``) are left out, and a
    body over ``limits.THIN_ABOVE_BYTES`` or ``limits.THIN_ABOVE_LINES`` is thinned
    (:func:`thin`).  Anything smaller is parsed exactly as it came.
    """
    head_end = block.fields_end if block.fields_end is not None else block.body_offset
    nul = "NUL bytes in the header block; removed" in block.defects
    repaired = bool(block.folded_at) or "text before the first header" in block.defects or nul
    body = block.body_offset
    size = len(raw) - body
    lines = max(raw.count(b"\n", body), raw.count(b"\r", body))
    must_thin = size > limits.THIN_ABOVE_BYTES or lines > limits.THIN_ABOVE_LINES
    if not must_thin and lines > 2 * limits.MAX_MIME_PARTS:  # every part takes two lines at least
        delimiter = delimiter_re(declared_boundaries(raw))
        must_thin = delimiter is not None and \
            count_matches(delimiter, raw, body, limits.MAX_MIME_PARTS + 1) > limits.MAX_MIME_PARTS
    big_head = head_end - block.header_start > limits.MAILPARSER_MAX_HEADER_BYTES
    if not must_thin and not repaired and block.fields_end is None and not big_head:
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
    if not must_thin:
        return head + raw[body:], None
    thinned = thin(raw, block, body)
    return head + thinned.data, thinned
