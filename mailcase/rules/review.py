"""Mail held for review (floods): nothing happens until staff release or discard it.

Released mail joins the next cutoff as a request (the flood rule is not run
on it again); discarded mail is kept, suppressed, with who discarded it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcase.core.errors import UsageError
from mailcase.core.states import MessageState
from mailcase.domain.tables import CLASSIFICATION, MESSAGE, VERDICT
from mailcase.rules.base import Disposition

RULE = "review"
#: the verdicts staff give a held mail (its ``verdict.name``)
RELEASED = "released"
DISCARDED = "discarded"


@dataclass(frozen=True)
class Held:
    id: int
    received_at: datetime | None
    from_addr: str | None
    subject: str | None
    reason: str


def held(conn: Connection, limit: int = 200) -> list[Held]:
    rows = conn.execute(
        sa.select(MESSAGE.c.id, MESSAGE.c.received_at, MESSAGE.c.from_addr, MESSAGE.c.subject)
        .where(MESSAGE.c.state == MessageState.HELD.value).order_by(MESSAGE.c.received_at).limit(limit)
    ).all()
    out = []
    for r in rows:
        reason = conn.execute(
            sa.select(VERDICT.c.reason)
            .where(VERDICT.c.message_pk == r.id, VERDICT.c.disposition == Disposition.HELD_FOR_REVIEW.value)
            .order_by(VERDICT.c.id.desc()).limit(1)
        ).scalar() or ""
        out.append(Held(r.id, r.received_at, r.from_addr, r.subject, reason))
    return out


def _decide(conn: Connection, pk: int, name: str, reason: str, state: MessageState, disposition: Disposition,
            now: datetime) -> None:
    current = conn.execute(sa.select(MESSAGE.c.state).where(MESSAGE.c.id == pk)).scalar()
    if current is None:
        raise UsageError(f"no message {pk}")
    if current != MessageState.HELD.value:
        raise UsageError(f"message {pk} is {current}, not held for review")
    seq = conn.execute(sa.select(sa.func.count()).where(VERDICT.c.message_pk == pk)).scalar_one()
    conn.execute(sa.insert(VERDICT).values(message_pk=pk, phase="review", seq=int(seq), rule=RULE,
                                           name=name, reason=reason, disposition=disposition.value, at=now))
    conn.execute(sa.update(CLASSIFICATION).where(CLASSIFICATION.c.message_pk == pk)
                 .values(disposition=disposition.value))
    conn.execute(sa.update(MESSAGE).where(MESSAGE.c.id == pk).values(state=state.value, state_changed_at=now))


def release(conn: Connection, pk: int, now: datetime, actor: str) -> None:
    _decide(conn, pk, RELEASED, f"released by {actor}: joins the next cutoff", MessageState.PENDING,
            Disposition.PENDING, now)


def discard(conn: Connection, pk: int, now: datetime, actor: str) -> None:
    _decide(conn, pk, DISCARDED, f"discarded by {actor}: kept, no case, no reply", MessageState.CLASSIFIED,
            Disposition.SUPPRESSED, now)
