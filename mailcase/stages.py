"""The stages after storage, each a loop over messages in one state.

* headers: ``stored`` -> ``headers-read`` (only for mail put back by a
  quarantine retry or re-fetched in full: ingestion reads headers itself);
* parse: ``headers-read`` -> ``parsed``.

A stage reads a batch, does the work outside any transaction (the parse can
run in a pool of worker processes), and writes the batch's results in one
transaction from this process: a single database writer.  A message that
fails is quarantined with its error; the rest of the batch goes on.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mailcase.db import insert_ignore, transaction
from mailcase.errors import MessageError
from mailcase.headers import read_headers, split_headers
from mailcase.ledger import BLOB, MESSAGE, QUARANTINE, RAW_COPY, header_columns
from mailcase.models import ParsedMail
from mailcase.parse import parse_email
from mailcase.quarantine import quarantine
from mailcase.states import MessageState, Stage

log = logging.getLogger(__name__)
PARSED_MAIL = ParsedMail.__table__  # type: ignore[attr-defined]


@dataclass
class StageResult:
    done: int = 0
    quarantined: int = 0

    def __iadd__(self, other: StageResult) -> StageResult:
        self.done += other.done
        self.quarantined += other.quarantined
        return self


def _claim(conn: Connection, state: MessageState, limit: int) -> list[tuple[int, str]]:
    rows = conn.execute(
        sa.select(MESSAGE.c.id, MESSAGE.c.primary_sha256)
        .where(MESSAGE.c.state == state.value)
        .order_by(MESSAGE.c.id)
        .limit(limit)
    ).all()
    return [(r[0], r[1]) for r in rows]


def _blobs(conn: Connection, shas: Sequence[str]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for i in range(0, len(shas), 200):
        for sha, data in conn.execute(
            sa.select(BLOB.c.sha256, BLOB.c.data).where(BLOB.c.sha256.in_(list(shas[i : i + 200])))
        ):
            out[sha] = data if data is not None else b""
    return out


# -- parse ------------------------------------------------------------------------


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc_type = type(exc).__name__
        self.message = str(exc) or self.exc_type
        self.traceback = traceback.format_exc()


def parse_one(raw: bytes) -> dict[str, Any] | _Failure:
    """Worker function (top level, picklable): raw bytes -> parsed_mail columns."""
    try:
        p = parse_email(raw)
    except Exception as exc:
        return _Failure(exc)
    return {
        "parser": p.parser,
        "to_addrs": list(p.to),
        "cc_addrs": list(p.cc),
        "reply_to": list(p.reply_to),
        "text_body": p.text_body,
        "body_from_html": p.body_from_html,
        "attachments": [a.as_dict() for a in p.attachments],
        "defects": list(p.defects),
    }


class _StageFailure(MessageError):
    def __init__(self, failure: _Failure) -> None:
        super().__init__(f"{failure.exc_type}: {failure.message}")
        self.failure = failure


def run_parse_batch(
    engine: Engine,
    now: datetime,
    limit: int = 200,
    mapper: Callable[[Callable[[bytes], Any], list[bytes]], Any] | None = None,
) -> StageResult:
    """Parse up to ``limit`` messages in ``headers-read``."""
    with engine.connect() as conn:
        claimed = _claim(conn, MessageState.HEADERS_READ, limit)
        blobs = _blobs(conn, [sha for _, sha in claimed])
    if not claimed:
        return StageResult()
    raws = [blobs.get(sha, b"") for _, sha in claimed]
    outputs = list((mapper or map)(parse_one, raws))
    result = StageResult()
    with transaction(engine) as conn:
        rows = []
        ok_ids = []
        for (pk, _), out in zip(claimed, outputs, strict=True):
            if isinstance(out, _Failure):
                quarantine(conn, pk, Stage.PARSE, _StageFailure(out), now)
                result.quarantined += 1
                continue
            rows.append({"message_pk": pk, "parsed_at": now, **out})
            ok_ids.append(pk)
        insert_ignore(conn, PARSED_MAIL, rows, ["message_pk"])
        if ok_ids:
            conn.execute(
                sa.update(MESSAGE)
                .where(MESSAGE.c.id.in_(ok_ids), MESSAGE.c.state == MessageState.HEADERS_READ.value)
                .values(state=MessageState.PARSED.value, state_changed_at=now)
            )
        result.done += len(ok_ids)
    return result


def run_parse_stage(
    engine: Engine, now: datetime, executor: Executor | None = None, batch: int = 200
) -> StageResult:
    """Parse everything waiting; with an executor, in its worker processes."""
    total = StageResult()
    mapper = None
    if executor is not None:
        def mapper(fn: Callable[[bytes], Any], items: list[bytes]) -> Any:
            return executor.map(fn, items, chunksize=max(1, len(items) // 16))
    while True:
        r = run_parse_batch(engine, now, batch, mapper)
        total += r
        if r.done + r.quarantined == 0:
            return total


# -- headers (re-read after a retry) -----------------------------------------------


def run_headers_stage(engine: Engine, now: datetime) -> StageResult:
    """Re-read headers of mail in ``stored`` (put back by a retry)."""
    result = StageResult()
    with engine.connect() as conn:
        claimed = _claim(conn, MessageState.STORED, 500)
        # a truncated (over-size) copy waits for its mailbox's sync to fetch it in full
        truncated = {
            r[0]
            for r in conn.execute(
                sa.select(RAW_COPY.c.message_pk).where(
                    RAW_COPY.c.message_pk.in_([pk for pk, _ in claimed]),
                    RAW_COPY.c.sha256 == sa.select(MESSAGE.c.primary_sha256).where(
                        MESSAGE.c.id == RAW_COPY.c.message_pk
                    ).scalar_subquery(),
                    RAW_COPY.c.truncated_from.is_not(None),
                )
            )
        }
        claimed = [(pk, sha) for pk, sha in claimed if pk not in truncated]
        blobs = _blobs(conn, [sha for _, sha in claimed])
    for pk, sha in claimed:
        raw = blobs.get(sha, b"")
        with transaction(engine) as conn:
            try:
                info = read_headers(raw, split_headers(raw))
            except Exception as exc:
                quarantine(conn, pk, Stage.HEADERS, exc, now)
                result.quarantined += 1
                continue
            other = conn.execute(
                sa.select(MESSAGE.c.id).where(
                    MESSAGE.c.identity == info.identity, MESSAGE.c.id != pk
                )
            ).first()
            if other is not None:
                # now complete, it turns out to be a copy of a mail already stored
                conn.execute(
                    sa.update(RAW_COPY).where(RAW_COPY.c.message_pk == pk).values(message_pk=other[0])
                )
                conn.execute(sa.delete(PARSED_MAIL).where(PARSED_MAIL.c.message_pk == pk))
                conn.execute(sa.delete(QUARANTINE).where(QUARANTINE.c.message_pk == pk))
                conn.execute(sa.delete(MESSAGE).where(MESSAGE.c.id == pk))
                result.done += 1
                continue
            conn.execute(
                sa.update(MESSAGE)
                .where(MESSAGE.c.id == pk)
                .values(
                    **header_columns(info),
                    state=MessageState.HEADERS_READ.value,
                    state_changed_at=now,
                )
            )
            result.done += 1
    return result
