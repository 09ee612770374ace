"""Local mail sources: a Maildir, an mbox file, or a folder of .eml files.

Each yields :class:`~mailcase.ingest.ledger.Incoming` copies with a stable
``source_key`` so re-reading the same source stores nothing twice:

* Maildir: ``file:<unique name>`` -- the part of the file name before the
  ``:2,`` flags, which the Maildir spec keeps stable when flags change;
* mbox and .eml: ``sha256:<hex of the raw bytes>``.

``received_at`` comes from the topmost Received: our own server added, else
Date:, else the file's modification time, and the source records which.

With ``max_message_bytes`` a file over the limit is treated as IMAP treats
such a mail (fetch.py): only its header block is read and stored, and the
copy is quarantined on arrival with the reason.  The file is never read into
memory whole (its key is hashed a megabyte at a time), so a 2 GB file in a
Maildir costs a megabyte, not 2 GB.
"""

from __future__ import annotations

import hashlib
import mailbox
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, cast

from mailcase.core.errors import UsageError
from mailcase.core.states import ReceivedSource
from mailcase.ingest.ledger import Incoming
from mailcase.mail.header_info import parse_date, received_header_time
from mailcase.mail.headers import split_headers


class FileKind(StrEnum):
    MAILDIR = "maildir"
    MBOX = "mbox"
    EML = "eml"


#: header bytes read of a file over the size limit (a header block is far smaller)
MAX_HEADER_READ = 1024 * 1024
_READ_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class RawFile:
    key: str
    raw: bytes
    mtime: float
    #: the file's size when only its header block was read (over the limit)
    truncated_from: int | None = None


def is_maildir(path: Path) -> bool:
    """A Maildir: a folder with new/ or cur/ (git, and some copies, drop the empty cur/ and tmp/;
    reading needs neither, and nothing here creates them)."""
    return (path / "new").is_dir() or (path / "cur").is_dir()


def detect(path: Path) -> FileKind:
    if path.is_dir():
        if is_maildir(path):
            return FileKind.MAILDIR
        return FileKind.EML
    if path.is_file():
        with path.open("rb") as fh:
            head = fh.read(5)
        if head == b"From ":
            return FileKind.MBOX
        return FileKind.EML
    raise UsageError(f"{path}: no such mailbox, Maildir, mbox file or folder")


#: no mail received before this is believed to be new mail (1970-01-01 is what a
#: broken clock or an empty Date field turns into)
FLOOR = datetime(1990, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Plausible:
    """The window a received time must fall in to be believed.

    ``latest`` is now plus a small clock skew; ``earliest`` is far before
    the mailbox's start point (or 1990 when it has none).  A file's own
    time is only checked against ``latest``: the filesystem saw the mail
    arrive, however old it is.
    """

    now: datetime
    latest: datetime
    earliest: datetime = FLOOR

    @classmethod
    def around(cls, now: datetime, skew_minutes: int, start: datetime | None = None,
               backdate_days: int = 30) -> Plausible:
        earliest = max(FLOOR, start - timedelta(days=backdate_days)) if start is not None else FLOOR
        return cls(now, now + timedelta(minutes=skew_minutes), earliest)

    def problem(self, at: datetime, file_time: bool = False) -> str | None:
        if at > self.latest:
            return f"is in the future (after {self.latest:%Y-%m-%d %H:%M} UTC)"
        if not file_time and at < self.earliest:
            return f"is implausibly early (before {self.earliest:%Y-%m-%d} UTC)"
        return None


def received_at(
    raw: bytes, mtime: float | None, receiving_hosts: tuple[str, ...], window: Plausible | None = None,
) -> tuple[datetime | None, ReceivedSource, str | None]:
    """(time, its source, why better sources were passed over) for a mail from a file.

    Our own server's topmost Received:, else Date:, else the file's time;
    with a ``window``, a time outside it is passed over for the next
    source, and when none is plausible the time of storing is used.
    """
    block = split_headers(raw)
    candidates: list[tuple[datetime | None, ReceivedSource]] = [
        (received_header_time(block, receiving_hosts), ReceivedSource.RECEIVED_HEADER),
        (parse_date(block.first("date")), ReceivedSource.DATE_HEADER),
        (datetime.fromtimestamp(mtime, UTC) if mtime is not None else None, ReceivedSource.FILE_TIME),
    ]
    notes: list[str] = []
    for at, how in candidates:
        if at is None:
            continue
        why = window.problem(at, file_time=how is ReceivedSource.FILE_TIME) if window else None
        if why is None:
            return at, how, "; ".join(notes) or None
        notes.append(f"{how.value} {at:%Y-%m-%d %H:%M} UTC {why}")
    if window is not None:
        return window.now, ReceivedSource.STORED_AT, "; ".join(notes) or None
    return None, ReceivedSource.FILE_TIME, None


def maildir_key(name: str) -> str:
    return "file:" + name.split(":2,", 1)[0].split("!2,", 1)[0]


def maildir_files(path: Path) -> Iterator[tuple[str, Path]]:
    """(key, file) for every mail in new/ and cur/, oldest first."""
    entries: list[tuple[float, str, Path]] = []
    for sub in ("new", "cur"):
        folder = path / sub
        if not folder.is_dir():
            continue
        with os.scandir(folder) as it:
            for entry in it:
                if entry.name.startswith(".") or not entry.is_file():
                    continue
                entries.append((entry.stat().st_mtime, entry.name, Path(entry.path)))
    entries.sort()
    for _, name, file in entries:
        yield maildir_key(name), file


def _header_block(fh: BinaryIO) -> bytes:
    """The beginning of a mail up to and including the blank line after its header."""
    head = b""
    while len(head) < MAX_HEADER_READ:
        chunk = fh.read(64 * 1024)
        if not chunk:
            break
        head += chunk
        for sep in (b"\r\n\r\n", b"\n\n"):
            at = head.find(sep)
            if at >= 0:
                return head[: at + len(sep)]
    return head[:MAX_HEADER_READ]


def _read_limited(fh: BinaryIO, limit: int | None) -> tuple[bytes, str, int | None]:
    """(raw bytes or just the header block, sha256 of the whole, size if over ``limit``)."""
    if limit is None:
        raw = fh.read()
        return raw, hashlib.sha256(raw).hexdigest(), None
    kept = fh.read(limit + 1)
    if len(kept) <= limit:
        return kept, hashlib.sha256(kept).hexdigest(), None
    h = hashlib.sha256(kept)
    size = len(kept)
    while chunk := fh.read(_READ_CHUNK):
        h.update(chunk)
        size += len(chunk)
    del kept
    fh.seek(0)
    return _header_block(fh), h.hexdigest(), size


def _read_file(file: Path, limit: int | None) -> tuple[bytes, str, int | None]:
    if limit is not None and file.stat().st_size > limit:
        with file.open("rb") as fh:
            h = hashlib.sha256()
            size = 0
            while chunk := fh.read(_READ_CHUNK):
                h.update(chunk)
                size += len(chunk)
            fh.seek(0)
            return _header_block(fh), h.hexdigest(), size
    raw = file.read_bytes()
    return raw, hashlib.sha256(raw).hexdigest(), None


def read_files(
    path: Path, kind: FileKind, skip_keys: set[str] | None = None,
    max_message_bytes: int | None = None,
) -> Iterator[RawFile]:
    """Every mail in the source; Maildir files whose key is in ``skip_keys`` are not read."""
    if kind is FileKind.MAILDIR:
        for key, file in maildir_files(path):
            if skip_keys is not None and key in skip_keys:
                continue
            try:
                raw, _, size = _read_file(file, max_message_bytes)
                yield RawFile(key, raw, file.stat().st_mtime, size)
            except FileNotFoundError:  # moved by its MUA meanwhile: seen next time
                continue
    elif kind is FileKind.MBOX:
        box = mailbox.mbox(str(path), create=False)
        mtime = path.stat().st_mtime
        try:
            for key in box.iterkeys():
                with box.get_file(key) as fh:
                    raw, sha, size = _read_limited(cast(BinaryIO, fh), max_message_bytes)
                yield RawFile("sha256:" + sha, raw, mtime, size)
        finally:
            box.close()
    else:
        files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
        for file in files:
            if file.name.startswith("."):
                continue
            raw, sha, size = _read_file(file, max_message_bytes)
            yield RawFile("sha256:" + sha, raw, file.stat().st_mtime, size)


def incoming_from_files(
    path: Path,
    source: str,
    *,
    historical: bool,
    receiving_hosts: tuple[str, ...],
    kind: FileKind | None = None,
    historical_before: datetime | None = None,
    mailbox_name: str | None = None,
    skip_keys: set[str] | None = None,
    max_message_bytes: int | None = None,
    window: Plausible | None = None,
) -> Iterator[Incoming]:
    kind = kind or detect(path)
    for rf in read_files(path, kind, skip_keys, max_message_bytes):
        if skip_keys is not None and rf.key in skip_keys:
            continue
        at, how, note = received_at(rf.raw, rf.mtime, receiving_hosts, window)
        is_historical = historical or (
            historical_before is not None and (at is None or at < historical_before)
        )
        yield Incoming(
            source=source,
            source_key=rf.key,
            raw=rf.raw,
            received_at=at,
            received_source=how,
            received_note=note,
            historical=is_historical,
            mailbox=mailbox_name,
            truncated_from=rf.truncated_from,
            quarantine_reason=(
                f"message is {rf.truncated_from} bytes, over max_message_bytes {max_message_bytes}:"
                " headers kept, the file left where it is"
                if rf.truncated_from is not None
                else None
            ),
        )
