"""The ingestion ledger: every raw copy stored once, under its logical mail.

:func:`store` is the first thing that happens to a mail, whatever its source
(IMAP, Maildir, mbox, .eml): in one transaction it keeps the raw bytes, reads
the headers and files the copy under its logical identity.  Re-storing a copy
already seen from the same source (same ``source`` and ``source_key``) adds
nothing; a new copy of a known mail (a Maildir copy of an IMAP mail, the copy
at a second support address) is kept as a raw copy of the same message.
"""

from __future__ import annotations

import hashlib
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcase.core.states import MessageState, ReceivedSource, Stage
from mailcase.domain.db import insert_ignore
from mailcase.domain.tables import BLOB, MESSAGE, QUARANTINE, RAW_COPY
from mailcase.mail.header_info import DERIVED_MSGID_DOMAIN, HeaderInfo, read_headers
from mailcase.mail.headers import split_headers


@dataclass(frozen=True)
class Incoming:
    """One raw copy as a source delivered it."""

    source: str
    source_key: str
    raw: bytes
    received_at: datetime | None
    received_source: ReceivedSource
    historical: bool
    mailbox: str | None = None
    uidvalidity: int | None = None
    uid: int | None = None
    post_action: str | None = None
    #: set when only the headers were fetched because the mail is too large
    truncated_from: int | None = None
    #: a reason to quarantine the mail on arrival (e.g. over the size limit)
    quarantine_reason: str | None = None
    #: why a better source of received_at was passed over (an implausible date)
    received_note: str | None = None


class Stored(StrEnum):
    """What storing one copy of a mail did."""

    NEW = "new"              # a new logical mail
    COPY = "copy"            # a new raw copy of a mail already stored
    DUPLICATE = "duplicate"  # this very copy was stored before: nothing added
    QUARANTINED = "quarantined"  # new, but quarantined on arrival


@dataclass(frozen=True)
class StoreResult:
    outcome: Stored
    message_pk: int
    historical: bool


@dataclass
class _Prepared:
    item: Incoming
    sha256: str
    info: HeaderInfo | None
    error: BaseException | None
    error_tb: str | None

    @property
    def identity(self) -> str:
        if self.info is not None:
            return self.info.identity
        return hashlib.sha256(b"unreadable\0" + self.item.raw).hexdigest()


def _prepare(item: Incoming) -> _Prepared:
    sha = hashlib.sha256(item.raw).hexdigest()
    try:
        info = read_headers(item.raw, split_headers(item.raw))
        return _Prepared(item, sha, info, None, None)
    except Exception as exc:  # a bug in header reading must not lose the mail
        return _Prepared(item, sha, None, exc, traceback.format_exc())


def existing_copies(
    conn: Connection, source: str, keys: Sequence[str]
) -> dict[str, tuple[int, bool]]:
    """source_key -> (message pk, historical) for copies already stored."""
    found: dict[str, tuple[int, bool]] = {}
    for i in range(0, len(keys), 500):
        part = list(keys[i : i + 500])
        rows = conn.execute(
            sa.select(RAW_COPY.c.source_key, RAW_COPY.c.message_pk, MESSAGE.c.historical)
            .join(MESSAGE, MESSAGE.c.id == RAW_COPY.c.message_pk)
            .where(RAW_COPY.c.source == source, RAW_COPY.c.source_key.in_(part))
        )
        found.update((r[0], (r[1], bool(r[2]))) for r in rows)
    return found


def store(conn: Connection, items: Sequence[Incoming], now: datetime) -> list[StoreResult]:
    """Store raw copies (inside the caller's transaction); one result per item."""
    results: list[StoreResult | None] = [None] * len(items)
    later_dups: list[tuple[int, int]] = []  # (index, index of the first with that key)

    # 1. copies already stored from the same source
    by_source: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        by_source.setdefault(item.source, []).append(i)
    first_with_key: dict[tuple[str, str], int] = {}
    todo: list[int] = []
    for source, idxs in by_source.items():
        stored = existing_copies(conn, source, [items[i].source_key for i in idxs])
        for i in idxs:
            key = (source, items[i].source_key)
            if key[1] in stored:
                pk, hist = stored[key[1]]
                results[i] = StoreResult(Stored.DUPLICATE, pk, hist)
            elif key in first_with_key:
                later_dups.append((i, first_with_key[key]))
            else:
                first_with_key[key] = i
                todo.append(i)
    todo.sort()
    if not todo:
        return _finish(results, later_dups)

    prepared = {i: _prepare(items[i]) for i in todo}

    # 2. blobs (content-addressed)
    insert_ignore(
        conn,
        BLOB,
        [{"sha256": p.sha256, "size": len(p.item.raw), "data": p.item.raw} for p in prepared.values()],
        ["sha256"],
    )

    # 3. logical mails: known ones, then new ones
    identities = list({p.identity for p in prepared.values()})
    known: dict[str, tuple[int, bool]] = {}
    for j in range(0, len(identities), 500):
        part = identities[j : j + 500]
        for row in conn.execute(
            sa.select(MESSAGE.c.identity, MESSAGE.c.id, MESSAGE.c.historical).where(
                MESSAGE.c.identity.in_(part)
            )
        ):
            known[row[0]] = (row[1], bool(row[2]))
    new_rows: list[dict[str, object]] = []
    new_identities: list[str] = []
    for i in todo:
        p = prepared[i]
        if p.identity in known or p.identity in new_identities:
            continue
        new_identities.append(p.identity)
        new_rows.append(_message_row(p, now))
    if new_rows:
        inserted = conn.execute(
            sa.insert(MESSAGE).returning(
                MESSAGE.c.id, MESSAGE.c.identity, sort_by_parameter_order=True
            ),
            new_rows,
        ).all()
        for (pk, ident), new_row in zip(inserted, new_rows, strict=True):
            known[ident] = (pk, bool(new_row["historical"]))
    created = set(new_identities)

    # 4. raw copies, quarantine rows
    copy_rows = []
    quarantine_rows = []
    for i in todo:
        p = prepared[i]
        pk, historical = known[p.identity]
        item = p.item
        copy_rows.append(
            {
                "message_pk": pk,
                "source": item.source,
                "source_key": item.source_key,
                "mailbox": item.mailbox,
                "uidvalidity": item.uidvalidity,
                "uid": item.uid,
                "sha256": p.sha256,
                "size": len(item.raw),
                "truncated_from": item.truncated_from,
                "received_at": item.received_at,
                "received_source": item.received_source.value,
                "received_note": item.received_note,
                "stored_at": now,
                "post_action": item.post_action,
                "post_action_done_at": None,
            }
        )
        first_of_identity = p.identity in created
        if first_of_identity:
            created.discard(p.identity)
            if p.error is not None:
                quarantine_rows.append(
                    _quarantine_row(pk, Stage.HEADERS, p.error, p.error_tb, now)
                )
                results[i] = StoreResult(Stored.QUARANTINED, pk, historical)
            elif item.quarantine_reason:
                quarantine_rows.append(
                    {
                        "message_pk": pk,
                        "stage": Stage.FETCH.value,
                        "error_type": "TooLarge",
                        "error": item.quarantine_reason,
                        "traceback": None,
                        "created_at": now,
                        "attempts": 1,
                        "resolved_at": None,
                    }
                )
                results[i] = StoreResult(Stored.QUARANTINED, pk, historical)
            else:
                results[i] = StoreResult(Stored.NEW, pk, historical)
        else:
            results[i] = StoreResult(Stored.COPY, pk, historical)
    conn.execute(sa.insert(RAW_COPY), copy_rows)
    if quarantine_rows:
        conn.execute(sa.insert(QUARANTINE), quarantine_rows)
    return _finish(results, later_dups)


def _finish(
    results: list[StoreResult | None], later_dups: list[tuple[int, int]]
) -> list[StoreResult]:
    for i, first in later_dups:
        r = results[first]
        assert r is not None
        results[i] = StoreResult(Stored.DUPLICATE, r.message_pk, r.historical)
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def _message_row(p: _Prepared, now: datetime) -> dict[str, object]:
    item, info = p.item, p.info
    quarantined = info is None or item.quarantine_reason is not None
    state = MessageState.QUARANTINED if quarantined else MessageState.HEADERS_READ
    base: dict[str, object] = {
        "identity": p.identity,
        "received_at": item.received_at,
        "received_source": item.received_source.value,
        "received_note": item.received_note,
        "state": state.value,
        "historical": item.historical,
        "stored_at": now,
        "state_changed_at": now,
        "primary_sha256": p.sha256,
    }
    if info is None:
        return base | {
            "message_id": f"<{p.sha256[:40]}@{DERIVED_MSGID_DOMAIN}>",
            "message_id_derived": True,
            "from_addr": None,
            "from_name": None,
            "from_strict": False,
            "subject": None,
            "date_at": None,
            "in_reply_to": None,
            "refs": None,
        }
    return base | header_columns(info)


def header_columns(info: HeaderInfo) -> dict[str, object]:
    """The message columns that come from its headers."""
    return {
        "identity": info.identity,
        "message_id": info.message_id,
        "message_id_derived": info.message_id_derived,
        "from_addr": (info.from_addr or "")[:320] or None,
        "from_name": info.from_name,
        "from_strict": info.from_strict,
        "subject": info.subject,
        "date_at": info.date_at,
        "in_reply_to": " ".join(info.in_reply_to) or None,
        "refs": " ".join(info.references) or None,
    }


def _quarantine_row(
    pk: int, stage: Stage, exc: BaseException, tb: str | None, now: datetime
) -> dict[str, object]:
    return {
        "message_pk": pk,
        "stage": stage.value,
        "error_type": type(exc).__name__,
        "error": str(exc) or type(exc).__name__,
        "traceback": tb,
        "created_at": now,
        "attempts": 1,
        "resolved_at": None,
    }


@dataclass
class Tally:
    """What a sync or reprocess did, for its one-line summary."""

    seen: int = 0
    new: int = 0
    copies: int = 0
    duplicate: int = 0
    historical: int = 0
    quarantined: int = 0

    def add(self, results: Sequence[StoreResult]) -> None:
        for r in results:
            self.seen += 1
            if r.outcome is Stored.NEW:
                self.new += 1
            elif r.outcome is Stored.COPY:
                self.copies += 1
            elif r.outcome is Stored.DUPLICATE:
                self.duplicate += 1
            else:
                self.quarantined += 1
            if r.historical and r.outcome in (Stored.NEW, Stored.QUARANTINED):
                self.historical += 1

    def summary(self) -> str:
        return (
            f"seen {self.seen}, new {self.new}, duplicate {self.duplicate + self.copies}"
            f" ({self.copies} new copies of known mail), historical {self.historical},"
            f" quarantined {self.quarantined}"
        )
