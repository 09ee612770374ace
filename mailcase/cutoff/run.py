"""One cutoff: pending mail becomes cases, exactly once, inside the caller's transaction.

Phases, each small: open the batch row; claim the pending mail; judge every
mail again (the directory as of the cutoff); plan the cases (pure:
:mod:`mailcase.cutoff.plan`), with the colleagues each copies
(:mod:`mailcase.cutoff.cc`); look up their suggestions; number them and
compose their mail; write them in bulk; release held cases; record the
counts.  A failure of one item quarantines that item only (stage
``batch``); a database that went away rolls the whole cutoff back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcase.config.settings import Config
from mailcase.core.log import kv
from mailcase.core.states import Stage
from mailcase.cutoff.cc import lookup as cc_lookup
from mailcase.cutoff.compose import Composer
from mailcase.cutoff.judge import Judge
from mailcase.cutoff.make import (
    Batch,
    QueuedMail,
    ReadyUnit,
    Writer,
    claim,
    is_transient,
    mark_batched,
    number_cases,
    open_batch,
)
from mailcase.cutoff.plan import PlanContext, PlannedCase, Request, Unit, plan
from mailcase.cutoff.release import release_held
from mailcase.domain.calendar import BusinessCalendar
from mailcase.domain.cases import CaseAllocator, staff_addresses
from mailcase.domain.directory import DbDirectory
from mailcase.domain.tables import BATCH
from mailcase.ingest.quarantine import quarantine
from mailcase.outbound.kb import Suggestion
from mailcase.outbound.kb import count as kb_count
from mailcase.outbound.kb import suggest as kb_suggest
from mailcase.outbound.outbox import OutboxQueue
from mailcase.outbound.staffnews import notify_batch_assigned
from mailcase.rules.base import Disposition, Mail

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CutoffJob:
    """Which cutoff to close, when, and how."""

    cutoff: datetime
    now: datetime
    #: mailboxes that have not synced since the cutoff (past the grace period)
    late_mailboxes: tuple[str, ...] = ()
    dry_run: bool = False


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


@dataclass(frozen=True)
class Judged:
    """A mail judged at the cutoff, and the notice composed for it (queued once recorded)."""

    request: Request
    notice_row: dict[str, Any] | None = None


class Cutoff:
    """One cutoff, closed inside the caller's transaction: :meth:`run`."""

    def __init__(self, conn: Connection, config: Config, cal: BusinessCalendar, job: CutoffJob) -> None:
        self.conn, self.config, self.cal, self.job = conn, config, cal, job
        self.result = CutoffResult(job.cutoff, late_mailboxes=job.late_mailboxes, dry_run=job.dry_run)
        self.outbox = OutboxQueue(conn, config, config.hmac_key(), job.now)

    def run(self) -> CutoffResult | None:
        """The cutoff's counts; None if it was closed already."""
        batch = open_batch(self.conn, self.cal, self.job.cutoff, self.job.now, self.job.late_mailboxes)
        if batch is None:
            return None
        self.result.batch_id = batch.id
        composer = Composer.for_batch(self.config, self.cal, batch)
        requests = self._judge(batch, composer, self._claim(batch))
        units = self._suggest(plan(requests, self._plan_context(batch, requests)))
        # numbers and owners from the cases as they are now (judging may have reopened some)
        allocator = CaseAllocator(self.conn, self.job.now)
        self._write(batch, allocator, self._compose(composer, allocator, units))
        self.result.released = release_held(self.conn, batch, composer, self.outbox)
        self.outbox.flush()
        notify_batch_assigned(self.conn, self.config, batch.id, self.job.now)
        self._close(batch)
        return self.result

    # -- phases ------------------------------------------------------------------------

    def _claim(self, batch: Batch) -> list[int]:
        claimed = claim(self.conn, batch)
        self.result.mails = len(claimed)
        return claimed

    def _judge(self, batch: Batch, composer: Composer, claimed: list[int]) -> list[Request]:
        """The rules again for every claimed mail; the requests left pending, oldest first.
        Notices are queued as they are decided (the next mails count them)."""
        judge = Judge(self.conn, self.config, self.cal, batch, claimed)
        requests: list[Request] = []
        answered: list[int] = []  # notice-only mails: done with once judged
        for chunk in judge.chunks(claimed):
            for pk, mail in chunk:
                judged = self._judge_one(judge, composer, pk, mail)
                if judged is None:
                    continue
                outcome = judged.request.outcome
                if batch.previous is not None and mail.received_at < batch.previous:
                    self.result.late_mails += 1
                final = outcome.final
                if final is Disposition.PENDING:
                    requests.append(judged.request)
                elif final is Disposition.NOTICE_ONLY:
                    self._queue_notice(judge, judged)
                    answered.append(pk)
                elif final in (Disposition.FOLLOW_UP, Disposition.STAFF_NOTE):
                    self.result.follow_ups += 1
                # suppressed / held: the recorder sets the state
            judge.flush()
            self.outbox.flush()  # the next chunk's notice lookups read the outbox
        mark_batched(self.conn, answered, self.job.now)
        return requests

    def _judge_one(self, judge: Judge, composer: Composer, pk: int, mail: Mail) -> Judged | None:
        """One mail's outcome and the notice it gets; None if it failed (quarantined)."""
        try:
            outcome = judge.judge(pk, mail)
            notice_row = None
            if outcome.final is Disposition.NOTICE_ONLY and outcome.notice is not None and outcome.notice_allowed:
                # composed before anything is recorded: a mail that cannot
                # be answered is quarantined whole, not half-recorded
                notice_row = self.outbox.prepare(composer.notice(mail, outcome))
            judge.record(mail, outcome)
        except Exception as exc:  # one mail fails, not the cutoff
            self._quarantine([pk], "judging the mail at the cutoff", exc)
            return None
        return Judged(Request(mail, outcome), notice_row)

    def _queue_notice(self, judge: Judge, judged: Judged) -> None:
        outcome = judged.request.outcome
        if judged.notice_row is not None:
            assert outcome.notice is not None
            self.outbox.put(judged.notice_row)
            judge.noticed(judged.request.requester, outcome.notice.value)
            self.result.notices += 1
        elif outcome.notice is not None:
            self.result.notices_withheld += 1

    def _plan_context(self, batch: Batch, requests: Sequence[Request]) -> PlanContext:
        directory = DbDirectory(self.conn, batch.cutoff, self.config.staff, staff_addresses(self.conn))
        cc = cc_lookup(self.conn, self.config, directory, [r.mail for r in requests],
                       {r.account_id for r in requests if r.account_id is not None})
        return PlanContext(batch.promise, batch.previous,
                           frozenset(s.lower() for s in self.config.batch.generic_subjects), cc)

    def _suggest(self, units: list[Unit]) -> list[Unit]:
        """Knowledge-base suggestions for each case, from its first mail."""
        kb = self.config.kb
        if not (kb.suggestions > 0 and kb_count(self.conn) > 0):
            return units
        return [replace(unit, cases=tuple(case.suggested(self._suggestions(case), kb.answer_score)
                                          for case in unit.cases)) for unit in units]

    def _suggestions(self, case: PlannedCase) -> list[Suggestion]:
        kb, mail = self.config.kb, case.first.mail
        try:
            return kb_suggest(self.conn, f"{mail.subject}\n{mail.reply_text}", kb.suggestions, kb.min_score)
        except Exception as exc:  # a suggestion is a courtesy: never a reason to fail
            if is_transient(exc):
                raise
            log.warning("event=kb-suggest-failed message=%s error=%s", mail.pk, kv(exc))
            return []

    def _compose(self, composer: Composer, allocator: CaseAllocator, units: list[Unit]) -> list[ReadyUnit]:
        """Number each unit's cases and compose its mail; a unit that fails is quarantined whole."""
        ready: list[ReadyUnit] = []
        for unit in units:
            mark = allocator.checkpoint()
            try:
                cases = number_cases(unit, allocator)
                mail = tuple(QueuedMail.of(self.outbox.prepare(m), m) for m in composer.unit_mail(unit.requester, cases))
            except Exception as exc:
                allocator.rollback(mark)
                self._quarantine(unit.pks, f"making the case(s) of {unit.requester}", exc)
                continue
            ready.append(ReadyUnit(unit.requester, cases, mail))
        self.outbox.flush()
        return ready

    def _write(self, batch: Batch, allocator: CaseAllocator, units: list[ReadyUnit]) -> None:
        written = Writer(self.conn, batch, self.outbox, allocator, self._quarantine).write(units)
        allocator.flush()
        self.result.cases += written.cases
        self.result.acknowledgements += written.acknowledgements
        self.result.notices += written.notices

    def _close(self, batch: Batch) -> None:
        r = self.result
        self.conn.execute(sa.update(BATCH).where(BATCH.c.id == batch.id).values(
            mails=r.mails, cases=len(r.cases), follow_ups=r.follow_ups, notices=r.notices,
            acknowledgements=r.acknowledgements, late_mails=r.late_mails))
        if r.late_mailboxes:
            log.warning("event=alert cutoff=%s what=%s", batch.cutoff.isoformat(),
                        kv(f"cutoff closed without a sync of {', '.join(r.late_mailboxes)}: their late mail "
                           "joins the next"))

    # -- one item fails, not the cutoff ------------------------------------------------

    def _quarantine(self, pks: Sequence[int], what: str, exc: BaseException) -> None:
        """Quarantine mails that failed at this cutoff; raise again if the database is gone."""
        if is_transient(exc):
            raise exc
        log.error("event=cutoff-item-failed cutoff=%s messages=%s what=%s error=%s",
                  self.job.cutoff.isoformat(), ",".join(map(str, pks)), kv(what), kv(f"{type(exc).__name__}: {exc}"))
        for pk in pks:
            quarantine(self.conn, pk, Stage.BATCH, exc, self.job.now, context=what)
        self.result.quarantined += len(pks)
