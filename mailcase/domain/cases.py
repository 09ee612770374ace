"""Cases: numbers, lifecycle, assignment, escalation, the event log.

Lifecycle (the agreement; states.py's :class:`CaseStatus`): ``new -> acknowledged -> in-progress -> escalated
-> resolved -> closed``, plus ``held`` (account not in good standing) and
``out-of-scope``.  Escalation changes the tier (SSI -> SSII -> SSIII -> DEV),
never the owner: the first specialist keeps ownership.  Every change is an
event with who and when.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcase.core.errors import UsageError
from mailcase.core.states import (
    CLOSED_CASE_STATUSES,
    NOT_DUE_CASE_STATUSES,
    OPEN_CASE_STATUSES,
    CaseEventKind,
    CaseEventName,
    CaseStatus,
    MailKind,
    OutboxStatus,
    Tier,
)
from mailcase.domain.tables import ACCOUNT, CASE, CASE_EVENT, CASE_MESSAGE, MESSAGE, OUTBOX, SPECIALIST
from mailcase.mail.subjects import case_label

TIERS: tuple[str, ...] = tuple(t.value for t in Tier)  # in escalation order


def priority_for(severity: int, held: bool, out_of_scope: bool) -> int:
    """Queue order, 1 first: by severity.  Abuse flags do not demote a case
    (nothing is auto-punished); held and out-of-scope cases wait behind."""
    return severity + (4 if held or out_of_scope else 0)


_INSERT_EVENT = sa.insert(CASE_EVENT)  # built once: delivery records one per acknowledgement sent


def event(conn: Connection, case_id: int, at: datetime, actor: str, kind: CaseEventName, detail: str = "") -> None:
    conn.execute(_INSERT_EVENT, {"case_id": case_id, "at": at, "actor": actor, "kind": kind.value, "detail": detail})


def next_number(conn: Connection) -> int:
    current = conn.execute(sa.select(sa.func.max(CASE.c.number))).scalar()
    return int(current or 0) + 1


def pick_owner(conn: Connection, now: datetime) -> int | None:
    """The active SSI specialist with the fewest open cases; ties round-robin."""
    open_counts = (
        sa.select(CASE.c.owner_id, sa.func.count().label("n"))
        .where(CASE.c.status.in_(OPEN_CASE_STATUSES))
        .group_by(CASE.c.owner_id)
        .subquery()
    )
    row = conn.execute(
        sa.select(SPECIALIST.c.id)
        .outerjoin(open_counts, open_counts.c.owner_id == SPECIALIST.c.id)
        .where(SPECIALIST.c.active.is_(True), SPECIALIST.c.tier == Tier.SSI.value)
        .order_by(
            sa.func.coalesce(open_counts.c.n, 0),
            SPECIALIST.c.last_assigned_at.is_not(None),  # never assigned first
            SPECIALIST.c.last_assigned_at,
            SPECIALIST.c.id,
        )
        .limit(1)
    ).first()
    if row is None:
        return None
    conn.execute(sa.update(SPECIALIST).where(SPECIALIST.c.id == row[0]).values(last_assigned_at=now))
    return int(row[0])


class CaseAllocator:
    """Numbers and owners for many cases in one transaction (a cutoff).

    The same choices as :func:`next_number` and :func:`pick_owner`, with the
    open-case counts loaded once and kept in memory: a cutoff that makes
    thousands of cases must not re-count every case for each new one.
    """

    def __init__(self, conn: Connection, now: datetime) -> None:
        self.conn, self.now = conn, now
        self._next = next_number(conn)
        counts: dict[Any, Any] = dict(conn.execute(
            sa.select(CASE.c.owner_id, sa.func.count()).where(CASE.c.status.in_(OPEN_CASE_STATUSES))
            .group_by(CASE.c.owner_id)
        ).all())
        self._specialists: list[list[Any]] = [
            [int(counts.get(r.id, 0)), r.last_assigned_at, int(r.id)]
            for r in conn.execute(sa.select(SPECIALIST.c.id, SPECIALIST.c.last_assigned_at).where(
                SPECIALIST.c.active.is_(True), SPECIALIST.c.tier == Tier.SSI.value))
        ]
        self._touched: set[int] = set()

    def number(self) -> int:
        n = self._next
        self._next += 1
        return n

    def checkpoint(self) -> tuple[int, list[list[Any]], set[int]]:
        """The allocator's state, to go back to when a case is not made after all."""
        return self._next, [list(s) for s in self._specialists], set(self._touched)

    def rollback(self, mark: tuple[int, list[list[Any]], set[int]]) -> None:
        self._next, self._specialists, self._touched = mark[0], [list(s) for s in mark[1]], set(mark[2])

    def owner(self) -> int | None:
        if not self._specialists:
            return None
        best = min(self._specialists, key=lambda s: (s[0], s[1] is not None, s[1] or self.now, s[2]))
        best[0] += 1
        best[1] = self.now
        self._touched.add(int(best[2]))
        return int(best[2])

    def flush(self) -> None:
        if self._touched:
            self.conn.execute(sa.update(SPECIALIST).where(SPECIALIST.c.id.in_(sorted(self._touched)))
                              .values(last_assigned_at=self.now))
            self._touched.clear()


def create_case(
    conn: Connection, values: dict[str, Any], now: datetime, actor: str, allocator: CaseAllocator | None = None,
) -> tuple[int, int]:
    """Insert a case (numbered, owned); returns (id, number)."""
    number = allocator.number() if allocator else next_number(conn)
    owner = allocator.owner() if allocator else pick_owner(conn, now)
    return _insert_cases(conn, [{"number": number, "owner_id": owner, "created_at": now, **values}], now, actor)[0]


def create_cases(
    conn: Connection, values: Sequence[dict[str, Any]], now: datetime, actor: str, allocator: CaseAllocator,
) -> list[tuple[int, int]]:
    """Insert many cases (same keys in every ``values``) in two statements; [(id, number)] in order.
    A number and owner already in ``values`` (allocated when the case's mail was composed) are kept."""
    return _insert_cases(conn, [
        {**v, "created_at": now} if "number" in v else
        {"number": allocator.number(), "owner_id": allocator.owner(), "created_at": now, **v} for v in values
    ], now, actor)


def _insert_cases(conn: Connection, rows: list[dict[str, Any]], now: datetime, actor: str) -> list[tuple[int, int]]:
    if not rows:
        return []
    ids = conn.execute(sa.insert(CASE).returning(CASE.c.id, sort_by_parameter_order=True), rows).scalars().all()
    conn.execute(sa.insert(CASE_EVENT), [
        {"case_id": case_id, "at": now, "actor": actor, "kind": CaseEventKind.CREATED.value,
         "detail": f"status {r.get('status')}, severity {r.get('severity')}, owner {r['owner_id'] or 'none'}"}
        for case_id, r in zip(ids, rows, strict=True)
    ])
    return [(int(case_id), int(r["number"])) for case_id, r in zip(ids, rows, strict=True)]


@dataclass(frozen=True)
class CaseView:
    id: int
    number: int
    status: str
    subject: str
    requester: str
    account: str | None
    severity: int
    priority: int
    tier: str
    owner: str | None
    flags: list[str]
    received_at: datetime | None
    processed_at: datetime | None
    ack_due_at: datetime | None
    ack_breach_at: datetime | None
    receipt_sent_at: datetime | None
    first_response_at: datetime | None
    first_staff_action_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None


def get_case(conn: Connection, number: int) -> Any:
    row = conn.execute(sa.select(CASE).where(CASE.c.number == number)).first()
    if row is None:
        raise UsageError(f"no case {case_label(number)}")
    return row


def _view_query() -> sa.Select[Any]:
    return (
        sa.select(CASE, ACCOUNT.c.code.label("account_code"), SPECIALIST.c.name.label("owner_name"))
        .outerjoin(ACCOUNT, ACCOUNT.c.id == CASE.c.account_id)
        .outerjoin(SPECIALIST, SPECIALIST.c.id == CASE.c.owner_id)
    )


def _view(r: Any) -> CaseView:
    return CaseView(
        r.id, r.number, r.status, r.subject, r.requester, r.account_code, r.severity, r.priority,
        r.tier, r.owner_name, list(r.flags or []), r.received_at, r.processed_at, r.ack_due_at,
        r.ack_breach_at, r.receipt_sent_at, r.first_response_at, r.first_staff_action_at, r.resolved_at, r.closed_at,
    )


def list_cases(
    conn: Connection, *, status: str | None = None, account: str | None = None,
    owner: str | None = None, severity: int | None = None, breached: bool = False,
    now: datetime | None = None, limit: int = 100,
) -> list[CaseView]:
    q = _view_query()
    if status:
        q = q.where(CASE.c.status == status)
    if account:
        q = q.where(ACCOUNT.c.code == account)
    if owner:
        q = q.where(SPECIALIST.c.name == owner)
    if severity:
        q = q.where(CASE.c.severity == severity)
    if breached:
        assert now is not None
        # the promise measures the first human response (a reply or the resolution)
        q = q.where(sa.or_(
            sa.and_(CASE.c.first_response_at.is_(None), CASE.c.ack_breach_at <= now,
                    CASE.c.status.not_in(NOT_DUE_CASE_STATUSES)),
            CASE.c.first_response_at > CASE.c.ack_breach_at,
        ))
    # open cases first, then by when the answer is due (none last), then queue order
    rows = conn.execute(q.order_by(
        sa.case((CASE.c.status.in_(OPEN_CASE_STATUSES), 0), else_=1),
        CASE.c.ack_due_at.is_(None), CASE.c.ack_due_at, CASE.c.ack_breach_at.is_(None), CASE.c.ack_breach_at,
        CASE.c.priority, CASE.c.number,
    ).limit(limit)).all()
    return [_view(r) for r in rows]


def case_detail(conn: Connection, number: int) -> tuple[CaseView, list[Any], list[Any]]:
    """(case, its mails, its events)."""
    r = conn.execute(_view_query().where(CASE.c.number == number)).first()
    if r is None:
        raise UsageError(f"no case {case_label(number)}")
    mails = conn.execute(
        sa.select(MESSAGE.c.id, MESSAGE.c.received_at, MESSAGE.c.from_addr, MESSAGE.c.subject, CASE_MESSAGE.c.role)
        .join(CASE_MESSAGE, CASE_MESSAGE.c.message_pk == MESSAGE.c.id)
        .where(CASE_MESSAGE.c.case_id == r.id).order_by(MESSAGE.c.received_at, MESSAGE.c.id)
    ).all()
    events = conn.execute(
        sa.select(CASE_EVENT).where(CASE_EVENT.c.case_id == r.id).order_by(CASE_EVENT.c.id)
    ).all()
    return _view(r), list(mails), list(events)


# -- staff actions -----------------------------------------------------------------------


def _staff_touch(conn: Connection, row: Any, now: datetime) -> dict[str, Any]:
    return {} if row.first_staff_action_at else {"first_staff_action_at": now}


def _specialist_id(conn: Connection, name: str) -> int:
    row = conn.execute(sa.select(SPECIALIST.c.id, SPECIALIST.c.active).where(SPECIALIST.c.name == name)).first()
    if row is None:
        raise UsageError(f"no specialist {name!r} (see: mailcase specialists list)")
    if not row.active:
        raise UsageError(f"specialist {name!r} is deactivated")
    return int(row.id)


def assign(conn: Connection, number: int, specialist: str, now: datetime, actor: str) -> None:
    row = get_case(conn, number)
    sid = _specialist_id(conn, specialist)
    conn.execute(sa.update(CASE).where(CASE.c.id == row.id).values(owner_id=sid, **_staff_touch(conn, row, now)))
    event(conn, row.id, now, actor, CaseEventKind.ASSIGNED, f"owner {specialist}")


def set_status(conn: Connection, number: int, status: CaseStatus, now: datetime, actor: str, detail: str = "") -> Any:
    row = get_case(conn, number)
    allowed: dict[CaseStatus, tuple[CaseStatus, ...]] = {
        CaseStatus.IN_PROGRESS: (CaseStatus.NEW, CaseStatus.ACKNOWLEDGED, CaseStatus.ESCALATED,
                                 CaseStatus.OUT_OF_SCOPE),
        CaseStatus.RESOLVED: (CaseStatus.NEW, CaseStatus.ACKNOWLEDGED, CaseStatus.IN_PROGRESS,
                              CaseStatus.ESCALATED, CaseStatus.OUT_OF_SCOPE),
        CaseStatus.CLOSED: (CaseStatus.RESOLVED, CaseStatus.OUT_OF_SCOPE, CaseStatus.NEW, CaseStatus.ACKNOWLEDGED,
                            CaseStatus.IN_PROGRESS, CaseStatus.ESCALATED),
    }
    if status in allowed and row.status not in allowed[status]:
        raise UsageError(f"case {case_label(number)} is {row.status}: cannot become {status}")
    values: dict[str, Any] = {"status": status.value, **_staff_touch(conn, row, now)}
    if status is CaseStatus.RESOLVED:
        values["resolved_at"] = now
    if status is CaseStatus.CLOSED:
        values["closed_at"] = now
    conn.execute(sa.update(CASE).where(CASE.c.id == row.id).values(**values))
    event(conn, row.id, now, actor, status, detail)
    return row


def escalate(conn: Connection, number: int, tier: str, now: datetime, actor: str, note: str = "") -> str:
    tier = tier.upper()
    if tier not in TIERS:
        raise UsageError(f"tier must be one of {', '.join(TIERS)}")
    row = get_case(conn, number)
    if row.status in CLOSED_CASE_STATUSES:
        raise UsageError(f"case {case_label(number)} is {row.status}: reopen it first")
    if TIERS.index(tier) <= TIERS.index(row.tier):
        raise UsageError(f"case {case_label(number)} is already at {row.tier}")
    # the owner stays: the first specialist keeps ownership (the agreement)
    conn.execute(sa.update(CASE).where(CASE.c.id == row.id).values(
        tier=tier, status=CaseStatus.ESCALATED.value, **_staff_touch(conn, row, now)))
    event(conn, row.id, now, actor, CaseStatus.ESCALATED, f"{row.tier} -> {tier}" + (f": {note}" if note else ""))
    return str(row.tier)


def release_held(conn: Connection, account_id: int, now: datetime, actor: str) -> int:
    """The account's standing is good again: its held cases join the next cutoff
    (which acknowledges them).  The same whether staff or a directory import did it."""
    rows = conn.execute(sa.select(CASE.c.id).where(
        CASE.c.account_id == account_id, CASE.c.status == CaseStatus.HELD.value,
        CASE.c.released_at.is_(None))).scalars().all()
    for case_id in rows:
        conn.execute(sa.update(CASE).where(CASE.c.id == case_id).values(released_at=now))
        event(conn, case_id, now, actor, CaseEventKind.RELEASE_REQUESTED, "standing restored")
    return len(rows)


def reopen(conn: Connection, number: int, now: datetime, actor: str, detail: str = "") -> None:
    row = get_case(conn, number)
    if row.status not in CLOSED_CASE_STATUSES:
        raise UsageError(f"case {case_label(number)} is {row.status}, not resolved or closed")
    reopen_case(conn, row.id, now, actor, detail)


def reopen_case(conn: Connection, case_id: int, now: datetime, actor: str, detail: str) -> None:
    """The case is worked on again: an event, and a survey not sent yet is withdrawn."""
    conn.execute(sa.update(CASE).where(CASE.c.id == case_id).values(
        status=CaseStatus.IN_PROGRESS.value, resolved_at=None, closed_at=None))
    event(conn, case_id, now, actor, CaseEventKind.REOPENED, detail)
    if cancel_pending_surveys(conn, case_id, "the case reopened before the survey went out"):
        event(conn, case_id, now, actor, CaseEventKind.SURVEY_CANCELLED, "the case reopened")


def cancel_pending_surveys(conn: Connection, case_id: int, why: str) -> int:
    """A survey not sent yet is withdrawn (its case reopened: it is not resolved after all)."""
    return int(conn.execute(
        sa.update(OUTBOX).where(OUTBOX.c.case_id == case_id, OUTBOX.c.kind == MailKind.SURVEY.value,
                           OUTBOX.c.status == OutboxStatus.QUEUED.value)
        .values(status=OutboxStatus.CANCELLED.value, status_reason=why[:300])
    ).rowcount)


# -- specialists --------------------------------------------------------------------------


def add_specialist(conn: Connection, name: str, address: str | None, tier: str, now: datetime) -> None:
    tier = tier.upper()
    if tier not in TIERS:
        raise UsageError(f"tier must be one of {', '.join(TIERS)}")
    existing = conn.execute(sa.select(SPECIALIST.c.id).where(SPECIALIST.c.name == name)).first()
    if existing:
        conn.execute(sa.update(SPECIALIST).where(SPECIALIST.c.id == existing[0]).values(
            address=address, tier=tier, active=True))
        return
    conn.execute(sa.insert(SPECIALIST).values(name=name, address=address, tier=tier, active=True,
                                              last_assigned_at=None, created_at=now))


def deactivate_specialist(conn: Connection, name: str) -> None:
    result = conn.execute(sa.update(SPECIALIST).where(SPECIALIST.c.name == name).values(active=False))
    if not result.rowcount:
        raise UsageError(f"no specialist {name!r}")


def list_specialists(conn: Connection) -> list[tuple[str, str | None, str, bool, int]]:
    counts = (
        sa.select(CASE.c.owner_id, sa.func.count().label("n"))
        .where(CASE.c.status.in_(OPEN_CASE_STATUSES)).group_by(CASE.c.owner_id).subquery()
    )
    rows = conn.execute(
        sa.select(SPECIALIST.c.name, SPECIALIST.c.address, SPECIALIST.c.tier, SPECIALIST.c.active,
                  sa.func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.owner_id == SPECIALIST.c.id).order_by(SPECIALIST.c.name)
    ).all()
    return [(r[0], r[1], r[2], bool(r[3]), int(r[4])) for r in rows]


def staff_addresses(conn: Connection) -> frozenset[str]:
    """Specialists' addresses: staff like the configured ones."""
    return frozenset(
        a.lower() for (a,) in conn.execute(sa.select(SPECIALIST.c.address).where(SPECIALIST.c.address.is_not(None)))
    )
