"""The outbox: business logic only enqueues; a sender delivers (deliver.py).

A row holds the exact bytes to send, composed once when it is queued
(compose.py; in the same transaction as the batch that owes it), under an
idempotency key: kind + what it is about.  Queuing the same key twice adds
nothing, so every command can be re-run without a second mail.

Here too: what may not go out when its time comes (a suppressed address, the
daily cap on automatic mail to one address), and what staff do with rows
(list, show, retry, cancel).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcase.config.settings import Config
from mailcase.core.errors import UsageError
from mailcase.core.states import UNCAPPED_MAIL_KINDS, UNSENT_OUTBOX_STATUSES, OutboxStatus
from mailcase.domain.db import insert_ignore
from mailcase.domain.tables import OUTBOX, SUPPRESSION
from mailcase.outbound.compose import OutgoingMail, compose
from mailcase.outbound.render import clean_header_text


def enqueue(conn: Connection, mail: OutgoingMail, config: Config, key: bytes, now: datetime) -> bool:
    """Queue a mail once per key; False if that key was queued before."""
    queue = OutboxQueue(conn, config, key, now)
    queue.add(mail)
    return queue.flush() == 1


def _row(mail: OutgoingMail, config: Config, key: bytes, now: datetime) -> dict[str, Any]:
    message_id, raw = compose(mail, config, key, now)
    return {
        "key": mail.key, "kind": mail.full_kind,
        "case_id": mail.case_id, "case_ids": list(mail.case_ids or ((mail.case_id,) if mail.case_id else ())),
        "message_pk": mail.message_pk, "batch_id": mail.batch_id, "to_addr": mail.to_addr,
        "envelope_from": config.outgoing.from_address, "message_id": message_id,
        "subject": clean_header_text(mail.rendered.subject, 250), "raw": raw, "status": OutboxStatus.QUEUED.value,
        "status_reason": None, "attempts": 0, "next_attempt_at": now, "last_error": None,
        "created_at": now, "sent_at": None,
    }


@dataclass
class OutboxQueue:
    """Queues mails in the caller's transaction, once per key: one query for
    the keys already there and one insert per ``size`` mails, not two
    statements per mail (a cutoff after an outage queues thousands)."""

    conn: Connection
    config: Config
    key: bytes
    now: datetime
    size: int = 500
    queued: int = 0
    _pending: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, mail: OutgoingMail) -> None:
        """Compose the mail now (a mail that cannot be written raises here, for
        the caller to isolate) and write it with the next flush."""
        self.put(self.prepare(mail))

    def prepare(self, mail: OutgoingMail) -> dict[str, Any]:
        """The row of ``mail``, composed (ComposeError and the like raise here)."""
        return _row(mail, self.config, self.key, self.now)

    def put(self, row: dict[str, Any]) -> None:
        """Queue a composed row for the next flush."""
        self._pending.setdefault(row["key"], row)  # the first of one key wins, as one by one
        if len(self._pending) >= self.size:
            self.flush()

    def discard(self) -> None:
        """Forget what is not written yet (its transaction was rolled back)."""
        self._pending.clear()

    def flush(self) -> int:
        """Write what is pending; how many were new."""
        if not self._pending:
            return 0
        keys = list(self._pending)
        there = {r[0] for r in self.conn.execute(sa.select(OUTBOX.c.key).where(OUTBOX.c.key.in_(keys)))}
        rows = [row for k, row in self._pending.items() if k not in there]
        self._pending.clear()
        insert_ignore(self.conn, OUTBOX, rows, ["key"])
        self.queued += len(rows)
        return len(rows)


# -- what may not go out ------------------------------------------------------------------


#: built once with a bound parameter (building a statement costs more than running it on SQLite)
_SUPPRESSED = sa.select(SUPPRESSION.c.reason).where(
    SUPPRESSION.c.address == sa.bindparam("p_addr"), SUPPRESSION.c.cleared_at.is_(None))


def is_suppressed(conn: Connection, address: str) -> str | None:
    """Why ``address`` gets no mail from us (a hard bounce, staff), or None."""
    row = conn.execute(_SUPPRESSED, {"p_addr": address.lower()}).first()
    return row[0] if row else None


_GROUP_SUPPRESSED = sa.select(SUPPRESSION.c.address, SUPPRESSION.c.reason).where(
    SUPPRESSION.c.address.in_(sa.bindparam("p_addrs", expanding=True)), SUPPRESSION.c.cleared_at.is_(None))
#: only a sent row has a ``sent_at``; a status condition here would lead SQLite's planner
#: to walk every sent row by the status index instead of the few to these addresses
_GROUP_SENT = sa.select(OUTBOX.c.to_addr, sa.func.count()).where(
    OUTBOX.c.to_addr.in_(sa.bindparam("p_addrs", expanding=True)), OUTBOX.c.sent_at >= sa.bindparam("p_since"),
    OUTBOX.c.kind.not_in(UNCAPPED_MAIL_KINDS),
).group_by(OUTBOX.c.to_addr)


def _capped(kind: str) -> bool:
    return kind.split("/")[0] not in UNCAPPED_MAIL_KINDS


@dataclass
class Policy:
    """What may not go out, for one group of claimed rows: read with two queries
    when the group is claimed (not two per mail), then judged row by row as the
    group is sent, counting what this group sent towards the daily cap."""

    cap: int
    #: lower-cased address -> why it is suppressed
    suppressed: dict[str, str]
    #: address -> automatic mails sent to it in the 24 h before the group, then this group's
    sent: Counter[str]

    @classmethod
    def read(cls, conn: Connection, rows: Sequence[Any], config: Config, now: datetime) -> Policy:
        lowered = sorted({r.to_addr.lower() for r in rows})
        suppressed = dict(conn.execute(_GROUP_SUPPRESSED, {"p_addrs": lowered}).all()) if lowered else {}
        capped = sorted({r.to_addr for r in rows if _capped(r.kind)})
        sent: Counter[str] = Counter()
        if capped:
            sent.update(dict(conn.execute(_GROUP_SENT, {"p_addrs": capped, "p_since": now - timedelta(hours=24)}).all()))
        return cls(config.outgoing.daily_cap_per_address, suppressed, sent)

    def blocked(self, row: Any) -> tuple[OutboxStatus, str] | None:
        """(status, reason) when the row must not go out; None to send it."""
        reason = self.suppressed.get(row.to_addr.lower())
        if reason is not None:
            return OutboxStatus.SUPPRESSED, f"{row.to_addr} is suppressed: {reason}"
        if _capped(row.kind) and self.sent[row.to_addr] >= self.cap:
            return OutboxStatus.CAPPED, f"{self.sent[row.to_addr]} automatic mails to {row.to_addr} in 24 h (cap {self.cap})"
        return None

    def count(self, row: Any) -> None:
        """``row`` was sent: it counts towards its address's cap for the rest of the group."""
        if _capped(row.kind):
            self.sent[row.to_addr] += 1


# -- what staff do with rows --------------------------------------------------------------


def retry_rows(conn: Connection, ids: Sequence[int] | None, now: datetime) -> int:
    """Queue failed/capped/deferred rows again (all failed ones with ids=None)."""
    q = sa.update(OUTBOX).where(OUTBOX.c.status.in_(UNSENT_OUTBOX_STATUSES))
    q = (q.where(OUTBOX.c.id.in_(list(ids))) if ids is not None
         else q.where(OUTBOX.c.status == OutboxStatus.FAILED.value))
    return int(conn.execute(
        q.values(status=OutboxStatus.QUEUED.value, next_attempt_at=now, status_reason=None)).rowcount)


def cancel_rows(conn: Connection, ids: Sequence[int], actor: str) -> int:
    return int(conn.execute(
        sa.update(OUTBOX).where(OUTBOX.c.id.in_(list(ids)), OUTBOX.c.status.in_(UNSENT_OUTBOX_STATUSES))
        .values(status=OutboxStatus.CANCELLED.value, status_reason=f"cancelled by {actor}")
    ).rowcount)


def list_outbox(conn: Connection, status: str | None = None, limit: int = 50) -> Sequence[Any]:
    q = sa.select(OUTBOX.c.id, OUTBOX.c.kind, OUTBOX.c.status, OUTBOX.c.to_addr, OUTBOX.c.subject,
                  OUTBOX.c.created_at, OUTBOX.c.sent_at, OUTBOX.c.attempts, OUTBOX.c.last_error)
    if status:
        q = q.where(OUTBOX.c.status == status)
    return conn.execute(q.order_by(OUTBOX.c.id.desc()).limit(limit)).all()[::-1]


def get_row(conn: Connection, row_id: int) -> Any:
    row = conn.execute(sa.select(OUTBOX).where(OUTBOX.c.id == row_id)).first()
    if row is None:
        raise UsageError(f"no outbox row {row_id}")
    return row
