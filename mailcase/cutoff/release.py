"""Held cases whose account's standing was restored before the cutoff: acknowledged now."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcase.core.log import kv
from mailcase.core.states import CaseEventKind, CaseStatus
from mailcase.cutoff.compose import Composer
from mailcase.cutoff.make import Batch, is_transient
from mailcase.domain.cases import event
from mailcase.domain.tables import CASE, CASE_MESSAGE, MESSAGE, PERSON
from mailcase.outbound.compose import OutgoingMail
from mailcase.outbound.copies import colleagues, with_copies
from mailcase.outbound.outbox import OutboxQueue

log = logging.getLogger(__name__)


def release_held(conn: Connection, batch: Batch, composer: Composer, outbox: OutboxQueue) -> int:
    """Release the held cases whose standing came back before the cutoff; how many.
    One case that cannot be acknowledged stays held (its error logged); the rest go on."""
    rows = conn.execute(sa.select(CASE).where(
        CASE.c.status == CaseStatus.HELD.value, CASE.c.released_at.is_not(None), CASE.c.released_at <= batch.cutoff
    )).all()
    released = 0
    for row in rows:
        try:
            with conn.begin_nested():
                _release(conn, batch, row)
                if not row.no_auto_reply:
                    for mail in with_copies(_ack(conn, composer, row), colleagues(conn, row, batch.cutoff)):
                        outbox.add(mail)
                    outbox.flush()
        except Exception as exc:
            if is_transient(exc):
                raise
            outbox.discard()
            log.error("event=release-failed case=%s error=%s", row.number, kv(f"{type(exc).__name__}: {exc}"))
            continue
        released += 1
    return released


def _release(conn: Connection, batch: Batch, row: Any) -> None:
    conn.execute(sa.update(CASE).where(CASE.c.id == row.id).values(
        status=CaseStatus.NEW.value, held=False, priority=row.severity, batch_id=batch.id))
    event(conn, row.id, batch.now, "batch", CaseEventKind.RELEASED, "account back in good standing")
    # released: processed now, and the promise runs from here
    promise = batch.promise
    conn.execute(sa.update(CASE).where(CASE.c.id == row.id).values(
        processed_at=promise.processed_at, ack_due_at=promise.due, ack_breach_at=promise.breach))


def _ack(conn: Connection, composer: Composer, row: Any) -> OutgoingMail:
    person = conn.execute(sa.select(PERSON.c.name).where(PERSON.c.id == row.person_id)).scalar()
    first = conn.execute(
        sa.select(MESSAGE.c.message_id).join(CASE_MESSAGE, CASE_MESSAGE.c.message_pk == MESSAGE.c.id)
        .where(CASE_MESSAGE.c.case_id == row.id).order_by(MESSAGE.c.id).limit(1)
    ).scalar()
    return composer.released_ack(row, person or "", first)
