"""The cutoff's planning step on its own: no database, no clock.

Judged mails and their outcomes go in; units per requester come out, each
with its cases planned (grouping by thread and subject, requester, status,
severity, flags, the closed case a follow-up links to, the promise).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from helpers import make_mail

from mailcase.cutoff.plan import PlanContext, PlannedCase, Promise, Request, Unit, plan
from mailcase.domain.people import Account, Person, Role
from mailcase.mail.header_info import read_headers
from mailcase.mail.headers import split_headers
from mailcase.outbound.kb import Suggestion
from mailcase.rules.base import Disposition, Mail, Mark, Outcome, SenderMatch
from mailcase.rules.effects import LinkCase

CUTOFF = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)  # Monday 09:30 in New York
PREVIOUS = CUTOFF - timedelta(hours=18)             # Friday's 15:30 cutoff, as far as the plan cares
PROMISE = Promise(CUTOFF, CUTOFF + timedelta(days=1), CUTOFF + timedelta(days=2))
CTX = PlanContext(PROMISE, previous=PREVIOUS, generic_subjects=frozenset({"help", "question"}))

ACME = Account(id=7, code="ACME", name="Acme Clinic")
GLOBEX = Account(id=8, code="GLOBEX", name="Globex")
ALICE = Person(id=11, account_id=7, address="alice@acme.example", name="Alice Admin", role=Role.ADMINISTRATOR)
BOB = Person(id=12, account_id=8, address="bob@globex.example", name="Bob Builder", role=Role.REPRESENTATIVE)


def mail(n: int, subject: str, *, sender: Person = ALICE, minutes_before: int = 60,
         reply_to: int | None = None) -> Mail:
    """Mail number ``n`` (its pk), received ``minutes_before`` the cutoff."""
    at = CUTOFF - timedelta(minutes=minutes_before)
    headers = {"In-Reply-To": f"<m{reply_to}@test>", "References": f"<m{reply_to}@test>"} if reply_to else {}
    raw = make_mail(n, sender=sender.address, subject=subject, date=at, msgid=f"<m{n}@test>", headers=headers)
    block = split_headers(raw)
    return Mail(raw=raw, block=block, info=read_headers(raw, block), body="Please help.\n", received_at=at, pk=n)


def request(m: Mail, sender: Person = ALICE, **outcome: Any) -> Request:
    account = ACME if sender.account_id == ACME.id else GLOBEX
    match = SenderMatch("representative", sender.address, sender, account)
    return Request(m, Outcome(disposition=Disposition.PENDING, sender=match, **outcome))


def only_case(units: list[Unit]) -> PlannedCase:
    assert len(units) == 1 and len(units[0].cases) == 1, units
    return units[0].cases[0]


def test_two_mails_of_one_thread_are_one_case() -> None:
    first = request(mail(1, "Invoices do not print", minutes_before=90))
    reply = request(mail(2, "more detail", minutes_before=30, reply_to=1))
    case = only_case(plan([first, reply], CTX))
    assert case.pks == [1, 2]
    assert case.requester == "alice@acme.example" and case.account_id == 7 and case.person_id == 11
    assert case.subject == "Invoices do not print"  # the first mail's
    assert case.received_at == CUTOFF - timedelta(minutes=90)
    assert case.promise == PROMISE and case.flags == () and case.linked_case_id is None


def test_same_subject_joins_a_generic_one_does_not_and_requesters_stay_apart() -> None:
    requests = [
        request(mail(1, "Export fails", minutes_before=100)),
        request(mail(2, "Bob's printer", sender=BOB, minutes_before=90), sender=BOB),
        request(mail(3, "Help", minutes_before=80)),
        request(mail(4, "RE: export fails", minutes_before=70)),
        request(mail(5, "help", minutes_before=60)),
    ]
    units = plan(requests, CTX)
    # one unit per requester, in the order their first mail came
    assert [u.requester for u in units] == ["alice@acme.example", "bob@globex.example"]
    alice, bob = units
    assert [c.pks for c in alice.cases] == [[1, 4], [3], [5]]
    assert alice.pks == [1, 4, 3, 5]
    assert [c.pks for c in bob.cases] == [[2]] and bob.cases[0].account_id == 8


def test_the_same_address_under_two_accounts_is_two_units() -> None:
    other = Person(id=13, account_id=8, address="alice@acme.example", name="", role=Role.USER)
    units = plan([request(mail(1, "Export fails")), request(mail(2, "Export fails"), sender=other)], CTX)
    assert [(u.requester, [c.account_id for c in u.cases]) for u in units] == [
        ("alice@acme.example", [7]), ("alice@acme.example", [8])]


def test_a_follow_up_links_the_case_it_follows() -> None:
    follow = request(mail(1, "Still broken"), effects=(LinkCase(case_id=42, number=17),))
    case = only_case(plan([follow], CTX))
    assert case.linked_case_id == 42
    later = request(mail(2, "Still broken"), effects=(LinkCase(case_id=43, number=18),))
    assert only_case(plan([request(mail(3, "Still broken")), later], CTX)).linked_case_id == 43


@pytest.mark.parametrize("outcomes, status, priority", [
    ([{}, {}], "new", 3),
    ([{}, {"hold": True}], "held", 7),
    ([{"out_of_scope": True}, {}], "out-of-scope", 7),
    ([{"out_of_scope": True}, {"hold": True}], "held", 7),
])
def test_held_and_out_of_scope(outcomes: list[dict[str, Any]], status: str, priority: int) -> None:
    group = [request(mail(i, "Export fails"), **o) for i, o in enumerate(outcomes, 1)]
    case = only_case(plan(group, CTX))
    assert case.status.value == status and case.priority == priority
    assert case.held == any(o.get("hold") for o in outcomes)
    assert case.out_of_scope == any(o.get("out_of_scope") for o in outcomes)


def test_severity_is_the_most_severe_of_the_group() -> None:
    group = [request(mail(1, "Export fails"), severity=3), request(mail(2, "Export fails"), severity=1),
             request(mail(3, "Export fails"), severity=2)]
    case = only_case(plan(group, CTX))
    assert case.severity == 1 and case.priority == 1
    assert only_case(plan([request(mail(4, "Slow"), severity=4)], CTX)).severity == 4


def test_flags_merge_in_order_and_late_mail_is_flagged() -> None:
    group = [
        request(mail(1, "Export fails", minutes_before=24 * 60), flags=("repeats-case-5", "weekly-volume")),
        request(mail(2, "Export fails"), flags=("weekly-volume", "similar-mails")),
    ]
    case = only_case(plan(group, CTX))
    assert case.flags == ("repeats-case-5", "weekly-volume", "similar-mails", "late")
    assert case.repeat_of == 5
    # on time: received after the previous cutoff; no previous cutoff: nothing is late
    assert only_case(plan([request(mail(3, "Slow", minutes_before=60))], CTX)).flags == ()
    early = request(mail(4, "Slow", minutes_before=24 * 60))
    assert only_case(plan([early], PlanContext(PROMISE))).flags == ()


def test_no_auto_reply_only_when_every_mail_says_so() -> None:
    auto: dict[str, Any] = {"marks": frozenset({Mark.NO_AUTO_REPLY})}  # Outcome fields, as request() takes them
    assert only_case(plan([request(mail(1, "Disk full"), **auto), request(mail(2, "Disk full"), **auto)],
                          CTX)).no_auto_reply
    mixed = only_case(plan([request(mail(3, "Disk full"), **auto), request(mail(4, "Disk full"))], CTX))
    assert not mixed.no_auto_reply and mixed.notice_allowed


def test_suggestions_and_the_kb_answer_flag() -> None:
    case = only_case(plan([request(mail(1, "Export fails", minutes_before=24 * 60))], CTX))
    good = [Suggestion("Exporting claims", "https://kb.example/export", 0.9), Suggestion("CSV", "u", 0.4)]
    answered = case.suggested(good, answer_score=0.8)
    assert answered.flags == ("late", "kb-answer") and answered.suggestions == tuple(good)
    weak = case.suggested(good, answer_score=0.95)
    assert weak.flags == ("late",) and len(weak.suggestions) == 2
    assert case.suggested([], answer_score=0.0).flags == ("late",)
    assert case.suggestions == ()  # the planned case itself is a value: unchanged
