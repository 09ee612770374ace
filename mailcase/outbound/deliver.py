"""Delivery: claim queued outbox rows in groups, hand them to a transport, record each result.

A sender claims a group of due rows in one transaction (``queued -> sending``)
so a second sender passes them by, then sends them one by one over one
connection (kept open from group to group while rows are due); the outbox's
policy may hold a row back (outbox.py: suppressed, capped); the transport sends
it with our VERP envelope sender.  A transient failure puts the row back in the
queue with a backoff; anything else fails it.  A sent acknowledgement, notice,
reply or resolution is recorded on its cases (the receipt, the first human
response the promise measures).

What "in flight" means.  A mail is in flight from the moment the server may
have accepted it (the end of its data) until its "sent" mark is committed.
Each mark is committed as soon as the server accepts the mail, on a thread of
its own while the next mail's envelope and data go out, and the transport
waits for it before it ends that next mail's data; so at most one mail is
ever in flight, and a crash of the sender (killed, an exception, out of
memory) re-sends at most that one.  The marks are quick commits
(``QuickCommits``: in the database's log when they return, synced to disk by
the group's last one or its next ordinary commit), so only a power cut or a
crash of the database's machine can lose more: the marks of one group, at
most ``GROUP`` mails re-sent.  A claimed row never handed to the server is
released (queued again, the attempt not counted) when the run stops early;
after a crash it waits like any claim for ``STALE_CLAIM``, then goes out.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mailcase.config.settings import Config
from mailcase.core.backoff import delay
from mailcase.core.errors import DatabaseUnavailable, TransientError
from mailcase.core.log import kv
from mailcase.core.states import HUMAN_RESPONSE_KINDS, CaseEventKind, CaseStatus, MailKind, OutboxStatus, notice_kind
from mailcase.domain import service_state
from mailcase.domain.cases import event
from mailcase.domain.db import QuickCommits, is_outage, transaction
from mailcase.domain.tables import CASE, OUTBOX
from mailcase.mail.msgid import verp_address
from mailcase.outbound.outbox import Policy
from mailcase.outbound.smtp import PermanentDeliveryError
from mailcase.outbound.transport import Transport
from mailcase.rules.base import Notice

log = logging.getLogger(__name__)


@dataclass
class DeliveryResult:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    capped: int = 0
    suppressed: int = 0
    errors: list[str] = field(default_factory=list)
    #: stopped at its time budget or row limit with rows still due: call again soon
    #: (the transport was left open for that call)
    more: bool = False


RETRY_BASE = timedelta(minutes=1)
RETRY_MAX = timedelta(hours=1)
#: a claim this old belongs to a sender that died mid-delivery
STALE_CLAIM = timedelta(minutes=10)
#: rows claimed in one transaction: one synced commit per group rather than two per
#: mail, and the most a power cut can re-send (see the module's docstring)
GROUP = 100
#: ``service_state`` key: since when delivery has failed (a pass deferred mail and sent none),
#: cleared by the next mail sent; shown by ``status``
SMTP_FAILING_KEY = "smtp-failing"


def backoff(attempts: int, rng: random.Random | None = None) -> timedelta:
    """When a deferred row is tried again (exponential, capped at an hour, jittered)."""
    return timedelta(seconds=delay(attempts, RETRY_BASE.total_seconds(), RETRY_MAX.total_seconds(), rng))


#: a first answer on a case of these kinds is its receipt
RECEIPTS: tuple[str, ...] = (MailKind.ACK.value, notice_kind(Notice.HOLD), notice_kind(Notice.OUT_OF_SCOPE))


#: runs one of ``_statements()`` with its parameters, giving its rowcount
Run = Callable[[Any, dict[str, Any]], int]


def _mark_sent(conn: Connection, row: Any, now: datetime, run: Run | None = None) -> None:
    """Record ``row`` as sent, and on its cases: a first answer on a case (ack, hold or
    out-of-scope notice) is its receipt; an acknowledgement makes a new (or released)
    case acknowledged; a staff reply or the resolution is the first human response the
    promise measures."""
    st = _statements()
    execute: Run = run or (lambda stmt, params: int(conn.execute(stmt, params).rowcount))
    execute(st.sent, {"p_id": row.id, "p_at": now})
    if row.kind in RECEIPTS:
        for case_id in row.case_ids or []:
            if execute(st.receipt, {"p_case": case_id, "p_at": now}):
                event(conn, case_id, now, "mailcase", CaseEventKind.RECEIPT_SENT, f"{row.kind} to {row.to_addr}")
            if row.kind == MailKind.ACK:
                execute(st.acknowledged, {"p_case": case_id})
    elif row.kind in HUMAN_RESPONSE_KINDS:
        for case_id in row.case_ids or []:
            if execute(st.responded, {"p_case": case_id, "p_at": now}):
                event(conn, case_id, now, "mailcase", CaseEventKind.FIRST_RESPONSE, f"{row.kind} sent to {row.to_addr}")


class _Driver:
    """The statements of a "sent" mark run on the driver's own cursor, compiled once.

    SQLAlchemy's execution of a statement costs some 150 us of CPU beside the 30
    the statement itself takes on SQLite, and a mark runs two to four of them per
    mail: most of what delivery added to sending.  Only these simple updates go
    this way (their one non-trivial type, the timestamp, bound as SQLAlchemy would);
    the transaction is still SQLAlchemy's.
    """

    def __init__(self, dialect: Any, now: datetime) -> None:
        st = _statements()
        self._compiled = {id(stmt): stmt.compile(dialect=dialect)
                          for stmt in (st.sent, st.receipt, st.acknowledged, st.responded)}
        # the values the statements carry themselves (the statuses), once
        self._base = {key: c.construct_params({"p_id": 0, "p_at": None, "p_case": 0})
                      for key, c in self._compiled.items()}
        bind = OUTBOX.c.sent_at.type.dialect_impl(dialect).bind_processor(dialect)
        self._at = bind(now) if bind is not None else now
        self._errors = dialect.loaded_dbapi.OperationalError

    def run(self, conn: Connection) -> Run:
        def execute(stmt: Any, params: dict[str, Any]) -> int:
            compiled = self._compiled[id(stmt)]
            values = {**self._base[id(stmt)], **params}
            if "p_at" in values:
                values["p_at"] = self._at
            args: Any = tuple(values[k] for k in compiled.positiontup or ()) if compiled.positional else values
            driver: Any = conn.connection.driver_connection
            cursor = driver.cursor()
            try:
                cursor.execute(str(compiled), args)
                return int(cursor.rowcount)
            except self._errors as exc:  # as SQLAlchemy would say it: the database is away or busy
                raise DatabaseUnavailable(f"database: {exc}") from exc
            finally:
                cursor.close()
        return execute


@dataclass(frozen=True)
class _Statements:
    """The statements delivery runs per mail or per group, built once with bound parameters.

    Building a SQLAlchemy statement and its cache key costs more than running
    it on SQLite: delivery ran some ten of them per mail, at 4 ms of CPU.
    """

    due: Any
    claim: Any
    claim_verp: Any
    claimed: Any
    sent: Any
    release: Any
    receipt: Any
    acknowledged: Any
    responded: Any


@lru_cache(maxsize=1)
def _statements() -> _Statements:
    rid: Any = sa.bindparam("p_id")
    case: Any = sa.bindparam("p_case")
    claim = sa.update(OUTBOX).where(OUTBOX.c.id == sa.bindparam("p_row"), OUTBOX.c.status == OutboxStatus.QUEUED.value)\
        .values(status=OutboxStatus.SENDING.value, attempts=OUTBOX.c.attempts + 1, claimed_at=sa.bindparam("p_at"))
    return _Statements(
        due=sa.select(OUTBOX.c.id).where(
            OUTBOX.c.status == OutboxStatus.QUEUED.value, OUTBOX.c.next_attempt_at <= sa.bindparam("p_at")
        ).order_by(OUTBOX.c.id).limit(sa.bindparam("p_size")).with_for_update(skip_locked=True),
        claim=claim,
        claim_verp=claim.values(envelope_from=sa.bindparam("p_env")),
        claimed=sa.select(*_SENT_COLUMNS).where(
            OUTBOX.c.id.in_(sa.bindparam("p_ids", expanding=True)), OUTBOX.c.status == OutboxStatus.SENDING.value,
        ).order_by(OUTBOX.c.id),
        sent=sa.update(OUTBOX).where(OUTBOX.c.id == rid).values(
            status=OutboxStatus.SENT.value, sent_at=sa.bindparam("p_at"), last_error=None),
        # a claim given back unused: the attempt it counted never happened
        release=sa.update(OUTBOX).where(OUTBOX.c.id == sa.bindparam("p_row"),
                                        OUTBOX.c.status == OutboxStatus.SENDING.value)
        .values(status=OutboxStatus.QUEUED.value, attempts=OUTBOX.c.attempts - 1, claimed_at=None),
        receipt=sa.update(CASE).where(CASE.c.id == case, CASE.c.receipt_sent_at.is_(None))
        .values(receipt_sent_at=sa.bindparam("p_at")),
        acknowledged=sa.update(CASE).where(CASE.c.id == case, CASE.c.status == CaseStatus.NEW.value)
        .values(status=CaseStatus.ACKNOWLEDGED.value),
        responded=sa.update(CASE).where(CASE.c.id == case, CASE.c.first_response_at.is_(None))
        .values(first_response_at=sa.bindparam("p_at")),
    )


def release_stale_claims(engine: Engine, now: datetime) -> int:
    """Rows left "sending" by a sender that died: back in the queue.

    Of them, only the one that was in flight can go out twice: the server had
    accepted it but the sender died before recording that.  The others of its
    group were never handed over.  Everything else (re-runs, retries, several
    senders) is kept to once by the key and the claim.
    """
    with transaction(engine) as conn:
        return int(conn.execute(
            sa.update(OUTBOX).where(OUTBOX.c.status == OutboxStatus.SENDING.value,
                                    OUTBOX.c.claimed_at < now - STALE_CLAIM)
            .values(status=OutboxStatus.QUEUED.value, next_attempt_at=now,
                    last_error="sender died during delivery; retried")
        ).rowcount)


#: rows the server accepted whose "sent" this process could not record (the
#: database was away at that moment): recorded before anything else on the next
#: run, so a blip of the database never sends a mail twice
_accepted: dict[int, tuple[Any, datetime]] = {}
_accepted_lock = threading.Lock()


def _record_accepted(engine: Engine) -> int:
    with _accepted_lock:
        pending = dict(_accepted)
    if not pending:
        return 0
    with transaction(engine) as conn:
        for row, at in pending.values():
            _mark_sent(conn, row, at)
    with _accepted_lock:
        for row_id in pending:
            _accepted.pop(row_id, None)
    log.info("event=sent-recorded-late rows=%d", len(pending))
    return len(pending)


def deliver_due(
    engine: Engine, transport: Transport, now: datetime, config: Config | None = None,
    limit: int | None = None, budget: float | None = None,
) -> DeliveryResult:
    """Send queued rows whose time has come, oldest first, a claimed group at a time
    over one connection: until none is due, or ``limit`` rows were claimed, or
    ``budget`` seconds passed (at least one mail is sent).  Stopped early with
    rows still due, ``result.more`` is set and the transport stays open for the
    next call; otherwise it is closed."""
    result = DeliveryResult()
    _record_accepted(engine)
    release_stale_claims(engine, now)
    key = config.hmac_key() if config else None
    deadline = None if budget is None else time.monotonic() + budget
    claimed = 0
    handled = False
    try:
        with QuickCommits(engine) as marks:
            while True:
                if limit is not None and claimed >= limit:
                    result.more = True
                    break
                size = GROUP if limit is None else min(GROUP, limit - claimed)
                rows, policy = _claim(engine, size, now, config, key)
                claimed += len(rows)
                if not _send_group(engine, transport, marks, rows, policy, now, result, deadline):
                    result.more = True
                    break
                if len(rows) < size:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    result.more = True
                    break
        handled = True
    finally:
        if not (handled and result.more):
            _close(transport)
    if result.sent or result.retried:
        _note_failing(engine, result, now)
    if claimed:
        log.info("event=outbox-progress sent=%d deferred=%d failed=%d capped=%d suppressed=%d transport=%s more=%s",
                 result.sent, result.retried, result.failed, result.capped, result.suppressed, transport.name,
                 result.more)
    return result


def _close(transport: Transport) -> None:
    close = getattr(transport, "close", None)
    if close is not None:
        close()


@dataclass
class _Claimed:
    row: Any
    #: the envelope sender it goes out with (our VERP address for it)
    envelope: str


#: what sending a row and recording it needs (not its timestamps, subject or key: reading
#: fewer columns is most of a group's claim)
_SENT_COLUMNS = (OUTBOX.c.id, OUTBOX.c.kind, OUTBOX.c.case_id, OUTBOX.c.case_ids, OUTBOX.c.message_pk,
                 OUTBOX.c.to_addr, OUTBOX.c.envelope_from, OUTBOX.c.raw, OUTBOX.c.attempts)


def _claim(engine: Engine, size: int, now: datetime, config: Config | None,
           key: bytes | None) -> tuple[list[_Claimed], Policy | None]:
    """Claim up to ``size`` due rows in one transaction, give them our VERP envelope
    and read the policy they are judged by.  On PostgreSQL, rows another sender is
    claiming at the same moment are skipped, not waited for."""
    st = _statements()
    with transaction(engine) as conn:
        ids = conn.execute(st.due, {"p_at": now, "p_size": size}).scalars().all()
        if not ids:
            return [], None
        if key is not None and config is not None:
            base = config.outgoing.bounce_base
            conn.execute(st.claim_verp, [{"p_row": i, "p_at": now, "p_env": verp_address(key, base, i)} for i in ids])
        else:
            conn.execute(st.claim, [{"p_row": i, "p_at": now} for i in ids])
        rows = [_Claimed(r, r.envelope_from) for r in conn.execute(st.claimed, {"p_ids": ids})]
        policy = Policy.read(conn, [c.row for c in rows], config, now) if config is not None else None
    return rows, policy


def _send_group(
    engine: Engine, transport: Transport, marks: QuickCommits, rows: list[_Claimed], policy: Policy | None,
    now: datetime, result: DeliveryResult, deadline: float | None,
) -> bool:
    """Send a claimed group in order; False when the budget ran out first.  Rows not
    handed to the transport (the budget, an exception) are released."""
    recorder = _Recorder(marks, now, result, transport.name)
    done = 0
    try:
        for claimed in rows:
            if deadline is not None and time.monotonic() >= deadline and (result.sent or done):
                return False
            done += 1  # from here on the row is the transport's (or held back)
            _deliver_one(engine, transport, recorder, claimed, policy, now, result, last=done == len(rows))
        return True
    finally:
        try:
            recorder.settle()
        finally:
            recorder.close()
            unsent = rows[done:]
            if recorder.broken and done and rows[done - 1].row.id not in recorder.unrecorded:
                # the previous mail's mark failed before this one could be accepted
                unsent = rows[done - 1:]
            if unsent:
                _release(engine, [c.row.id for c in unsent])


def _release(engine: Engine, ids: list[int]) -> None:
    try:
        with transaction(engine) as conn:
            conn.execute(_statements().release, [{"p_row": i} for i in ids])
    except Exception as exc:  # the database is away: they are released as stale claims later
        log.warning("event=claims-not-released rows=%d error=%s", len(ids), kv(exc))


class _Recorder:
    """Records each mail the server accepted ("sent", its receipts) on a thread of its
    own, while the next mail is handed over: its MAIL FROM, RCPT and data go out
    meanwhile, and the transport waits for the record (:meth:`settle`) only before
    the end of the data, which is when the server can accept it.  So one mail at
    most is ever in flight, and recording costs the sender almost no time.  Any
    other write of the group settles first; the group's last mark is synced."""

    def __init__(self, marks: QuickCommits, now: datetime, result: DeliveryResult, transport_name: str) -> None:
        self.marks, self.now, self.result, self.transport_name = marks, now, result, transport_name
        self.driver = _Driver(marks.engine.dialect, now)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailcase-sent")
        self._job: tuple[Future[None], _Claimed] | None = None
        #: a mark could not be written (the database is away): the run stops
        self.broken = False
        #: the rows whose marks could not be written (kept in ``_accepted`` for the next run)
        self.unrecorded: set[int] = set()

    def accepted(self, claimed: _Claimed, durable: bool) -> None:
        """The server accepted ``claimed``: record it (in the background)."""
        self.settle()  # a transport that did not call it: never two records at once
        self._job = (self._pool.submit(self._write, claimed, durable), claimed)

    def _write(self, claimed: _Claimed, durable: bool) -> None:
        with self.marks.transaction(durable=durable) as conn:
            _mark_sent(conn, claimed.row, self.now, self.driver.run(conn))

    def settle(self) -> None:
        """Wait until the mail accepted last is recorded (raises what recording it raised)."""
        job, self._job = self._job, None
        if job is None:
            return
        future, claimed = job
        row = claimed.row
        try:
            future.result()
        except Exception as exc:
            self.broken = True
            self.unrecorded.add(row.id)
            if is_outage(exc):
                with _accepted_lock:
                    _accepted[row.id] = (row, self.now)
            raise
        self.result.sent += 1
        log.debug("event=sent outbox=%s kind=%s case=%s message=%s to=%s transport=%s",
                  row.id, row.kind, row.case_id or "-", row.message_pk or "-", kv(row.to_addr), self.transport_name)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _deliver_one(
    engine: Engine, transport: Transport, recorder: _Recorder, claimed: _Claimed, policy: Policy | None,
    now: datetime, result: DeliveryResult, last: bool,
) -> None:
    row = claimed.row
    held = policy.blocked(row) if policy is not None else None
    if held is not None:
        recorder.settle()
        status, reason = held
        with transaction(engine) as conn:
            conn.execute(sa.update(OUTBOX).where(OUTBOX.c.id == row.id).values(
                status=status.value, status_reason=reason))
        log.info("event=not-sent outbox=%s status=%s reason=%s", row.id, status.value, kv(reason))
        if status is OutboxStatus.CAPPED:
            result.capped += 1
        else:
            result.suppressed += 1
        return
    try:
        transport.send(row.id, claimed.envelope, row.to_addr, row.raw, settle=recorder.settle)
    except TransientError as exc:
        if recorder.broken:
            raise
        recorder.settle()
        with transaction(engine) as conn:
            conn.execute(sa.update(OUTBOX).where(OUTBOX.c.id == row.id).values(
                status=OutboxStatus.QUEUED.value, next_attempt_at=now + backoff(row.attempts + 1),
                last_error=str(exc)[:2000]))
        result.retried += 1
        log.warning("event=send-deferred outbox=%s case=%s message=%s to=%s attempt=%d error=%s",
                    row.id, row.case_id or "-", row.message_pk or "-", kv(row.to_addr), row.attempts + 1, kv(exc))
        return
    except (PermanentDeliveryError, Exception) as exc:
        if recorder.broken or is_outage(exc):
            raise
        recorder.settle()
        reason = "refused" if isinstance(exc, PermanentDeliveryError) else f"send: {type(exc).__name__}"
        with transaction(engine) as conn:
            conn.execute(sa.update(OUTBOX).where(OUTBOX.c.id == row.id).values(
                status=OutboxStatus.FAILED.value, status_reason=reason,
                last_error=f"{type(exc).__name__}: {exc}"[:2000]))
        result.failed += 1
        result.errors.append(f"{row.id}: {exc}")
        log.error("event=send-failed outbox=%s case=%s message=%s to=%s error=%s",
                  row.id, row.case_id or "-", row.message_pk or "-", kv(row.to_addr), kv(exc))
        return
    # in flight until recorded: before the next mail can be accepted, and synced if it ends the group
    recorder.accepted(claimed, durable=last)
    if policy is not None:
        policy.count(row)


def _note_failing(engine: Engine, result: DeliveryResult, now: datetime) -> None:
    """Keep since when delivery fails, for ``status``: set by a pass that deferred and sent
    nothing, cleared by one that sent (written only when it changes)."""
    with engine.connect() as conn:
        known = service_state.get(conn, SMTP_FAILING_KEY) is not None
    if result.sent and known:
        with transaction(engine) as conn:
            service_state.delete(conn, SMTP_FAILING_KEY)
    elif result.retried and not result.sent and not known:
        with transaction(engine) as conn:
            service_state.put_once(conn, SMTP_FAILING_KEY, "", now)
