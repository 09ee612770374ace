"""A mail's attachments with their bytes, read as the parse reads them: to write them out."""

from __future__ import annotations

from mailcase.mail.headers import split_headers
from mailcase.mail.parse.result import Attachment
from mailcase.mail.parse.tree import build_tree, tree_input
from mailcase.mail.parse.walk import Piece, Walk, walk


def attachment_files(raw: bytes) -> list[tuple[Attachment, bytes | None]]:
    """Every attachment the parse lists (same names, types, sizes, order) with its bytes;
    None for a part of a large mail the thinning left out of memory (its size and hash
    are listed, its bytes are not read)."""
    block = split_headers(raw)
    data, thinned = tree_input(raw, block)
    head_end = block.fields_end if block.fields_end is not None else block.body_offset
    tree, _, _ = build_tree(data, head_end - block.header_start)
    w = Walk(block=block, thinned=thinned, files=[])
    pieces: list[Piece] = []
    try:
        walk(tree, w, pieces)
    except RecursionError:
        pass
    assert w.files is not None
    return list(zip(w.attachments, w.files, strict=True))
