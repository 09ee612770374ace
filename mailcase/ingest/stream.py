"""Storing a stream of incoming mail (files, a Maildir, a re-read mailbox) chunk by chunk.

Each chunk is one transaction; a dry run stores it in a transaction that is
rolled back, so it counts what would be new without writing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime

from sqlalchemy.engine import Engine

from mailcase.domain.db import WRITE, transaction
from mailcase.domain.lease import Lease
from mailcase.ingest.ledger import Incoming, StoreResult, Tally, store

Progress = Callable[[int], None]


def store_chunk(
    engine: Engine, items: Sequence[Incoming], now: datetime, dry_run: bool
) -> list[StoreResult]:
    if not dry_run:
        with transaction(engine) as conn:
            return store(conn, items, now)
    with engine.connect() as conn:
        conn = conn.execution_options(**{WRITE: True})
        trans = conn.begin()
        try:
            return store(conn, items, now)
        finally:
            trans.rollback()


def _chunks(items: Iterator[Incoming], count: int, max_bytes: int) -> Iterator[list[Incoming]]:
    chunk: list[Incoming] = []
    total = 0
    for item in items:
        chunk.append(item)
        total += len(item.raw)
        if len(chunk) >= count or total >= max_bytes:
            yield chunk
            chunk, total = [], 0
    if chunk:
        yield chunk


def store_stream(
    engine: Engine,
    items: Iterator[Incoming],
    now: datetime,
    *,
    dry_run: bool = False,
    chunk_count: int = 500,
    chunk_bytes: int = 16 * 1024 * 1024,
    progress: Progress | None = None,
    lease: Lease | None = None,
) -> Tally:
    tally = Tally()
    for chunk in _chunks(items, chunk_count, chunk_bytes):
        tally.add(store_chunk(engine, chunk, now, dry_run))
        if lease:
            lease.renew_if_due()
        if progress:
            progress(len(chunk))
    return tally
