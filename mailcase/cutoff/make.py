"""What a cutoff writes: its batch row, the mail it claims, the cases it made.

The cases are planned (:mod:`mailcase.cutoff.plan`), numbered and their mail
composed before anything is written; then a chunk of units goes in a
handful of statements -- cases, their ``created`` and ``linked`` events,
the colleagues they copy (``cc`` events), the mail -> case links, the
states, the outbox rows -- not five per case.
A row the database refuses is found unit by unit and only that unit fails.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcase.core.log import kv
from mailcase.core.states import CaseEventKind, CaseMessageRole, MailKind, MessageState
from mailcase.cutoff.plan import PlannedCase, Promise, Unit
from mailcase.domain.calendar import BusinessCalendar
from mailcase.domain.cases import CaseAllocator, create_cases
from mailcase.domain.db import insert_ignore, is_outage
from mailcase.domain.tables import BATCH, CASE_EVENT, CASE_MESSAGE, CLASSIFICATION, MESSAGE
from mailcase.outbound.compose import OutgoingMail
from mailcase.outbound.outbox import OutboxQueue

log = logging.getLogger(__name__)
CHUNK = 500  # units written at once (and mails set batched in one statement)

#: quarantines the mails of an item that failed: (message pks, what was being done, the error)
OnFailure = Callable[[Sequence[int], str, BaseException], None]


def is_transient(exc: BaseException) -> bool:
    """A database that went away: the whole cutoff rolls back and runs again later."""
    return is_outage(exc)


# -- the batch row and the claim -----------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """The batch row a cutoff opened: what its phases write under."""

    id: int
    cutoff: datetime
    #: when the cutoff runs
    now: datetime
    #: the cutoff before this one (mail received before it arrived late)
    previous: datetime | None
    #: when the cutoff processed the mail, and the answer it promises from there
    promise: Promise


def open_batch(conn: Connection, cal: BusinessCalendar, cutoff: datetime, now: datetime,
               late_mailboxes: Sequence[str] = ()) -> Batch | None:
    """Insert the cutoff's batch row; None if the cutoff was closed already."""
    if conn.execute(sa.select(BATCH.c.id).where(BATCH.c.cutoff_at == cutoff)).first() is not None:
        return None
    previous = conn.execute(sa.select(sa.func.max(BATCH.c.cutoff_at)).where(BATCH.c.cutoff_at < cutoff)).scalar()
    if previous is not None and previous.tzinfo is None:
        previous = previous.replace(tzinfo=UTC)
    batch_id = int(conn.execute(
        sa.insert(BATCH).values(cutoff_at=cutoff, ran_at=now, late_mailboxes=list(late_mailboxes))
        .returning(BATCH.c.id)
    ).scalar_one())
    # the promise counts from when the cutoff processed the mail: its own
    # time when it runs on time, the time it actually ran when it ran late
    processed_at = cutoff if now - cutoff < timedelta(hours=1) else now
    return Batch(batch_id, cutoff, now, previous, Promise.from_processing(cal, processed_at))


def claim(conn: Connection, batch: Batch) -> list[int]:
    """Claim the pending mail received before the cutoff (``WHERE batch_id IS NULL``:
    once); the claimed mails' ids, oldest first."""
    pks = [r[0] for r in conn.execute(
        sa.select(MESSAGE.c.id).where(
            MESSAGE.c.state == MessageState.PENDING.value, MESSAGE.c.batch_id.is_(None),
            MESSAGE.c.historical.is_(False), MESSAGE.c.received_at < batch.cutoff,
        ).order_by(MESSAGE.c.received_at, MESSAGE.c.id)
    )]
    for i in range(0, len(pks), 500):
        conn.execute(sa.update(MESSAGE).where(MESSAGE.c.id.in_(pks[i : i + 500]), MESSAGE.c.batch_id.is_(None))
                     .values(batch_id=batch.id))
    return [r[0] for r in conn.execute(sa.select(MESSAGE.c.id).where(MESSAGE.c.batch_id == batch.id)
                                       .order_by(MESSAGE.c.received_at, MESSAGE.c.id))]


def mark_batched(conn: Connection, pks: Sequence[int], now: datetime) -> None:
    """The mails are done with at this cutoff."""
    for i in range(0, len(pks), CHUNK):
        conn.execute(sa.update(MESSAGE).where(MESSAGE.c.id.in_(list(pks[i : i + CHUNK])))
                     .values(state=MessageState.BATCHED.value, state_changed_at=now))


# -- numbered cases and the units ready to write --------------------------------------------


@dataclass(frozen=True)
class NumberedCase:
    """A planned case with its number and owner (allocated before its mail is composed)."""

    planned: PlannedCase
    number: int
    owner_id: int | None

    def row(self, batch: Batch) -> dict[str, Any]:
        """The ``support_case`` row."""
        case = self.planned
        return {
            "number": self.number, "owner_id": self.owner_id,
            "account_id": case.account_id, "requester": case.requester, "person_id": case.person_id,
            "subject": case.subject, "severity": case.severity, "priority": case.priority, "tier": "SSI",
            "status": case.status.value, "out_of_scope": case.out_of_scope, "held": case.held,
            "no_auto_reply": case.no_auto_reply, "flags": list(case.flags), "linked_case_id": case.linked_case_id,
            "cc": list(case.cc.kept),
            "batch_id": batch.id, "released_at": None, "received_at": case.received_at,
            "processed_at": case.promise.processed_at,
            "ack_due_at": case.promise.due, "ack_breach_at": case.promise.breach,
            "receipt_sent_at": None, "first_response_at": None, "first_staff_action_at": None,
            "resolved_at": None, "closed_at": None,
        }


def number_cases(unit: Unit, allocator: CaseAllocator) -> tuple[NumberedCase, ...]:
    """Number and owner for each of the unit's cases, in order."""
    numbered: list[NumberedCase] = []
    for case in unit.cases:
        number = allocator.number()
        numbered.append(NumberedCase(case, number, allocator.owner()))
    return tuple(numbered)


@dataclass(frozen=True)
class QueuedMail:
    """A composed outbox row and the case numbers it is about (their ids come at insert)."""

    row: dict[str, Any]
    numbers: tuple[int, ...]
    #: a colleague's copy (not counted as another acknowledgement)
    copy: bool = False

    @classmethod
    def of(cls, row: dict[str, Any], mail: OutgoingMail) -> QueuedMail:
        return cls(row, (mail.case_number,) if mail.case_number is not None else (), mail.is_copy)


@dataclass(frozen=True)
class ReadyUnit:
    """A unit numbered and its mail composed: nothing left but to write it."""

    requester: str
    cases: tuple[NumberedCase, ...]
    mail: tuple[QueuedMail, ...]

    @property
    def pks(self) -> list[int]:
        return [pk for case in self.cases for pk in case.planned.pks]


# -- writing in bulk -----------------------------------------------------------------------


def insert_cases(conn: Connection, cases: Sequence[NumberedCase], batch: Batch,
                 allocator: CaseAllocator) -> list[tuple[int, int]]:
    """Insert the cases, link their mails, mark them batched; [(case id, number)] in order."""
    made = create_cases(conn, [case.row(batch) for case in cases], batch.now, "batch", allocator)
    links: list[dict[str, Any]] = []
    linked: list[dict[str, Any]] = []
    for case, (case_id, number) in zip(cases, made, strict=True):
        planned = case.planned
        pks = planned.pks
        log.debug("event=case-created case=%s messages=%s requester=%s severity=%s status=%s", number,
                  ",".join(str(pk) for pk in pks), kv(planned.requester), planned.severity, planned.status.value)
        links += [{"message_pk": pk, "case_id": case_id, "role": CaseMessageRole.REQUEST.value, "at": batch.now}
                  for pk in pks]
        if planned.linked_case_id:
            linked.append({"case_id": case_id, "at": batch.now, "actor": "batch", "kind": CaseEventKind.LINKED.value,
                           "detail": f"follows up closed case id {planned.linked_case_id}"})
        if planned.cc:
            linked.append({"case_id": case_id, "at": batch.now, "actor": "batch", "kind": CaseEventKind.CC.value,
                           "detail": planned.cc.detail()})
    insert_ignore(conn, CASE_MESSAGE, links, ["message_pk"])
    mark_batched(conn, [link["message_pk"] for link in links], batch.now)
    if links:
        conn.execute(sa.update(CLASSIFICATION).where(CLASSIFICATION.c.message_pk == sa.bindparam("b_pk"))
                     .values(case_pk=sa.bindparam("b_case")),
                     [{"b_pk": link["message_pk"], "b_case": link["case_id"]} for link in links])
    if linked:
        conn.execute(sa.insert(CASE_EVENT), linked)
    return made


@dataclass
class Written:
    """What went in: case numbers, acknowledgements and notices queued."""

    cases: list[int] = field(default_factory=list)
    acknowledgements: int = 0
    notices: int = 0

    def add(self, other: Written) -> None:
        self.cases += other.cases
        self.acknowledgements += other.acknowledgements
        self.notices += other.notices


@dataclass
class Writer:
    """Writes ready units in chunks, each chunk in a savepoint; when the database
    refuses a row, the chunk again unit by unit, and only the refused unit fails."""

    conn: Connection
    batch: Batch
    outbox: OutboxQueue
    allocator: CaseAllocator
    on_failure: OnFailure
    written: Written = field(default_factory=Written)

    def write(self, units: Sequence[ReadyUnit]) -> Written:
        for start in range(0, len(units), CHUNK):
            self._chunk(units[start : start + CHUNK])
        return self.written

    def _chunk(self, units: Sequence[ReadyUnit]) -> None:
        try:
            with self.conn.begin_nested():
                written = self._insert(units)
            self.written.add(written)
            return
        except Exception as exc:
            if is_transient(exc):
                raise
            self.outbox.discard()
        for unit in units:
            try:
                with self.conn.begin_nested():
                    written = self._insert([unit])
            except Exception as exc:
                self.outbox.discard()
                self.on_failure(unit.pks, f"writing the case(s) of {unit.requester}", exc)
                continue
            self.written.add(written)

    def _insert(self, units: Sequence[ReadyUnit]) -> Written:
        made = insert_cases(self.conn, [case for unit in units for case in unit.cases], self.batch, self.allocator)
        ids = {number: case_id for case_id, number in made}
        written = Written(cases=[number for _, number in made])
        for unit in units:
            for mail in unit.mail:
                case_ids = [ids[n] for n in mail.numbers]
                self.outbox.put({**mail.row, "case_id": case_ids[0] if case_ids else None, "case_ids": case_ids})
                if mail.copy:
                    continue
                if mail.row["kind"] == MailKind.ACK:
                    written.acknowledgements += 1
                else:
                    written.notices += 1
        self.outbox.flush()
        return written
