"""Read-only views of the ledger: what is stored about messages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcase.core.errors import UsageError
from mailcase.domain.tables import CLASSIFICATION, MESSAGE, OUTBOX, PARSED_MAIL, QUARANTINE, RAW_COPY, VERDICT


@dataclass(frozen=True)
class MessageRow:
    id: int
    state: str
    historical: bool
    received_at: datetime | None
    from_addr: str | None
    subject: str | None


def state_counts(conn: Connection) -> dict[str, int]:
    rows = conn.execute(
        sa.select(MESSAGE.c.state, sa.func.count()).group_by(MESSAGE.c.state)
    ).all()
    return {r[0]: int(r[1]) for r in rows}


def historical_count(conn: Connection) -> int:
    return int(
        conn.execute(
            sa.select(sa.func.count()).select_from(MESSAGE).where(MESSAGE.c.historical.is_(True))
        ).scalar_one()
    )


def list_messages(
    conn: Connection, state: str | None = None, limit: int = 50, mailbox: str | None = None
) -> list[MessageRow]:
    q = sa.select(
        MESSAGE.c.id, MESSAGE.c.state, MESSAGE.c.historical, MESSAGE.c.received_at,
        MESSAGE.c.from_addr, MESSAGE.c.subject,
    )
    if state:
        q = q.where(MESSAGE.c.state == state)
    if mailbox:
        q = q.where(
            MESSAGE.c.id.in_(sa.select(RAW_COPY.c.message_pk).where(RAW_COPY.c.mailbox == mailbox))
        )
    rows = conn.execute(q.order_by(MESSAGE.c.id.desc()).limit(limit)).all()
    return [MessageRow(*r) for r in reversed(rows)]


def message_detail(conn: Connection, pk: int) -> dict[str, Any]:
    row = conn.execute(sa.select(MESSAGE).where(MESSAGE.c.id == pk)).first()
    if row is None:
        raise UsageError(f"no message {pk}")
    detail: dict[str, Any] = {"message": dict(row._mapping)}
    detail["copies"] = [
        dict(r._mapping)
        for r in conn.execute(
            sa.select(
                RAW_COPY.c.id, RAW_COPY.c.source, RAW_COPY.c.source_key, RAW_COPY.c.size,
                RAW_COPY.c.truncated_from, RAW_COPY.c.received_at, RAW_COPY.c.received_source,
                RAW_COPY.c.stored_at, RAW_COPY.c.post_action, RAW_COPY.c.post_action_done_at,
            ).where(RAW_COPY.c.message_pk == pk).order_by(RAW_COPY.c.id)
        )
    ]
    parsed = conn.execute(sa.select(PARSED_MAIL).where(PARSED_MAIL.c.message_pk == pk)).first()
    detail["parsed"] = dict(parsed._mapping) if parsed else None
    detail["quarantine"] = [
        dict(r._mapping)
        for r in conn.execute(
            sa.select(
                QUARANTINE.c.id, QUARANTINE.c.stage, QUARANTINE.c.error_type, QUARANTINE.c.error,
                QUARANTINE.c.created_at, QUARANTINE.c.resolved_at,
            ).where(QUARANTINE.c.message_pk == pk).order_by(QUARANTINE.c.id)
        )
    ]
    detail["verdicts"] = [
        dict(r._mapping)
        for r in conn.execute(
            sa.select(VERDICT.c.phase, VERDICT.c.seq, VERDICT.c.rule, VERDICT.c.name,
                      VERDICT.c.reason, VERDICT.c.disposition, VERDICT.c.at)
            .where(VERDICT.c.message_pk == pk).order_by(VERDICT.c.id)
        )
    ]
    cls = conn.execute(sa.select(CLASSIFICATION).where(CLASSIFICATION.c.message_pk == pk)).first()
    detail["classification"] = dict(cls._mapping) if cls else None
    # what went out (or did not) because of this mail: a notice capped, suppressed or refused shows here
    detail["outgoing"] = [
        dict(r._mapping)
        for r in conn.execute(
            sa.select(OUTBOX.c.id, OUTBOX.c.kind, OUTBOX.c.to_addr, OUTBOX.c.status, OUTBOX.c.status_reason)
            .where(OUTBOX.c.message_pk == pk).order_by(OUTBOX.c.id))
    ]
    return detail
