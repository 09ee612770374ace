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
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mailcase.core.backoff import delay
from mailcase.core.clock import Clock
from mailcase.core.errors import MessageError
from mailcase.core.log import kv
from mailcase.core.states import MessageState, Stage
from mailcase.domain.db import insert_ignore, is_outage, transaction
from mailcase.domain.tables import BLOB, MESSAGE, PARSED_MAIL, QUARANTINE, RAW_COPY
from mailcase.ingest.ledger import header_columns
from mailcase.ingest.quarantine import quarantine
from mailcase.mail.header_info import read_headers
from mailcase.mail.headers import split_headers
from mailcase.mail.parse_worker import Failure, parse_many, parse_one, prepare_process, worker_init

log = logging.getLogger(__name__)
#: a parse batch: at most this many mails and this many bytes of raw mail
BATCH_COUNT = 200
BATCH_BYTES = 4 * 1024 * 1024


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


class _StageFailure(MessageError):
    def __init__(self, failure: Failure) -> None:
        super().__init__(f"{failure.exc_type}: {failure.message}")
        self.failure = failure


@dataclass(frozen=True)
class _Batch:
    ids: list[int]
    raws: list[bytes]


def _claim_parse_batch(
    engine: Engine, limit: int, max_bytes: int, exclude: set[int] | None = None
) -> _Batch:
    """Up to ``limit`` messages waiting for the parse, at most ``max_bytes`` of raw mail."""
    with engine.connect() as conn:
        q = (
            sa.select(MESSAGE.c.id, MESSAGE.c.primary_sha256, BLOB.c.size)
            .join(BLOB, BLOB.c.sha256 == MESSAGE.c.primary_sha256)
            .where(MESSAGE.c.state == MessageState.HEADERS_READ.value)
            .order_by(MESSAGE.c.id)
            .limit(limit + len(exclude or ()))
        )
        picked: list[tuple[int, str]] = []
        total = 0
        for pk, sha, size in conn.execute(q):
            if exclude and pk in exclude:
                continue
            if picked and total + size > max_bytes:
                break
            picked.append((pk, sha))
            total += size
            if len(picked) >= limit:
                break
        blobs = _blobs(conn, [sha for _, sha in picked])
    return _Batch([pk for pk, _ in picked], [blobs.get(sha, b"") for _, sha in picked])


def _write_parsed(
    engine: Engine, ids: Sequence[int], outputs: Sequence[dict[str, Any] | Failure], now: datetime
) -> StageResult:
    """Store a batch's parses in one transaction; if the database refuses one
    row (not: is unreachable), store them one by one and quarantine that one."""
    try:
        return _write_parsed_together(engine, ids, outputs, now)
    except Exception as exc:
        if is_outage(exc) or len(ids) == 1:
            raise
        log.warning("event=parse-write-failed messages=%d error=%s action=one-by-one", len(ids),
                    kv(f"{type(exc).__name__}: {exc}"))
    result = StageResult()
    for pk, out in zip(ids, outputs, strict=True):
        try:
            result += _write_parsed_together(engine, [pk], [out], now)
        except Exception as exc:
            if is_outage(exc):
                raise
            with transaction(engine) as conn:
                quarantine(conn, pk, Stage.PARSE, exc, now, context="storing the parse")
            result.quarantined += 1
    return result


def _write_parsed_together(
    engine: Engine, ids: Sequence[int], outputs: Sequence[dict[str, Any] | Failure], now: datetime
) -> StageResult:
    result = StageResult()
    with transaction(engine) as conn:
        rows = []
        ok_ids = []
        for pk, out in zip(ids, outputs, strict=True):
            if isinstance(out, Failure):
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


def run_parse_batch(
    engine: Engine, now: datetime, limit: int = BATCH_COUNT, max_bytes: int = BATCH_BYTES,
    pin_key: bytes | None = None,
) -> StageResult:
    """Parse up to ``limit`` messages in ``headers-read``, in this process."""
    batch = _claim_parse_batch(engine, limit, max_bytes)
    if not batch.ids:
        return StageResult()
    prepare_process()  # as a pool worker is prepared (once per process)
    return _write_parsed(engine, batch.ids, [parse_one(raw, pin_key) for raw in batch.raws], now)


def run_parse_stage(engine: Engine, now: datetime, pin_key: bytes | None = None) -> StageResult:
    """Parse everything waiting, in this process."""
    total = StageResult()
    while True:
        r = run_parse_batch(engine, now, pin_key=pin_key)
        total += r
        if r.done + r.quarantined == 0:
            return total


class BackgroundParser:
    """The parse stage behind ingestion: a thread feeding a pool of worker processes.

    Storing never waits for parsing: the fetching thread stores raw mail and
    headers and pokes this parser, which claims batches of ``headers-read``
    mail (bounded by count and bytes, so memory stays flat whatever the
    mailbox size), has the pool parse them, and writes the results from this
    process: the workers never touch the database (a single writer).  Two
    batches are in flight so the workers do not wait for the writes.
    """

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        workers: int = 1,
        batch: int = BATCH_COUNT,
        batch_bytes: int = BATCH_BYTES,
        pin_key: bytes | None = None,
    ) -> None:
        self.pin_key = pin_key
        self.engine = engine
        self.clock = clock
        self.workers = workers
        self.batch = batch
        self.batch_bytes = batch_bytes
        self.result = StageResult()
        self.error: BaseException | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._asked = 0     # drain requests made
        self._answered = 0  # drain requests seen with nothing left to parse
        self._thread: threading.Thread | None = None
        self._pool: ProcessPoolExecutor | None = None
        #: when the parse loop last went round (the daemon's supervisor reads it)
        self.beat = time.monotonic()

    def __enter__(self) -> BackgroundParser:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self.workers > 0:
            self._new_pool()
        else:
            prepare_process()  # the parse thread parses in this process, as a pool worker would
        self._thread = threading.Thread(target=self._run, name="parse", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._wake.set()

    def drain(self, timeout: float | None = None) -> StageResult:
        """Wait until nothing stored is left unparsed (mail stored before this call)."""
        with self._cond:
            self._asked += 1
            target = self._asked
        self._wake.set()
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self._answered >= target or self.error is not None
                or not (self._thread and self._thread.is_alive()),
                timeout,
            )
        if self.error is not None:
            raise self.error
        if not ok:
            raise TimeoutError("parse stage did not drain in time")
        return self.result

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _new_pool(self) -> None:
        # forkserver: never fork a process that has threads and open connections
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["mailcase.mail.parse_worker"])
        # the workers exit when this process dies, even by SIGKILL (parse_worker.py)
        self._pool = ProcessPoolExecutor(
            self.workers, mp_context=ctx, initializer=worker_init,
            initargs=(logging.getLogger().level, os.getpid()),
        )

    def _one_by_one(self, batch: _Batch) -> list[dict[str, Any] | Failure]:
        """A worker process died on this batch (a crash, the memory limit): each mail
        alone in a fresh pool, and the one that kills a worker again is quarantined."""
        outputs: list[dict[str, Any] | Failure] = []
        for pk, raw in zip(batch.ids, batch.raws, strict=True):
            if self._pool is None or getattr(self._pool, "_broken", False):
                if self._pool is not None:
                    self._pool.shutdown(wait=False, cancel_futures=True)
                self._new_pool()
            assert self._pool is not None
            try:
                outputs.extend(self._pool.submit(parse_many, [raw], self.pin_key).result())
            except BrokenProcessPool as exc:
                log.error("event=parse-worker-died message=%s", pk)
                outputs.append(Failure(MessageError(f"the parse worker process died on this mail ({exc})")))
        return outputs

    def _submit(self, batch: _Batch) -> list[Future[list[dict[str, Any] | Failure]]]:
        if self._pool is None or getattr(self._pool, "_broken", False):
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
            self._new_pool()
        assert self._pool is not None
        n = max(1, min(self.workers, len(batch.raws)))
        size = -(-len(batch.raws) // n)
        return [
            self._pool.submit(parse_many, batch.raws[i : i + size], self.pin_key)
            for i in range(0, len(batch.raws), size)
        ]

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._loop()
                return
            except BaseException as exc:
                if not is_outage(exc) or self._stop.is_set():
                    # reported to drain(); the daemon logs it and starts a new parser
                    log.exception("event=parse-stage-failed")
                    self.error = exc
                    with self._cond:
                        self._cond.notify_all()
                    return
                # the database went away: what was in flight is parsed again later
                failures += 1
                log.warning("event=parse-stage-waiting error=%s", kv(exc))
                self._stop.wait(delay(failures, 0.5, 5.0))
            else:
                failures = 0

    def _loop(self) -> None:
        in_flight: deque[tuple[_Batch, list[Future[list[dict[str, Any] | Failure]]]]] = deque()
        busy: set[int] = set()
        try:
            while not self._stop.is_set():
                self.beat = time.monotonic()
                with self._cond:
                    asked = self._asked
                # keep two batches in the pool
                while len(in_flight) < 2:
                    batch = _claim_parse_batch(self.engine, self.batch, self.batch_bytes, busy)
                    if not batch.ids:
                        break
                    busy.update(batch.ids)
                    if self._pool is None:
                        self.result += _write_parsed(
                            self.engine, batch.ids, parse_many(batch.raws, self.pin_key),
                            self.clock.now(),
                        )
                        busy.difference_update(batch.ids)
                        continue
                    in_flight.append((batch, self._submit(batch)))
                if in_flight:
                    batch, futures = in_flight.popleft()
                    try:
                        outputs = [out for f in futures for out in f.result()]
                    except BrokenProcessPool:
                        outputs = self._one_by_one(batch)
                    self.result += _write_parsed(self.engine, batch.ids, outputs, self.clock.now())
                    busy.difference_update(batch.ids)
                    continue
                with self._cond:
                    self._answered = max(self._answered, asked)
                    self._cond.notify_all()
                self._wake.wait(1.0)
                self._wake.clear()
        finally:
            for _, futures in in_flight:
                for f in futures:
                    f.cancel()
            with self._cond:
                self._cond.notify_all()


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
