"""Cutoff batches: pending mail becomes cases, exactly once, once the mail is in.

"Close every due cutoff", not "run at 09:30": each cutoff between the last
one done and now, oldest first, one transaction per cutoff, one batch at a
time (``pg_try_advisory_xact_lock`` on PostgreSQL; on SQLite the write lock
``BEGIN IMMEDIATE`` takes), a unique row per cutoff, mail claimed with
``UPDATE ... WHERE batch_id IS NULL`` behind the unique mail -> case link.
A crash mid-batch rolls the whole cutoff back; the next run does it again.

A cutoff C closes only when every enabled mailbox has completed a sync that
started after C and all mail received before C is classified.  A mailbox
unreachable for longer than the grace period lets C close with an alert;
its late mail joins the next cutoff, marked late.

At the cutoff the rules chain runs again for every claimed mail against the
directory *as of C*; requests are grouped into cases (a requester's mails in
one thread, or with the same normalised subject unless it is generic); every
mail owed is rendered and queued in the same transaction.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mailcase.config.settings import Config
from mailcase.core.clock import Clock
from mailcase.core.log import kv
from mailcase.core.states import MessageState, Stage
from mailcase.domain import service_state
from mailcase.domain.calendar import BusinessCalendar
from mailcase.domain.cases import CaseAllocator, CaseStatus, create_cases, event, priority_for, staff_addresses
from mailcase.domain.db import insert_ignore, is_outage, is_postgres, transaction
from mailcase.domain.directory import DbDirectory
from mailcase.domain.tables import BATCH, CASE, CASE_EVENT, CASE_MESSAGE, CLASSIFICATION, MAILBOX_STATE, MESSAGE, PERSON
from mailcase.ingest.quarantine import quarantine
from mailcase.mail.subjects import normalise_subject
from mailcase.outbound.effects import EFFECTS
from mailcase.outbound.kb import Suggestion
from mailcase.outbound.kb import count as kb_count
from mailcase.outbound.kb import suggest as kb_suggest
from mailcase.outbound.outbox import OutboxQueue, OutgoingMail
from mailcase.outbound.render import find_templates, render
from mailcase.rules.base import Disposition, Mail, Mark, Outcome
from mailcase.rules.chain import run_chain
from mailcase.rules.classify import DbContext, PassCache, Recorder, load_mails, rule_settings
from mailcase.rules.effects import LinkCase
from mailcase.rules.severity import NAMES as SEVERITY_NAMES

log = logging.getLogger(__name__)
BATCH_LOCK_KEY = 0x6D61696C63617365  # "mailcase"
CHUNK = 500  # mails loaded at once by a cutoff


# -- which cutoffs are due, and may they close ------------------------------------------


def last_done(conn: Connection) -> datetime | None:
    value: datetime | None = conn.execute(sa.select(sa.func.max(BATCH.c.cutoff_at))).scalar()
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def _pending_query() -> sa.Select[Any]:
    return sa.select(MESSAGE.c.id).where(
        MESSAGE.c.state == MessageState.PENDING.value, MESSAGE.c.batch_id.is_(None),
        MESSAGE.c.historical.is_(False),
    )


START_KEY = "batch-start"


def batch_start(conn: Connection, config: Config, now: datetime, record: bool = False) -> datetime:
    """Where a fresh database's cutoffs begin: ``batch.start_at``, else the moment
    this database first ran the cutoff stage (recorded then, with ``record``)."""
    configured = config.batch.start()
    if configured is not None:
        return configured
    found = service_state.get(conn, START_KEY)
    if found is None and record:
        found = service_state.put_once(conn, START_KEY, now.isoformat(), now)
    return datetime.fromisoformat(found[0]) if found else now


def due_cutoffs(conn: Connection, cal: BusinessCalendar, now: datetime, config: Config | None = None,
                limit: int | None = None) -> list[datetime]:
    """The cutoffs that have passed and not been closed, oldest first (at most ``limit``).

    After the last closed cutoff; on a fresh database from the first cutoff
    after both the oldest waiting mail and the start (:func:`batch_start`):
    a mail dated 1971 does not make the desk walk through fifty years.
    """
    last = last_done(conn)
    if last is None:
        first = conn.execute(
            sa.select(sa.func.min(MESSAGE.c.received_at)).where(
                MESSAGE.c.state.in_([MessageState.PENDING.value, MessageState.HEADERS_READ.value,
                                     MessageState.PARSED.value]),
                MESSAGE.c.historical.is_(False),
            )
        ).scalar()
        if first is None:
            return []
        if first.tzinfo is None:
            first = first.replace(tzinfo=UTC)
        start = batch_start(conn, config, now) if config is not None else first
        last = max(cal.cutoff_for(first), cal.next_cutoff(start)) - timedelta(microseconds=1)
    return cal.cutoffs_between(last, now, limit=limit)


@dataclass(frozen=True)
class CatchUp:
    """The cutoffs a run will close: one by one, or (after a long gap) the last alone."""

    cutoffs: list[datetime]
    skipped: int = 0           # cutoffs folded into the catch-up batch
    skipped_from: datetime | None = None


def plan_due(conn: Connection, cal: BusinessCalendar, config: Config, now: datetime) -> CatchUp:
    """The due cutoffs, computed once per run; more than ``batch.catch_up_business_days``
    business days of them become one catch-up batch at the last."""
    days = config.batch.catch_up_business_days
    # enough to tell whether the gap is longer than the limit, never the whole gap
    limit = (days + 1) * cal.cutoffs_per_day
    head = due_cutoffs(conn, cal, now, config, limit=limit)
    if not head:
        return CatchUp([])
    if len(head) < limit and len({cal.local_date(c) for c in head}) <= days:
        return CatchUp(head)
    last = cal.previous_cutoff(now)
    assert last is not None
    skipped = len(head)  # at least this many; the exact count is not worth walking the gap for
    return CatchUp([last], skipped=skipped, skipped_from=head[0])


@dataclass(frozen=True)
class Readiness:
    ready: bool
    late_mailboxes: tuple[str, ...] = ()
    waiting_for: str = ""


def readiness(conn: Connection, config: Config, cutoff: datetime, now: datetime) -> Readiness:
    grace = timedelta(minutes=config.batch.mailbox_grace_minutes)
    late: list[str] = []
    for box in config.mailboxes:
        if not box.enabled:
            continue
        row = conn.execute(sa.select(MAILBOX_STATE.c.last_sync_ok_started_at)
                           .where(MAILBOX_STATE.c.name == box.name)).first()
        synced = row[0] if row else None
        if synced is not None and synced >= cutoff:
            continue
        if now - cutoff >= grace:
            late.append(box.name)
            continue
        return Readiness(False, waiting_for=f"mailbox {box.name} has not completed a sync that started "
                                             f"after the cutoff (grace until {cutoff + grace:%H:%M} UTC)")
    unclassified = conn.execute(
        sa.select(sa.func.count()).select_from(MESSAGE).where(
            MESSAGE.c.received_at < cutoff, MESSAGE.c.historical.is_(False),
            MESSAGE.c.state.in_([MessageState.STORED.value, MessageState.HEADERS_READ.value,
                                 MessageState.PARSED.value]),
        )
    ).scalar_one()
    if unclassified:
        return Readiness(False, tuple(late), f"{unclassified} mails received before the cutoff are not classified yet")
    return Readiness(True, tuple(late))


# -- running one cutoff --------------------------------------------------------------------


@dataclass
class CutoffResult:
    cutoff: datetime
    batch_id: int | None = None
    mails: int = 0
    cases: list[int] = field(default_factory=list)  # case numbers
    follow_ups: int = 0
    notices: int = 0
    notices_withheld: int = 0
    acknowledgements: int = 0
    released: int = 0
    late_mails: int = 0
    late_mailboxes: tuple[str, ...] = ()
    #: mails that failed at this cutoff (quarantined with the reason; the rest went on)
    quarantined: int = 0
    #: cutoffs folded into this one (a catch-up after a long gap)
    caught_up: int = 0
    dry_run: bool = False

    def summary(self) -> str:
        late = f", late mailboxes {', '.join(self.late_mailboxes)}" if self.late_mailboxes else ""
        return (
            f"cutoff {self.cutoff:%Y-%m-%d %H:%M} UTC: {self.mails} mails -> {len(self.cases)} new cases"
            f", {self.follow_ups} follow-ups, {self.acknowledgements} acknowledgements, "
            f"{self.notices} notices queued ({self.notices_withheld} withheld)"
            + (f", {self.released} held cases released" if self.released else "")
            + (f", {self.late_mails} late mails" if self.late_mails else "") + late
            + (f", {self.quarantined} quarantined" if self.quarantined else "")
            + (f", catch-up of {self.caught_up} missed cutoffs" if self.caught_up else "")
        )


def _lock(conn: Connection) -> bool:
    if is_postgres(conn):
        return bool(conn.execute(sa.text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": BATCH_LOCK_KEY}).scalar())
    return True  # SQLite: BEGIN IMMEDIATE already holds the database's write lock


class _Groups:
    """Union-find over a requester's request mails in one batch."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def group_requests(items: Sequence[tuple[Mail, Outcome]], generic: set[str]) -> list[list[int]]:
    """Indexes of ``items`` grouped into cases (items are one requester's, oldest first)."""
    g = _Groups(len(items))
    by_id = {m.info.message_id: i for i, (m, _) in enumerate(items)}
    by_subject: dict[str, int] = {}
    for i, (mail, _) in enumerate(items):
        for ref in mail.info.in_reply_to + mail.info.references:
            j = by_id.get(ref)
            if j is not None:
                g.join(i, j)
        subject = normalise_subject(mail.subject)
        if subject not in generic:
            if subject in by_subject:
                g.join(i, by_subject[subject])
            else:
                by_subject[subject] = i
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(items)):
        groups[g.find(i)].append(i)
    return sorted(groups.values(), key=lambda idxs: idxs[0])


def _template_vars(config: Config, zone: ZoneInfo) -> dict[str, Any]:
    return {"signature": f"{config.outgoing.from_name}\n{config.outgoing.from_address}", "zone": zone}


@dataclass
class PlannedCase:
    """One case a cutoff will make: its mails, its row, its suggestions."""

    group: list[tuple[Mail, Outcome]]
    values: dict[str, Any]
    suggestions: list[Suggestion]
    view: dict[str, Any] = field(default_factory=dict)

    @property
    def pks(self) -> list[int]:
        return [m.pk for m, _ in self.group if m.pk is not None]


@dataclass
class Unit:
    """What stands or falls together at a cutoff: a requester's new cases and
    the mail that tells them.  A unit that cannot be made (a template that
    fails on it, an address no mail can carry, a row the database refuses)
    is quarantined whole; every other unit goes on."""

    requester: str
    cases: list[PlannedCase]
    #: composed outbox rows, and for each the case numbers it is about
    mail: list[tuple[dict[str, Any], tuple[int, ...]]] = field(default_factory=list)

    @property
    def pks(self) -> list[int]:
        return [pk for case in self.cases for pk in case.pks]


def _is_transient(exc: BaseException) -> bool:
    """A database that went away: the whole cutoff rolls back and runs again later."""
    return is_outage(exc)


class CutoffRun:
    """One cutoff, closed inside the caller's transaction.

    Phases, each small: open the batch row; claim the pending mail; judge
    every mail again (the directory as of the cutoff); plan the cases (pure:
    grouping, rows, suggestions); make them (numbers, mail composed per
    unit, rows written in bulk); release held cases; record the counts.
    A failure of one item quarantines that item only (stage ``batch``).
    """

    def __init__(self, conn: Connection, config: Config, cal: BusinessCalendar, cutoff: datetime,
                 now: datetime, late_mailboxes: tuple[str, ...] = (), dry_run: bool = False) -> None:
        self.conn, self.config, self.cal, self.cutoff, self.now = conn, config, cal, cutoff, now
        self.result = CutoffResult(cutoff, late_mailboxes=late_mailboxes, dry_run=dry_run)
        self.key = config.hmac_key()
        self.settings = rule_settings(config)
        self.templates = find_templates(config.outgoing.templates_dir)
        self.base_vars = _template_vars(config, cal.zone)
        self.outbox = OutboxQueue(conn, config, self.key, now)
        self.previous: datetime | None = None
        self.batch_id = 0
        # the promise counts from when the cutoff processed the mail: its own
        # time when it runs on time, the time it actually ran when it ran late
        self.processed_at = cutoff if now - cutoff < timedelta(hours=1) else now
        self.requests: dict[tuple[str, int | None], list[tuple[Mail, Outcome]]] = defaultdict(list)

    # -- phases ------------------------------------------------------------------------

    def run(self) -> CutoffResult | None:
        if not self._open():
            return None
        claimed = self._claim()
        self._judge(claimed)
        units = self._plan()
        self._make(units)
        self.result.released = _release_held(self)
        self.outbox.flush()
        r = self.result
        self.conn.execute(sa.update(BATCH).where(BATCH.c.id == self.batch_id).values(
            mails=r.mails, cases=len(r.cases), follow_ups=r.follow_ups, notices=r.notices,
            acknowledgements=r.acknowledgements, late_mails=r.late_mails))
        if r.late_mailboxes:
            log.warning("event=alert cutoff=%s what=%s", self.cutoff.isoformat(),
                        kv(f"cutoff closed without a sync of {', '.join(r.late_mailboxes)}: their late mail "
                           "joins the next"))
        return r

    def _open(self) -> bool:
        conn, cutoff = self.conn, self.cutoff
        if _batch_exists(conn, cutoff):
            return False
        previous = conn.execute(sa.select(sa.func.max(BATCH.c.cutoff_at)).where(BATCH.c.cutoff_at < cutoff)).scalar()
        if previous is not None and previous.tzinfo is None:
            previous = previous.replace(tzinfo=UTC)
        self.previous = previous
        self.batch_id = int(conn.execute(
            sa.insert(BATCH).values(cutoff_at=cutoff, ran_at=self.now,
                                    late_mailboxes=list(self.result.late_mailboxes)).returning(BATCH.c.id)
        ).scalar_one())
        self.result.batch_id = self.batch_id
        return True

    def _claim(self) -> list[int]:
        conn = self.conn
        pks = [r[0] for r in conn.execute(
            _pending_query().where(MESSAGE.c.received_at < self.cutoff).order_by(MESSAGE.c.received_at, MESSAGE.c.id)
        )]
        for i in range(0, len(pks), 500):
            conn.execute(sa.update(MESSAGE).where(MESSAGE.c.id.in_(pks[i : i + 500]), MESSAGE.c.batch_id.is_(None))
                         .values(batch_id=self.batch_id))
        claimed = [r[0] for r in conn.execute(sa.select(MESSAGE.c.id).where(MESSAGE.c.batch_id == self.batch_id)
                                              .order_by(MESSAGE.c.received_at, MESSAGE.c.id))]
        self.result.mails = len(claimed)
        return claimed

    def _quarantine(self, pks: Sequence[int], what: str, exc: BaseException) -> None:
        """Quarantine mails that failed at this cutoff; raise again if the database is gone."""
        if _is_transient(exc):
            raise exc
        log.error("event=cutoff-item-failed cutoff=%s messages=%s what=%s error=%s",
                  self.cutoff.isoformat(), ",".join(map(str, pks)), kv(what), kv(f"{type(exc).__name__}: {exc}"))
        for pk in pks:
            quarantine(self.conn, pk, Stage.BATCH, exc, self.now, context=what)
        self.result.quarantined += len(pks)

    def _judge(self, claimed: list[int]) -> None:
        """The rules again for every claimed mail, against the directory as of the cutoff."""
        conn, cutoff, result = self.conn, self.cutoff, self.result
        directory = DbDirectory(conn, cutoff, self.config.staff, staff_addresses(conn))
        released_from_review = _released_from_review(conn, claimed)
        cache = PassCache()
        recorder = Recorder(conn, f"cutoff {cutoff:%Y-%m-%dT%H:%MZ}", self.now, self.config, EFFECTS, cache,
                            self.settings)
        notice_only: list[int] = []
        # in chunks: a cutoff after a long outage can hold tens of thousands of mails
        # (load_mails reads only the head of each: no attachment is held)
        for start in range(0, len(claimed), CHUNK):
            chunk = claimed[start : start + CHUNK]
            mails = load_mails(conn, chunk, reread_headers=False, settings=self.settings)
            cache.prefetch(conn, list(mails.values()), directory)
            for pk in chunk:
                mail = mails.pop(pk)
                try:
                    ctx = DbContext(conn, cutoff, self.settings, directory, self.key, cache, message_pk=pk,
                                    cutoff_of=self.cal.cutoff_for)
                    disabled = frozenset({"floods"}) if pk in released_from_review else frozenset()
                    outcome = run_chain(mail, ctx, disabled=disabled)
                    final = outcome.final
                    notice_row = None
                    if final is Disposition.NOTICE_ONLY and outcome.notice is not None and outcome.notice_allowed:
                        # composed before anything is recorded: a mail that cannot
                        # be answered is quarantined whole, not half-recorded
                        notice_row = self.outbox.prepare(_notice_mail(self, mail, outcome, None))
                    recorder.add(mail, outcome)
                except Exception as exc:  # one mail fails, not the cutoff
                    self._quarantine([pk], "judging the mail at the cutoff", exc)
                    continue
                if self.previous is not None and mail.received_at < self.previous:
                    result.late_mails += 1
                if final is Disposition.PENDING:
                    sender = outcome.sender
                    acc = sender.account.id if sender and sender.account else None
                    self.requests[((sender.address if sender else None) or mail.sender or "", acc)].append(
                        (mail, outcome))
                elif final is Disposition.NOTICE_ONLY:
                    if notice_row is not None:
                        assert outcome.notice is not None
                        self.outbox.put(notice_row)
                        cache.add_notice(_people_vars(outcome, mail)["requester"], outcome.notice.value, cutoff)
                        result.notices += 1
                    elif outcome.notice is not None:
                        result.notices_withheld += 1
                    notice_only.append(pk)
                elif final in (Disposition.FOLLOW_UP, Disposition.STAFF_NOTE):
                    result.follow_ups += 1
                # suppressed / held: the recorder sets the state
            recorder.flush()
            self.outbox.flush()  # the next chunk's notice lookups read the outbox
        for i in range(0, len(notice_only), CHUNK):
            _set_state(conn, notice_only[i : i + CHUNK], MessageState.BATCHED, self.now)

    def _plan(self) -> list[Unit]:
        """Group each requester's requests into cases; pure but for the KB lookups."""
        config = self.config
        generic = {s.lower() for s in config.batch.generic_subjects}
        kb_ready = config.kb.suggestions > 0 and kb_count(self.conn) > 0
        units: list[Unit] = []
        for (requester, _account_id), items in self.requests.items():
            unit = Unit(requester, [])
            for idxs in group_requests(items, generic):
                group = [items[i] for i in idxs]
                suggestions: list[Suggestion] = []
                if kb_ready:
                    first_mail = group[0][0]
                    try:
                        suggestions = kb_suggest(self.conn, f"{first_mail.subject}\n{first_mail.reply_text}",
                                                 config.kb.suggestions, config.kb.min_score)
                    except Exception as exc:  # a suggestion is a courtesy: never a reason to fail
                        if _is_transient(exc):
                            raise
                        log.warning("event=kb-suggest-failed message=%s error=%s", first_mail.pk, kv(exc))
                kb_answer = bool(suggestions) and suggestions[0].score >= config.kb.answer_score
                values = _case_values(group, self.previous, self.now, self.batch_id, kb_answer,
                                      self.processed_at, self.cal)
                unit.cases.append(PlannedCase(group, values, suggestions))
            units.append(unit)
        return units

    def _make(self, units: list[Unit]) -> None:
        """Number the cases, compose their mail, then write them in bulk."""
        allocator = CaseAllocator(self.conn, self.now)
        ready: list[Unit] = []
        for unit in units:
            mark = allocator.checkpoint()
            try:
                for case in unit.cases:
                    case.values["number"] = allocator.number()
                    case.values["owner_id"] = allocator.owner()
                    case.view = _case_view(case)
                unit.mail = _unit_mail(self, unit)
            except Exception as exc:
                allocator.rollback(mark)
                self._quarantine(unit.pks, f"making the case(s) of {unit.requester}", exc)
                continue
            ready.append(unit)
        self.outbox.flush()
        for start in range(0, len(ready), CHUNK):
            self._write(ready[start : start + CHUNK], allocator)
        allocator.flush()

    def _write(self, units: list[Unit], allocator: CaseAllocator) -> None:
        """Insert the units' cases, links and mail; if the database refuses one
        row, find it unit by unit and quarantine only that unit."""
        try:
            with self.conn.begin_nested():
                self._insert(units, allocator)
            return
        except Exception as exc:
            if _is_transient(exc):
                raise
            self.outbox.discard()
        for unit in units:
            try:
                with self.conn.begin_nested():
                    self._insert([unit], allocator)
            except Exception as exc:
                self.outbox.discard()
                self._quarantine(unit.pks, f"writing the case(s) of {unit.requester}", exc)

    def _insert(self, units: list[Unit], allocator: CaseAllocator) -> None:
        planned = [(case.group, case.values) for unit in units for case in unit.cases]
        made = _make_cases(self.conn, planned, self.now, self.result, allocator)
        ids = {number: case_id for case_id, number in made}
        for unit in units:
            for row, numbers in unit.mail:
                case_ids = [ids[n] for n in numbers]
                self.outbox.put({**row, "case_id": case_ids[0] if case_ids else None, "case_ids": case_ids})
                if row["kind"] == "ack":
                    self.result.acknowledgements += 1
                else:
                    self.result.notices += 1
        self.outbox.flush()


def run_cutoff(
    conn: Connection, config: Config, cal: BusinessCalendar, cutoff: datetime, now: datetime,
    late_mailboxes: tuple[str, ...] = (), dry_run: bool = False,
) -> CutoffResult | None:
    """Close one cutoff inside the caller's transaction; None if it was done already."""
    return CutoffRun(conn, config, cal, cutoff, now, late_mailboxes, dry_run).run()


def _batch_exists(conn: Connection, cutoff: datetime) -> bool:
    return conn.execute(sa.select(BATCH.c.id).where(BATCH.c.cutoff_at == cutoff)).first() is not None


def _released_from_review(conn: Connection, pks: Sequence[int]) -> set[int]:
    if not pks:
        return set()
    from mailcase.domain.tables import VERDICT

    return {r[0] for r in conn.execute(
        sa.select(VERDICT.c.message_pk).where(VERDICT.c.message_pk.in_(list(pks)), VERDICT.c.name == "released")
    )}


def _set_state(conn: Connection, pks: Sequence[int], state: MessageState, now: datetime) -> None:
    conn.execute(sa.update(MESSAGE).where(MESSAGE.c.id.in_(list(pks))).values(state=state.value, state_changed_at=now))


def _repeat_of(flags: Sequence[str]) -> int | None:
    for f in flags:
        if f.startswith("repeats-case-"):
            return int(f.rsplit("-", 1)[1])
    return None


def _case_values(
    group: list[tuple[Mail, Outcome]], previous: datetime | None, now: datetime, batch_id: int,
    kb_answer: bool, processed_at: datetime, cal: BusinessCalendar,
) -> dict[str, Any]:
    """The case row a group of requests becomes (number and owner come at insert)."""
    first_mail, first = group[0]
    sender = first.sender
    severity = min(o.severity for _, o in group)
    held = any(o.hold for _, o in group)
    out_of_scope = any(o.out_of_scope for _, o in group)
    flags: list[str] = []
    for _, o in group:
        flags += [f for f in o.flags if f not in flags]
    if previous is not None and any(m.received_at < previous for m, _ in group):
        flags.append("late")  # received before an earlier cutoff, arrived after it closed
    if kb_answer:
        flags.append("kb-answer")  # an abuse flag: the knowledge base answers this
    linked = next((e.case_id for _, o in group for e in o.effects if isinstance(e, LinkCase)), None)
    received = min(m.received_at for m, _ in group)
    status = CaseStatus.HELD if held else CaseStatus.OUT_OF_SCOPE if out_of_scope else CaseStatus.NEW
    return {
        "account_id": sender.account.id if sender and sender.account else None,
        "requester": (sender.address if sender else None) or first_mail.sender or "",
        "person_id": sender.person.id if sender and sender.person else None,
        "subject": (first_mail.subject or "(no subject)")[:500],
        "severity": severity, "priority": priority_for(severity, held, out_of_scope), "tier": "SSI",
        "status": status.value, "out_of_scope": out_of_scope, "held": held,
        "no_auto_reply": all(Mark.NO_AUTO_REPLY in o.marks for _, o in group),
        "flags": flags, "linked_case_id": linked, "batch_id": batch_id,
        "released_at": None, "received_at": received, "processed_at": processed_at,
        # "acknowledged within 24 to 48 hours from the time they are processed": a
        # human answer is due one business day after the cutoff, at the latest two
        "ack_due_at": cal.add_business_days(processed_at, 1), "ack_breach_at": cal.add_business_days(processed_at, 2),
        "receipt_sent_at": None, "first_response_at": None, "first_staff_action_at": None, "resolved_at": None,
        "closed_at": None,
    }


def _case_view(case: PlannedCase) -> dict[str, Any]:
    """What the templates show of a planned case."""
    values = case.values
    return {
        "number": values["number"], "subject": values["subject"],
        "severity_name": SEVERITY_NAMES.get(values["severity"], str(values["severity"])),
        "repeat_of": _repeat_of(values["flags"]),
        "suggestions": [{"title": x.title, "url": x.url} for x in case.suggestions],
    }


def _make_cases(
    conn: Connection, planned: Sequence[tuple[list[tuple[Mail, Outcome]], dict[str, Any]]], now: datetime,
    result: CutoffResult, allocator: CaseAllocator,
) -> list[tuple[int, int]]:
    """Insert the cases of many groups, link their mails, mark them batched: a
    handful of statements, not five per case."""
    made = create_cases(conn, [values for _, values in planned], now, "batch", allocator)
    links: list[dict[str, Any]] = []
    linked: list[dict[str, Any]] = []
    for (group, values), (case_id, number) in zip(planned, made, strict=True):
        pks = [m.pk for m, _ in group if m.pk is not None]
        log.debug("event=case-created case=%s messages=%s requester=%s severity=%s status=%s", number,
                 ",".join(str(pk) for pk in pks), kv(values["requester"]), values["severity"], values["status"])
        links += [{"message_pk": pk, "case_id": case_id, "role": "request", "at": now} for pk in pks]
        if values["linked_case_id"]:
            linked.append({"case_id": case_id, "at": now, "actor": "batch", "kind": "linked",
                           "detail": f"follows up closed case id {values['linked_case_id']}"})
        result.cases.append(number)
    insert_ignore(conn, CASE_MESSAGE, links, ["message_pk"])
    pks = [link["message_pk"] for link in links]
    for i in range(0, len(pks), CHUNK):
        _set_state(conn, pks[i : i + CHUNK], MessageState.BATCHED, now)
    if links:
        conn.execute(sa.update(CLASSIFICATION).where(CLASSIFICATION.c.message_pk == sa.bindparam("b_pk"))
                     .values(case_pk=sa.bindparam("b_case")),
                     [{"b_pk": link["message_pk"], "b_case": link["case_id"]} for link in links])
    if linked:
        conn.execute(sa.insert(CASE_EVENT), linked)
    return made


def _people_vars(outcome: Outcome, mail: Mail) -> dict[str, Any]:
    """The requester, greeted by the directory's name or by none: a display name is
    the sender's to write (an impostor's may hold a representative's address)."""
    sender = outcome.sender
    name = sender.person.name if sender and sender.person and sender.person.name else ""
    return {"requester": (sender.address if sender else None) or mail.sender or "", "requester_name": name}


def _notice_mail(
    run: CutoffRun, mail: Mail, outcome: Outcome, case: PlannedCase | None, notice_override: str | None = None,
) -> OutgoingMail:
    notice = notice_override or (outcome.notice.value if outcome.notice else "")
    sender = outcome.sender
    account = sender.account if sender else None
    authenticated = bool(outcome.auth and (outcome.auth.dmarc_pass or not outcome.auth.checked))
    scope_category = next((f.split(":", 1)[1] for f in outcome.flags if f.startswith("out-of-scope:")), "such")
    variables = {
        **run.base_vars, **_people_vars(outcome, mail), "notice": notice,
        "original_subject": mail.subject or "(no subject)",
        "account_name": account.name if account else "",
        # administrator names only to a sender whose mail is authenticated
        "administrators": list(account.administrators) if account and authenticated else [],
        "pin_locked": bool(account and account.pin_locked),
        "pin_problem": next((v.name for v in outcome.verdicts if v.rule == "pin"), ""),
        "scope_category": scope_category,
        "cases": [case.view] if case else [],
    }
    rendered = render(run.templates, "notice", variables)
    number = case.values["number"] if case else None
    key_text = f"notice:{notice}:case:{number}" if case is not None else f"notice:{notice}:message:{mail.pk}"
    return OutgoingMail(
        key=key_text, kind="notice", notice_kind=notice, to_addr=variables["requester"],
        to_name=variables["requester_name"], rendered=rendered, case_number=number,
        message_pk=mail.pk, batch_id=run.batch_id, in_reply_to=mail.info.message_id,
        references=mail.info.references,
    )


def _promise_vars(run: CutoffRun, due: datetime, breach: datetime) -> dict[str, Any]:
    zone = run.base_vars["zone"]
    return {"cutoff": run.cutoff.astimezone(zone), "cutoff_words": run.cal.describe_cutoffs(),
            "promise_due": due.astimezone(zone), "promise_breach": breach.astimezone(zone)}


def _unit_mail(run: CutoffRun, unit: Unit) -> list[tuple[dict[str, Any], tuple[int, ...]]]:
    """The unit's mail, composed: a notice for each held or out-of-scope case
    (to a sender who may have one), and an acknowledgement for each other
    case -- its own, with its token in the subject, answering the case's first
    mail, so that a reply to it lands in exactly that case."""
    out: list[tuple[dict[str, Any], tuple[int, ...]]] = []
    acked: list[PlannedCase] = []
    for case in unit.cases:
        values = case.values
        first_mail, first_outcome = case.group[0]
        if values["held"] or values["out_of_scope"]:
            notice = "hold" if values["held"] else "out-of-scope"
            if any(o.notice_allowed for _, o in case.group) or not values["no_auto_reply"]:
                om = _notice_mail(run, first_mail, first_outcome, case, notice_override=notice)
                out.append((run.outbox.prepare(om), (values["number"],)))
            continue
        if values["no_auto_reply"]:
            continue  # automatic mail from a representative: a case, no acknowledgement
        acked.append(case)
    for case in acked:
        first_mail, first_outcome = case.group[0]
        number = case.values["number"]
        variables = {
            **run.base_vars, **_people_vars(first_outcome, first_mail),
            **_promise_vars(run, case.values["ack_due_at"], case.values["ack_breach_at"]),
            "case": case.view, "cases": [case.view],
            # the requester's other new cases of this cutoff, named, each with its own mail
            "other_cases": [c.view for c in acked if c is not case],
            "suggestions": case.view["suggestions"][:3],
        }
        rendered = render(run.templates, "ack", variables)
        om = OutgoingMail(
            key=f"ack:case:{number}", kind="ack", notice_kind=None,
            to_addr=unit.requester, to_name=variables["requester_name"], rendered=rendered, case_number=number,
            message_pk=first_mail.pk, batch_id=run.batch_id, in_reply_to=first_mail.info.message_id,
            references=first_mail.info.references,
        )
        out.append((run.outbox.prepare(om), (number,)))
    return out


def _release_held(run: CutoffRun) -> int:
    """Held cases whose account's standing was restored before the cutoff: acknowledged now.
    One case that cannot be acknowledged stays held (its error logged); the rest go on."""
    conn, cutoff, now, base = run.conn, run.cutoff, run.now, run.base_vars
    rows = conn.execute(sa.select(CASE).where(
        CASE.c.status == CaseStatus.HELD.value, CASE.c.released_at.is_not(None), CASE.c.released_at <= cutoff
    )).all()
    released = 0
    for row in rows:
        try:
            with conn.begin_nested():
                conn.execute(sa.update(CASE).where(CASE.c.id == row.id).values(
                    status=CaseStatus.NEW.value, held=False, priority=row.severity, batch_id=run.batch_id))
                event(conn, row.id, now, "batch", "released", "account back in good standing")
                due, breach = run.cal.add_business_days(run.processed_at, 1), run.cal.add_business_days(
                    run.processed_at, 2)
                # released: processed now, and the promise runs from here
                conn.execute(sa.update(CASE).where(CASE.c.id == row.id).values(
                    processed_at=run.processed_at, ack_due_at=due, ack_breach_at=breach))
                if not row.no_auto_reply:
                    person = conn.execute(sa.select(PERSON.c.name).where(PERSON.c.id == row.person_id)).scalar()
                    view = {"number": row.number, "subject": row.subject,
                            "severity_name": SEVERITY_NAMES.get(row.severity, str(row.severity)), "repeat_of": None,
                            "suggestions": []}
                    rendered = render(run.templates, "ack", {
                        **base, "requester": row.requester, "requester_name": person or "", "case": view,
                        "cases": [view], "other_cases": [], "suggestions": [], **_promise_vars(run, due, breach),
                    })
                    first = conn.execute(
                        sa.select(MESSAGE.c.message_id).join(CASE_MESSAGE, CASE_MESSAGE.c.message_pk == MESSAGE.c.id)
                        .where(CASE_MESSAGE.c.case_id == row.id).order_by(MESSAGE.c.id).limit(1)
                    ).scalar()
                    run.outbox.add(OutgoingMail(
                        key=f"ack:released:{row.id}", kind="ack", notice_kind=None, to_addr=row.requester,
                        to_name=person or "", rendered=rendered, case_id=row.id, case_number=row.number,
                        case_ids=(row.id,), batch_id=run.batch_id, in_reply_to=first,
                    ))
                    run.outbox.flush()
        except Exception as exc:
            if _is_transient(exc):
                raise
            run.outbox.discard()
            log.error("event=release-failed case=%s error=%s", row.number, kv(f"{type(exc).__name__}: {exc}"))
            continue
        released += 1
    return released


# -- the driver ----------------------------------------------------------------------------


class _DryRun(Exception):
    """Raised to roll a dry run's transaction back."""

    def __init__(self, result: CutoffResult | None) -> None:
        self.result = result


@dataclass
class BatchRun:
    results: list[CutoffResult] = field(default_factory=list)
    waiting: str = ""
    next_cutoff: datetime | None = None


ERROR_KEY = "cutoff-error"


def run_due(engine: Engine, config: Config, clock: Clock, *, dry_run: bool = False, limit: int = 1000) -> BatchRun:
    """Close every due cutoff that may close, oldest first, one transaction each.

    The list of due cutoffs is worked out once per run (and again only when
    it is used up, for the clock moves on); a gap of more than
    ``batch.catch_up_business_days`` closes as one catch-up batch.
    """
    cal = BusinessCalendar(config.calendar)
    run = BatchRun()
    plan: CatchUp | None = None
    for _ in range(limit):
        now = clock.now()
        result: CutoffResult | None = None
        try:
            with transaction(engine) as conn:
                if not _lock(conn):
                    run.waiting = "another process is running a batch"
                    return run
                batch_start(conn, config, now, record=not dry_run)
                done = last_done(conn)
                if plan is not None:
                    plan = CatchUp([c for c in plan.cutoffs if done is None or c > done], plan.skipped,
                                   plan.skipped_from)
                if plan is None or not plan.cutoffs:
                    plan = plan_due(conn, cal, config, now)
                if not plan.cutoffs:
                    run.next_cutoff = cal.next_cutoff(now)
                    return run
                cutoff = plan.cutoffs[0]
                ready = readiness(conn, config, cutoff, now)
                if not ready.ready:
                    run.waiting = f"cutoff {cutoff:%Y-%m-%d %H:%M} UTC waits: {ready.waiting_for}"
                    return run
                result = run_cutoff(conn, config, cal, cutoff, now, ready.late_mailboxes, dry_run)
                if result is not None and plan.skipped:
                    result.caught_up = plan.skipped
                    log.warning("event=alert cutoff=%s what=%s", cutoff.isoformat(), kv(
                        f"{plan.skipped}+ missed cutoffs since {plan.skipped_from:%Y-%m-%d %H:%M} UTC closed as "
                        f"one catch-up batch (more than {config.batch.catch_up_business_days} business days)"))
                if dry_run:
                    raise _DryRun(result)
                service_state.delete(conn, ERROR_KEY)
        except _DryRun as dry:
            if dry.result:
                run.results.append(dry.result)
            return run
        except Exception as exc:
            _record_failure(engine, plan, now, exc)
            raise
        plan = CatchUp(plan.cutoffs[1:])
        if result is not None:
            run.results.append(result)
            log.info("event=cutoff-closed %s", kv(result.summary()))
    return run


def _record_failure(engine: Engine, plan: CatchUp | None, now: datetime, exc: BaseException) -> None:
    """A cutoff that failed as a whole is shown by ``status`` until one closes again."""
    what = f"cutoff {plan.cutoffs[0]:%Y-%m-%d %H:%M} UTC" if plan and plan.cutoffs else "cutoffs"
    try:
        with transaction(engine) as conn:
            found = service_state.get(conn, ERROR_KEY)
            since = found[1] if found else now
            service_state.put(conn, ERROR_KEY, f"{what}: {type(exc).__name__}: {exc}"[:2000], since)
    except Exception:
        pass  # the database is what failed: the log has it
