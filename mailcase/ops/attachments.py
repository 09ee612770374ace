"""A stored mail's original bytes and its attachments, written out under safe file names.

A sender chooses attachment names: they are display data, never paths.  A
saved file's name has no path separator, no leading dot, no control or
format character, is not a reserved device name (Windows), is limited in
length, and never replaces an existing file (a counter is added); the
file is created inside the chosen directory or not at all.
"""

from __future__ import annotations

import mimetypes
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcase.core.errors import UsageError
from mailcase.domain.tables import BLOB, MESSAGE, RAW_COPY
from mailcase.mail.parse.files import attachment_files

#: bytes of a saved file's name (most file systems allow 255)
MAX_NAME_BYTES = 150
_RESERVED = re.compile(r"(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³]|conin\$|conout\$)", re.I)
_UNSAFE = re.compile(r'[<>:"|?*/\\]')


def raw_mail(conn: Connection, pk: int) -> bytes:
    """The original bytes of a stored mail (its first stored copy)."""
    if conn.execute(sa.select(MESSAGE.c.id).where(MESSAGE.c.id == pk)).first() is None:
        raise UsageError(f"no message {pk}")
    row = conn.execute(
        sa.select(BLOB.c.data, RAW_COPY.c.truncated_from).join(BLOB, BLOB.c.sha256 == RAW_COPY.c.sha256)
        .where(RAW_COPY.c.message_pk == pk, BLOB.c.data.is_not(None)).order_by(RAW_COPY.c.id).limit(1)
    ).first()
    if row is None:
        raise UsageError(f"the original of message {pk} is no longer stored (retention purged it)")
    return bytes(row.data)


@dataclass(frozen=True)
class StoredAttachment:
    name: str  # as the parse lists it (display only)
    content_type: str
    size: int
    data: bytes | None  # None: a part of a large mail the parse did not read into memory


def attachments(conn: Connection, pk: int) -> list[StoredAttachment]:
    return [StoredAttachment(a.name, a.content_type, a.size, data)
            for a, data in attachment_files(raw_mail(conn, pk))]


def _stem_ext(name: str) -> tuple[str, str]:
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext) > 16:
        return name, ""
    return stem, "." + ext


def _cut(text: str, max_bytes: int) -> str:
    data = text.encode("utf-8")[:max(max_bytes, 0)]
    return data.decode("utf-8", "ignore")


def safe_name(name: str, content_type: str, index: int) -> str:
    """A file name for ``name`` that is safe to create in a directory (no counter yet)."""
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]  # a path's last component only
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C")  # control, format, unassigned
    name = _UNSAFE.sub("_", name)
    name = name.strip().lstrip(". ").rstrip(". ")
    stem, ext = _stem_ext(name)
    if _RESERVED.fullmatch(stem.split(".")[0].strip()):
        stem = "_" + stem
    if not stem.strip("_. "):
        stem, ext = f"attachment-{index}", ext or (mimetypes.guess_extension(content_type or "") or ".bin")
    ext = _cut(ext, 20)
    return _cut(stem, MAX_NAME_BYTES - len(ext.encode("utf-8"))).rstrip(". ") + ext


def _numbered(name: str, n: int) -> str:
    stem, ext = _stem_ext(name)
    suffix = f"-{n}"
    return _cut(stem, MAX_NAME_BYTES - len((suffix + ext).encode("utf-8"))) + suffix + ext


def save_attachments(items: list[StoredAttachment], directory: Path) -> list[tuple[StoredAttachment, str | None]]:
    """Write each attachment into ``directory``; (attachment, the file name written or None)."""
    directory.mkdir(parents=True, exist_ok=True)
    root = directory.resolve()
    used: set[str] = set()
    out: list[tuple[StoredAttachment, str | None]] = []
    for i, item in enumerate(items, 1):
        if item.data is None:
            out.append((item, None))
            continue
        base = safe_name(item.name, item.content_type, i)
        n = 1
        while True:
            candidate = base if n == 1 else _numbered(base, n)
            n += 1
            if candidate.lower() in used:
                continue
            path = root / candidate
            if path.parent != root:  # cannot happen after safe_name; never write elsewhere
                raise UsageError(f"refusing to write {candidate!r} outside {root}")
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                             | getattr(os, "O_BINARY", 0), 0o600)
            except FileExistsError:
                continue
            with os.fdopen(fd, "wb") as f:
                f.write(item.data)
            used.add(candidate.lower())
            out.append((item, candidate))
            break
    return out
