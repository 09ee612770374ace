"""Delivery: claim queued outbox rows, hand them to a transport, record the result.

A sender claims a row (``queued -> sending``) so a second sender passes it
by; the outbox's policy may hold it back (outbox.py: suppressed, capped); the
transport sends it with our VERP envelope sender.  A transient failure puts
the row back in the queue with a backoff; anything else fails it.  A sent
acknowledgement, notice, reply or resolution is recorded on its cases (the
receipt, the first human response the promise measures).
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mailcase.config.settings import Config
from mailcase.core.backoff import delay
from mailcase.core.errors import TransientError
from mailcase.core.log import kv
from mailcase.core.states import HUMAN_RESPONSE_KINDS, CaseEventKind, CaseStatus, MailKind, OutboxStatus, notice_kind
from mailcase.domain import service_state
from mailcase.domain.cases import event
from mailcase.domain.db import is_outage, transaction
from mailcase.domain.tables import CASE, OUTBOX
from mailcase.mail.msgid import verp_address
from mailcase.outbound.outbox import blocked
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


RETRY_BASE = timedelta(minutes=1)
RETRY_MAX = timedelta(hours=1)
#: a claim this old belongs to a sender that died mid-delivery
STALE_CLAIM = timedelta(minutes=10)
#: ``service_state`` key: since when delivery has failed (a pass deferred mail and sent none),
#: cleared by the next mail sent; shown by ``status``
SMTP_FAILING_KEY = "smtp-failing"


def backoff(attempts: int, rng: random.Random | None = None) -> timedelta:
    """When a deferred row is tried again (exponential, capped at an hour, jittered)."""
    return timedelta(seconds=delay(attempts, RETRY_BASE.total_seconds(), RETRY_MAX.total_seconds(), rng))


#: a first answer on a case of these kinds is its receipt
RECEIPTS: tuple[str, ...] = (MailKind.ACK.value, notice_kind(Notice.HOLD), notice_kind(Notice.OUT_OF_SCOPE))


def _mark_receipts(conn: Connection, row: Any, now: datetime) -> None:
    """A first answer on a case (ack, hold or out-of-scope notice) is its receipt; an
    acknowledgement makes a new (or released) case acknowledged; a staff reply or the
    resolution is the first human response the promise measures."""
    st = _statements()
    if row.kind in RECEIPTS:
        for case_id in row.case_ids or []:
            if conn.execute(st.receipt, {"p_case": case_id, "p_at": now}).rowcount:
                event(conn, case_id, now, "mailcase", CaseEventKind.RECEIPT_SENT, f"{row.kind} to {row.to_addr}")
            if row.kind == MailKind.ACK:
                conn.execute(st.acknowledged, {"p_case": case_id})
    elif row.kind in HUMAN_RESPONSE_KINDS:
        for case_id in row.case_ids or []:
            if conn.execute(st.responded, {"p_case": case_id, "p_at": now}).rowcount:
                event(conn, case_id, now, "mailcase", CaseEventKind.FIRST_RESPONSE, f"{row.kind} sent to {row.to_addr}")


@dataclass(frozen=True)
class _Statements:
    """The statements every delivered mail runs, built once with bound parameters.

    Building a SQLAlchemy statement and its cache key costs more than running
    it on SQLite: delivery ran some ten of them per mail, at 4 ms of CPU.
    """

    claim: Any
    row: Any
    set_envelope: Any
    sent: Any
    receipt: Any
    acknowledged: Any
    responded: Any


@lru_cache(maxsize=1)
def _statements() -> _Statements:
    rid: Any = sa.bindparam("p_id")
    case: Any = sa.bindparam("p_case")
    return _Statements(
        claim=sa.update(OUTBOX).where(OUTBOX.c.id == rid, OUTBOX.c.status == OutboxStatus.QUEUED.value)
        .values(status=OutboxStatus.SENDING.value, attempts=OUTBOX.c.attempts + 1, claimed_at=sa.bindparam("p_at")),
        row=sa.select(OUTBOX).where(OUTBOX.c.id == rid),
        set_envelope=sa.update(OUTBOX).where(OUTBOX.c.id == rid).values(envelope_from=sa.bindparam("p_env")),
        sent=sa.update(OUTBOX).where(OUTBOX.c.id == rid).values(
            status=OutboxStatus.SENT.value, sent_at=sa.bindparam("p_at"), last_error=None),
        receipt=sa.update(CASE).where(CASE.c.id == case, CASE.c.receipt_sent_at.is_(None))
        .values(receipt_sent_at=sa.bindparam("p_at")),
        acknowledged=sa.update(CASE).where(CASE.c.id == case, CASE.c.status == CaseStatus.NEW.value)
        .values(status=CaseStatus.ACKNOWLEDGED.value),
        responded=sa.update(CASE).where(CASE.c.id == case, CASE.c.first_response_at.is_(None))
        .values(first_response_at=sa.bindparam("p_at")),
    )


def release_stale_claims(engine: Engine, now: datetime) -> int:
    """Rows left "sending" by a sender that died: back in the queue.

    This is the one window where a mail can go out twice: the server had
    accepted it but the sender died before recording that.  Everything
    else (re-runs, retries, several senders) is kept to once by the key and
    the claim.
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
    st = _statements()
    with transaction(engine) as conn:
        for row_id, (row, at) in pending.items():
            conn.execute(st.sent, {"p_id": row_id, "p_at": at})
            _mark_receipts(conn, row, at)
    with _accepted_lock:
        for row_id in pending:
            _accepted.pop(row_id, None)
    log.info("event=sent-recorded-late rows=%d", len(pending))
    return len(pending)


def deliver_due(
    engine: Engine, transport: Transport, now: datetime, config: Config | None = None, limit: int = 200,
) -> DeliveryResult:
    """Send queued rows whose time has come, oldest first."""
    result = DeliveryResult()
    _record_accepted(engine)
    release_stale_claims(engine, now)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(OUTBOX.c.id).where(
                OUTBOX.c.status == OutboxStatus.QUEUED.value, OUTBOX.c.next_attempt_at <= now
            ).order_by(OUTBOX.c.id).limit(limit)
        ).scalars().all()
    key = config.hmac_key() if config else None
    try:
        for row_id in rows:
            _deliver_one(engine, transport, row_id, now, config, key, result)
    finally:
        close = getattr(transport, "close", None)
        if close is not None:
            close()
    if result.sent or result.retried:
        _note_failing(engine, result, now)
    if rows:
        log.info("event=outbox-progress sent=%d deferred=%d failed=%d capped=%d suppressed=%d transport=%s",
                 result.sent, result.retried, result.failed, result.capped, result.suppressed, transport.name)
    return result


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


def _deliver_one(
    engine: Engine, transport: Transport, row_id: int, now: datetime, config: Config | None,
    key: bytes | None, result: DeliveryResult,
) -> None:
    st = _statements()
    with transaction(engine) as conn:
        # claim: a second sender finds it no longer queued
        claimed = conn.execute(st.claim, {"p_id": row_id, "p_at": now}).rowcount
        if not claimed:
            return
        row = conn.execute(st.row, {"p_id": row_id}).one()
        held = blocked(conn, row, config, now) if config else None
        if held is not None:
            status, reason = held
            conn.execute(sa.update(OUTBOX).where(OUTBOX.c.id == row_id).values(
                status=status.value, status_reason=reason))
            log.info("event=not-sent outbox=%s status=%s reason=%s", row_id, status.value, kv(reason))
            if status is OutboxStatus.CAPPED:
                result.capped += 1
            else:
                result.suppressed += 1
            return
        envelope = verp_address(key, config.outgoing.bounce_base, row_id) if key and config else row.envelope_from
        if envelope != row.envelope_from:
            conn.execute(st.set_envelope, {"p_id": row_id, "p_env": envelope})
    try:
        transport.send(row.id, envelope, row.to_addr, row.raw)
    except TransientError as exc:
        with transaction(engine) as conn:
            conn.execute(sa.update(OUTBOX).where(OUTBOX.c.id == row_id).values(
                status=OutboxStatus.QUEUED.value, next_attempt_at=now + backoff(row.attempts + 1),
                last_error=str(exc)[:2000]))
        result.retried += 1
        log.warning("event=send-deferred outbox=%s case=%s message=%s to=%s attempt=%d error=%s",
                    row_id, row.case_id or "-", row.message_pk or "-", kv(row.to_addr), row.attempts + 1, kv(exc))
        return
    except (PermanentDeliveryError, Exception) as exc:
        if is_outage(exc):
            raise
        reason = "refused" if isinstance(exc, PermanentDeliveryError) else f"send: {type(exc).__name__}"
        with transaction(engine) as conn:
            conn.execute(sa.update(OUTBOX).where(OUTBOX.c.id == row_id).values(
                status=OutboxStatus.FAILED.value, status_reason=reason,
                last_error=f"{type(exc).__name__}: {exc}"[:2000]))
        result.failed += 1
        result.errors.append(f"{row_id}: {exc}")
        log.error("event=send-failed outbox=%s case=%s message=%s to=%s error=%s",
                  row_id, row.case_id or "-", row.message_pk or "-", kv(row.to_addr), kv(exc))
        return
    try:
        with transaction(engine) as conn:
            conn.execute(st.sent, {"p_id": row_id, "p_at": now})
            _mark_receipts(conn, row, now)
    except Exception as exc:
        if is_outage(exc):
            with _accepted_lock:
                _accepted[row_id] = (row, now)
        raise
    result.sent += 1
    log.debug("event=sent outbox=%s kind=%s case=%s message=%s to=%s transport=%s",
              row_id, row.kind, row.case_id or "-", row.message_pk or "-", kv(row.to_addr), transport.name)
