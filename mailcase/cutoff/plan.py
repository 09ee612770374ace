"""Planning a cutoff's cases: pure -- no database, no clock.

From the requests the chain left pending at the cutoff (each mail with its
outcome) the plan groups each requester's mail into cases -- mails of one
thread, or with the same normalised subject unless it is generic -- and
says what each case is: requester, subject, severity (the most severe of
its mails), status (held, out of scope or new), flags, the closed case it
follows up, the promise it carries, the colleagues it copies
(:mod:`mailcase.cutoff.cc`).  What the planner needs besides the
requests comes in one :class:`PlanContext` value; the numbers, owners,
rows and mail come later (:mod:`mailcase.cutoff.make`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from mailcase.core.states import CaseStatus
from mailcase.cutoff.cc import CcChoice, CcLookup, choose
from mailcase.domain.calendar import BusinessCalendar
from mailcase.domain.cases import priority_for
from mailcase.mail.subjects import normalise_subject
from mailcase.outbound.kb import Suggestion
from mailcase.rules.base import Mail, Mark, Outcome
from mailcase.rules.effects import LinkCase


def requester_of(mail: Mail, outcome: Outcome) -> str:
    """Who a mail is from, as the desk answers it: the directory's address, else the From."""
    sender = outcome.sender
    return (sender.address if sender else None) or mail.sender or ""


@dataclass(frozen=True)
class Request:
    """A mail the chain left pending at the cutoff, with its outcome there."""

    mail: Mail
    outcome: Outcome

    @property
    def requester(self) -> str:
        return requester_of(self.mail, self.outcome)

    @property
    def account_id(self) -> int | None:
        sender = self.outcome.sender
        return sender.account.id if sender and sender.account else None


@dataclass(frozen=True)
class Promise:
    """When the human answer is due: "acknowledged within 24 to 48 hours from the
    time they are processed" -- one business day after processing, at the latest two."""

    processed_at: datetime
    due: datetime
    breach: datetime

    @classmethod
    def from_processing(cls, cal: BusinessCalendar, processed_at: datetime) -> Promise:
        return cls(processed_at, cal.add_business_days(processed_at, 1), cal.add_business_days(processed_at, 2))


@dataclass(frozen=True)
class PlanContext:
    """What the planner needs besides the requests."""

    promise: Promise
    #: the cutoff before this one: mail received before it arrived late
    previous: datetime | None = None
    #: normalised subjects that never join two mails into one case ("help", "question")
    generic_subjects: frozenset[str] = frozenset()
    #: what is known of the addresses in the requests' To and Cc (None: copy no one)
    cc: CcLookup | None = None


@dataclass(frozen=True)
class PlannedCase:
    """One case a cutoff will make: its requests (oldest first) and what it is."""

    requests: tuple[Request, ...]
    requester: str
    account_id: int | None
    person_id: int | None
    subject: str
    severity: int
    held: bool
    out_of_scope: bool
    #: automatic mail from a representative: a case, no acknowledgement
    no_auto_reply: bool
    flags: tuple[str, ...]
    #: the closed case this one follows up
    linked_case_id: int | None
    received_at: datetime
    promise: Promise
    suggestions: tuple[Suggestion, ...] = field(default=())
    #: the requester's colleagues copied on its mail, and the addresses dropped
    cc: CcChoice = field(default=CcChoice())

    @property
    def first(self) -> Request:
        return self.requests[0]

    @property
    def status(self) -> CaseStatus:
        return CaseStatus.HELD if self.held else CaseStatus.OUT_OF_SCOPE if self.out_of_scope else CaseStatus.NEW

    @property
    def priority(self) -> int:
        return priority_for(self.severity, self.held, self.out_of_scope)

    @property
    def notice_allowed(self) -> bool:
        """A hold or out-of-scope notice may go to the requester."""
        return any(r.outcome.notice_allowed for r in self.requests) or not self.no_auto_reply

    @property
    def repeat_of(self) -> int | None:
        """The case number a ``repeats-case-N`` flag names."""
        for f in self.flags:
            if f.startswith("repeats-case-"):
                return int(f.rsplit("-", 1)[1])
        return None

    @property
    def pks(self) -> list[int]:
        return [r.mail.pk for r in self.requests if r.mail.pk is not None]

    def suggested(self, suggestions: Sequence[Suggestion], answer_score: float) -> PlannedCase:
        """The case with the knowledge base's suggestions; flagged ``kb-answer``
        (an abuse flag) when the best of them answers the request."""
        kb_answer = bool(suggestions) and suggestions[0].score >= answer_score
        return replace(self, suggestions=tuple(suggestions),
                       flags=self.flags + ("kb-answer",) if kb_answer else self.flags)


@dataclass(frozen=True)
class Unit:
    """What stands or falls together at a cutoff: a requester's new cases and
    the mail that tells them.  A unit that cannot be made (a template that
    fails on it, an address no mail can carry, a row the database refuses)
    is quarantined whole; every other unit goes on."""

    requester: str
    cases: tuple[PlannedCase, ...]

    @property
    def pks(self) -> list[int]:
        return [pk for case in self.cases for pk in case.pks]


def plan(requests: Iterable[Request], ctx: PlanContext) -> list[Unit]:
    """The units of a cutoff: per requester (address and account, in the order
    their first mail came), the requests grouped into cases and each planned."""
    by_requester: dict[tuple[str, int | None], list[Request]] = defaultdict(list)
    for request in requests:
        by_requester[(request.requester, request.account_id)].append(request)
    return [
        Unit(requester, tuple(plan_case([items[i] for i in idxs], ctx)
                              for idxs in group_requests(items, ctx.generic_subjects)))
        for (requester, _account_id), items in by_requester.items()
    ]


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


def group_requests(items: Sequence[Request], generic: Container[str]) -> list[list[int]]:
    """Indexes of ``items`` grouped into cases (items are one requester's, oldest first)."""
    g = _Groups(len(items))
    by_id = {r.mail.info.message_id: i for i, r in enumerate(items)}
    by_subject: dict[str, int] = {}
    for i, r in enumerate(items):
        for ref in r.mail.info.in_reply_to + r.mail.info.references:
            j = by_id.get(ref)
            if j is not None:
                g.join(i, j)
        subject = normalise_subject(r.mail.subject)
        if subject not in generic:
            if subject in by_subject:
                g.join(i, by_subject[subject])
            else:
                by_subject[subject] = i
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(items)):
        groups[g.find(i)].append(i)
    return sorted(groups.values(), key=lambda idxs: idxs[0])


def plan_case(group: Sequence[Request], ctx: PlanContext) -> PlannedCase:
    """The case a group of one requester's requests becomes (oldest first)."""
    first = group[0]
    sender = first.outcome.sender
    flags: list[str] = []
    for r in group:
        flags += [f for f in r.outcome.flags if f not in flags]
    if ctx.previous is not None and any(r.mail.received_at < ctx.previous for r in group):
        flags.append("late")  # received before an earlier cutoff, arrived after it closed
    return PlannedCase(
        requests=tuple(group),
        requester=first.requester,
        account_id=first.account_id,
        person_id=sender.person.id if sender and sender.person else None,
        subject=(first.mail.subject or "(no subject)")[:500],
        severity=min(r.outcome.severity for r in group),  # 1 is the most severe
        held=any(r.outcome.hold for r in group),
        out_of_scope=any(r.outcome.out_of_scope for r in group),
        no_auto_reply=all(Mark.NO_AUTO_REPLY in r.outcome.marks for r in group),
        flags=tuple(flags),
        linked_case_id=next((e.case_id for r in group for e in r.outcome.effects if isinstance(e, LinkCase)), None),
        received_at=min(r.mail.received_at for r in group),
        promise=ctx.promise,
        cc=choose([(r.mail, r.outcome) for r in group], first.requester, first.account_id, ctx.cc)
        if ctx.cc is not None else CcChoice(),
    )
