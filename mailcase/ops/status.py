"""What the service is doing, from the database: for `mailcase status` and metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mailcase.config.settings import Config
from mailcase.core.clock import Clock, is_test_clock, real_now
from mailcase.core.states import OPEN_CASE_STATUSES, MessageState, OutboxStatus, PromiseState, WorkerState
from mailcase.cutoff.due import ERROR_KEY, due_cutoffs, readiness
from mailcase.domain import service_state
from mailcase.domain.calendar import BusinessCalendar
from mailcase.domain.oauth import TokenHealth, health
from mailcase.domain.tables import CASE, LEASE, MAILBOX_STATE, MESSAGE, OUTBOX, QUARANTINE, RAW_COPY
from mailcase.ops.promise import counts
from mailcase.outbound.deliver import SMTP_FAILING_KEY

#: ``mailcase status`` exits with these (documented in the README)
EXIT_OK = 0          # running, every worker beating, nothing failing
EXIT_DEGRADED = 1    # running, but something needs a look (a mailbox down, a cutoff overdue, SMTP failing)
EXIT_NOT_RUNNING = 3  # no live service on this database, or its workers are silent (LSB "not running")
EXIT_DATABASE = 75   # the database does not answer (EX_TEMPFAIL)


@dataclass
class DaemonStatus:
    name: str          # daemon:<host>:<pid>
    holder: str
    expires_at: datetime
    alive: bool


@dataclass
class MailboxStatus:
    name: str
    kind: str
    enabled: bool
    mode: str | None
    state: str | None
    state_since: datetime | None
    detail: str | None
    last_sync_ok_at: datetime | None
    heartbeat_at: datetime | None
    worker: str | None
    token: TokenHealth | None
    pending: int
    #: seconds since the worker last wrote its heartbeat (None: never)
    heartbeat_age_seconds: float | None = None
    #: the worker is expected to beat (the service runs, the mailbox is enabled) but has not
    stale: bool = False
    last_error: str | None = None
    last_error_at: datetime | None = None


@dataclass
class Status:
    now: datetime
    test_clock: bool
    sender_authentication: str
    mailboxes: list[MailboxStatus] = field(default_factory=list)
    pending_mail: int = 0
    unclassified_mail: int = 0
    next_cutoff: datetime | None = None
    due_cutoff: datetime | None = None
    cutoff_blocked: str | None = None
    outbox_queued: int = 0
    outbox_failed: int = 0
    outbox_capped: int = 0
    outbox_suppressed: int = 0
    quarantined: int = 0
    held_for_review: int = 0
    open_cases: int = 0
    database: str = "ok"
    daemons: list[DaemonStatus] = field(default_factory=list)
    #: a due cutoff past its mailboxes' grace period, still not closed
    cutoff_overdue: bool = False
    #: the last failure of a cutoff as a whole, and since when it fails
    cutoff_error: str | None = None
    cutoff_error_since: datetime | None = None
    outbox_deferred: int = 0
    #: open cases with no human answer: within 4 h of their due time, past it, past the breach time
    cases_due_soon: int = 0
    cases_overdue: int = 0
    cases_breached: int = 0
    #: the latest delivery error, when mail is waiting on it
    delivery_error: str | None = None
    #: SMTP failing: since when (None: delivering, or nothing tried), and the mails waiting on it
    smtp_failing_since: datetime | None = None
    smtp_waiting: int = 0
    #: what is wrong with the service, one line each (empty: all well)
    problems: list[str] = field(default_factory=list)
    #: items waiting for staff (quarantine, failed mail): shown, not a failure of the service
    notes: list[str] = field(default_factory=list)
    health: str = "ok"        # "ok", "degraded", "not-running"
    exit_code: int = EXIT_OK


def _count(conn: sa.Connection, q: sa.Select[Any]) -> int:
    return int(conn.execute(q).scalar_one())


def collect(engine: Engine, config: Config, clock: Clock) -> Status:
    now = clock.now()
    auth = (f"authserv-id {config.rules.authserv_id}" if config.rules.sender_authentication == "authserv-id"
            else "insecure-off: sender authentication is OFF (anyone can claim a representative's address)")
    st = Status(now, is_test_clock(clock), auth)
    cal = BusinessCalendar(config.calendar)
    with engine.connect() as conn:
        states = {r.name: r for r in conn.execute(sa.select(MAILBOX_STATE))}
        pending_by_box: dict[Any, Any] = dict(conn.execute(
            sa.select(RAW_COPY.c.mailbox, sa.func.count(sa.distinct(MESSAGE.c.id)))
            .join(MESSAGE, MESSAGE.c.id == RAW_COPY.c.message_pk)
            .where(MESSAGE.c.state == MessageState.PENDING.value).group_by(RAW_COPY.c.mailbox)
        ).all())
        wall = real_now()
        for r in conn.execute(sa.select(LEASE).where(LEASE.c.name.like("daemon:%"))):
            st.daemons.append(DaemonStatus(r.name, r.holder, r.expires_at, r.expires_at > wall))
        running = any(d.alive for d in st.daemons)
        stale_after = config.daemon.worker_stale_seconds
        for box in config.mailboxes:
            row = states.get(box.name)
            token = health(engine, f"imap:{box.name}", now) if box.auth != "password" else None
            beat = row.heartbeat_at if row else None
            age = (wall - beat).total_seconds() if beat else None
            st.mailboxes.append(MailboxStatus(
                box.name, box.kind, box.enabled, row.mode if row else None, row.worker_state if row else None,
                row.worker_state_at if row else None, row.last_error if row else None,
                row.last_sync_ok_at if row else None, beat,
                row.worker if row else None, token, int(pending_by_box.get(box.name, 0)),
                heartbeat_age_seconds=age,
                stale=running and box.enabled and (age is None or age > stale_after),
                last_error=row.last_error if row else None, last_error_at=row.last_error_at if row else None,
            ))
        st.pending_mail = _count(conn, sa.select(sa.func.count()).where(MESSAGE.c.state == MessageState.PENDING.value))
        st.unclassified_mail = _count(conn, sa.select(sa.func.count()).where(MESSAGE.c.state.in_(
            [MessageState.STORED.value, MessageState.HEADERS_READ.value, MessageState.PARSED.value])))
        st.held_for_review = _count(conn, sa.select(sa.func.count()).where(MESSAGE.c.state == MessageState.HELD.value))
        st.quarantined = _count(conn, sa.select(sa.func.count()).where(QUARANTINE.c.resolved_at.is_(None)))
        for status, attr in ((OutboxStatus.QUEUED, "outbox_queued"), (OutboxStatus.FAILED, "outbox_failed"),
                             (OutboxStatus.CAPPED, "outbox_capped"), (OutboxStatus.SUPPRESSED, "outbox_suppressed")):
            setattr(st, attr, _count(conn, sa.select(sa.func.count()).where(OUTBOX.c.status == status.value)))

        st.open_cases = _count(conn, sa.select(sa.func.count()).where(CASE.c.status.in_(OPEN_CASE_STATUSES)))
        st.outbox_deferred = _count(conn, sa.select(sa.func.count()).where(
            OUTBOX.c.status == OutboxStatus.QUEUED.value, OUTBOX.c.attempts > 0))
        _smtp(conn, st, now)
        due = due_cutoffs(conn, cal, now, config, limit=1)
        if due:
            st.due_cutoff = due[0]
            ready = readiness(conn, config, due[0], now)
            st.cutoff_blocked = None if ready.ready else ready.waiting_for
            grace = timedelta(minutes=config.batch.mailbox_grace_minutes + 5)
            st.cutoff_overdue = now - due[0] > grace
        promise = counts(conn, now)
        st.cases_due_soon, st.cases_overdue, st.cases_breached = (
            promise[PromiseState.DUE_SOON], promise[PromiseState.OVERDUE], promise[PromiseState.BREACHED])
        failure = service_state.get(conn, ERROR_KEY)
        if failure is not None:
            st.cutoff_error, st.cutoff_error_since = failure
    st.next_cutoff = cal.next_cutoff(now)
    _judge(st, running)
    return st


def _smtp(conn: sa.Connection, st: Status, now: datetime) -> None:
    """Whether delivery is failing: a pass deferred mail and sent none since (``SMTP_FAILING_KEY``),
    or the latest attempt was deferred; with the latest error and the mails waiting."""
    queued = OUTBOX.c.status == OutboxStatus.QUEUED.value
    deferred = sa.and_(queued, OUTBOX.c.attempts > 0, OUTBOX.c.last_error.is_not(None))
    if st.outbox_deferred:
        st.delivery_error = conn.execute(
            sa.select(OUTBOX.c.last_error).where(deferred)
            .order_by(OUTBOX.c.claimed_at.desc(), OUTBOX.c.id.desc()).limit(1)).scalar()
    failing = service_state.get(conn, SMTP_FAILING_KEY)
    last = conn.execute(sa.select(OUTBOX.c.status, OUTBOX.c.last_error).where(
        OUTBOX.c.attempts > 0, OUTBOX.c.claimed_at.is_not(None))
        .order_by(OUTBOX.c.claimed_at.desc(), OUTBOX.c.id.desc()).limit(1)).first()
    last_deferred = last is not None and last.status == OutboxStatus.QUEUED.value and bool(last.last_error)
    if failing is None and not last_deferred:
        return
    waiting = _count(conn, sa.select(sa.func.count()).where(
        queued, sa.or_(OUTBOX.c.attempts > 0, OUTBOX.c.next_attempt_at <= now)))
    if not waiting:  # staff cancelled what waited: nothing is failing now
        return
    st.smtp_waiting = waiting
    if failing is not None:
        st.smtp_failing_since = failing[1]
    else:
        st.smtp_failing_since = conn.execute(sa.select(sa.func.min(OUTBOX.c.claimed_at)).where(deferred)).scalar()
    st.delivery_error = (last.last_error if last_deferred and last is not None else None) or st.delivery_error


def smtp_line(st: Status) -> str | None:
    """``smtp: failing since T (N mails waiting): ERROR``, or None while delivery works."""
    if st.smtp_failing_since is None:
        return None
    return (f"smtp: failing since {st.smtp_failing_since:%Y-%m-%d %H:%M} UTC ({st.smtp_waiting} mails waiting): "
            f"{st.delivery_error or 'no error recorded'}")


def _judge(st: Status, running: bool) -> None:
    """What needs a look, and the exit code that says so."""
    problems = st.problems
    if not running:
        problems.append("no mailcase service is running on this database")
    for m in st.mailboxes:
        if not m.enabled:
            continue
        if m.stale:
            age = "never" if m.heartbeat_age_seconds is None else f"{m.heartbeat_age_seconds:.0f} s ago"
            problems.append(f"mailbox {m.name}: its worker's last heartbeat was {age}")
        elif running and m.state == WorkerState.DOWN:
            problems.append(f"mailbox {m.name} is down: {m.detail or m.last_error or 'no detail'}")
        if m.token is not None and not m.token.ok:
            problems.append(f"mailbox {m.name}: token: {m.token.detail}")
    if st.cutoff_error:
        since = f" since {st.cutoff_error_since:%Y-%m-%d %H:%M} UTC" if st.cutoff_error_since else ""
        problems.append(f"cutoffs fail{since}: {st.cutoff_error}")
    if st.cutoff_overdue and st.due_cutoff is not None:
        problems.append(f"cutoff {st.due_cutoff:%Y-%m-%d %H:%M} UTC is overdue"
                        + (f": {st.cutoff_blocked}" if st.cutoff_blocked else ""))
    smtp = smtp_line(st)
    if smtp:
        problems.append(smtp)
    elif st.delivery_error:
        problems.append(f"outgoing mail is failing ({st.outbox_deferred} deferred): {st.delivery_error}")
    # failed rows and quarantined mail are items for staff, not a service in trouble
    if st.outbox_failed:
        st.notes.append(f"{st.outbox_failed} outgoing mails failed for good (mailcase outbox list --status failed)")
    if st.quarantined:
        st.notes.append(f"{st.quarantined} mails quarantined (mailcase quarantine list)")
    if st.cases_overdue or st.cases_breached:
        st.notes.append(f"{st.cases_overdue} cases past their due time and {st.cases_breached} past their breach time "
                        "without a human answer (mailcase cases list --breached)")
    if not running or any(m.stale for m in st.mailboxes):
        st.health, st.exit_code = "not-running", EXIT_NOT_RUNNING
    elif problems:
        st.health, st.exit_code = "degraded", EXIT_DEGRADED
