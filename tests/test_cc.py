"""Colleagues in Cc (issue 15): known users of the requester's account get the case's
acknowledgement, staff replies and resolution, one outbox row each; every other
address is dropped with its reason; notices and surveys stay the requester's."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email.policy import default
from pathlib import Path

import sqlalchemy as sa
from batching import Desk, ny
from helpers import make_mail

from mailcase.cutoff.cc import CcLookup, choose
from mailcase.domain.db import transaction
from mailcase.domain.directory import remove_person, set_standing
from mailcase.domain.tables import CASE, CASE_EVENT, OUTBOX, SUPPRESSION
from mailcase.mail.header_info import read_headers
from mailcase.mail.headers import split_headers
from mailcase.ops.retention import erase
from mailcase.outbound.deliver import deliver_due
from mailcase.outbound.staffmail import queue_reply
from mailcase.outbound.surveys import resolve
from mailcase.outbound.transport import transport_for
from mailcase.rules.base import AuthResult, Mail, Outcome

CC = ("Erin User <ERIN@acme.example>, stranger@elsewhere.example, Bob <bob@globex.example>, "
      "help@support.example, alice@acme.example")


def _rows(desk: Desk, kind: str) -> list[sa.Row]:  # type: ignore[type-arg]
    return desk.rows(sa.select(OUTBOX).where(OUTBOX.c.kind == kind).order_by(OUTBOX.c.id))


def test_colleagues_in_cc_get_ack_reply_and_resolution_others_dropped_with_reasons(
        db_url: str, tmp_path: Path) -> None:
    desk = Desk(db_url, tmp_path)
    desk.directory()
    request = desk.mail(ny(2026, 11, 23, 8, 0), subject="Printer queue stuck", headers={"Cc": CC})
    run = desk.process(ny(2026, 11, 23, 9, 31))
    assert run.results[0].acknowledgements == 1  # a colleague's copy is no second acknowledgement
    case = desk.rows(sa.select(CASE))[0]
    assert case.cc == ["erin@acme.example"]
    detail = desk.scalar(sa.select(CASE_EVENT.c.detail).where(CASE_EVENT.c.kind == "cc"))
    assert detail.startswith("copied: erin@acme.example; dropped: ")
    assert "stranger@elsewhere.example (not a known user of ACME)" in detail
    assert "bob@globex.example (another account (GLOBEX))" in detail
    assert "help@support.example (our own address)" in detail
    assert "support@support.example" not in detail  # the address the request went to
    assert "alice@acme.example" not in detail  # the requester herself

    # the acknowledgement: one row per recipient, the same headers and Message-ID
    acks = _rows(desk, "ack")
    assert [r.to_addr for r in acks] == ["alice@acme.example", "erin@acme.example"]
    assert acks[0].message_id == acks[1].message_id and acks[0].key != acks[1].key
    for row in acks:
        msg = email.message_from_bytes(row.raw, policy=default)
        assert [a.addr_spec for a in msg["To"].addresses] == ["alice@acme.example"]
        assert [a.addr_spec for a in msg["Cc"].addresses] == ["erin@acme.example"]
        assert msg["In-Reply-To"] == request

    # a staff reply and the resolution go to both; the survey to the requester only
    with transaction(desk.engine) as conn:
        queue_reply(conn, desk.config, 1, "Please restart the spooler.", "Sam", ny(2026, 11, 23, 10, 0), "sam")
        queue_reply(conn, desk.config, 1, "Please restart the spooler.", "Sam", ny(2026, 11, 23, 10, 1), "sam")
    assert [r.to_addr for r in _rows(desk, "reply")] == ["alice@acme.example", "erin@acme.example"]
    with transaction(desk.engine) as conn:
        resolve(conn, desk.config, 1, "Spooler restarted.", ny(2026, 11, 23, 11, 0), "sam")
    assert [r.to_addr for r in _rows(desk, "resolution")] == ["alice@acme.example", "erin@acme.example"]
    assert [r.to_addr for r in _rows(desk, "survey")] == ["alice@acme.example"]
    assert not [r for r in desk.outbox() if r.to_addr not in ("alice@acme.example", "erin@acme.example")]

    # a suppressed colleague stops no one else
    with transaction(desk.engine) as conn:
        conn.execute(sa.insert(SUPPRESSION).values(address="erin@acme.example", reason="hard bounce",
                                                   since_at=ny(2026, 11, 23, 10, 30)))
    deliver_due(desk.engine, transport_for(desk.config), ny(2026, 11, 23, 11, 5), desk.config)
    status = {(r.kind, r.to_addr): r.status for r in desk.outbox() if r.kind != "survey"}
    assert status[("resolution", "alice@acme.example")] == "sent"
    assert status[("resolution", "erin@acme.example")] == "suppressed"
    assert status[("ack", "erin@acme.example")] == "suppressed"
    files = sorted(p.name for p in (tmp_path / "outbox").glob("*.eml"))
    assert files and all("alice@acme.example" in f for f in files)

    # the colleague answering the acknowledgement writes on the case
    answer = desk.mail(ny(2026, 11, 23, 12, 0), sender="erin@acme.example", subject="Re: Printer queue stuck",
                       headers={"In-Reply-To": acks[1].message_id, "References": acks[1].message_id})
    desk.process(ny(2026, 11, 23, 12, 5))
    assert desk.case_of(answer) == 1


def test_no_cc_no_copies_and_a_removed_colleague_is_not_copied(db_url: str, tmp_path: Path) -> None:
    desk = Desk(db_url, tmp_path)
    desk.directory()
    desk.mail(ny(2026, 11, 23, 8, 0), subject="Alone", sender="bob@globex.example")
    desk.mail(ny(2026, 11, 23, 8, 5), subject="With Erin", headers={"Cc": "erin@acme.example"})
    desk.process(ny(2026, 11, 23, 9, 31))
    cases = {r.subject: r for r in desk.rows(sa.select(CASE))}
    assert cases["Alone"].cc == [] and cases["With Erin"].cc == ["erin@acme.example"]
    assert desk.scalar(sa.select(sa.func.count()).select_from(CASE_EVENT).where(CASE_EVENT.c.kind == "cc")) == 1
    # Erin leaves ACME: later mail of the case is not copied to her, and the case says so
    with transaction(desk.engine) as conn:
        acme = desk.scalar(sa.select(CASE.c.account_id).where(CASE.c.subject == "With Erin"))
        assert remove_person(conn, acme, "erin@acme.example", ny(2026, 11, 23, 9, 45))
        queue_reply(conn, desk.config, cases["With Erin"].number, "Done.", "Sam", ny(2026, 11, 23, 10, 0), "sam")
    assert [r.to_addr for r in _rows(desk, "reply")] == ["alice@acme.example"]
    assert "not copied: erin@acme.example" in desk.scalar(
        sa.select(CASE_EVENT.c.detail).where(CASE_EVENT.c.kind == "cc", CASE_EVENT.c.actor == "mailcase"))


def _mail(to: str, cc: str) -> Mail:
    raw = make_mail(1, headers={"Cc": cc})
    block = split_headers(raw)
    return Mail(raw=raw, block=block, info=read_headers(raw, block), body="", received_at=datetime(2026, 1, 1, tzinfo=UTC),
                to=tuple(a.strip() for a in to.split(",") if a.strip()),
                cc=tuple(a.strip() for a in cc.split(",") if a.strip()))


def _auth(passed: bool, checked: bool = True) -> Outcome:
    return Outcome(auth=AuthResult(checked, True, passed, passed, passed, False, "test"))


LOOKUP = CcLookup(accounts={"erin@acme.example": frozenset({1}), "bob@globex.example": frozenset({2})},
                  codes={1: "ACME", 2: "GLOBEX"}, ours={"support@support.example": "our own address",
                                                        "sam@staff.example": "a staff address"},
                  suppressed={})


def test_choose_to_and_cc_and_never_from_unauthenticated_mail() -> None:
    # To: a colleague counts; our support address there is no copy and no reason
    mail = _mail("support@support.example, erin@acme.example", "sam@staff.example")
    choice = choose([(mail, _auth(True))], "alice@acme.example", 1, LOOKUP)
    assert choice.kept == ("erin@acme.example",)
    assert choice.dropped == (("sam@staff.example", "a staff address"),)
    # authentication off counts as passed; a failed one gives nothing
    assert choose([(mail, _auth(False, checked=False))], "alice@acme.example", 1, LOOKUP).kept == ("erin@acme.example",)
    failed = choose([(mail, _auth(False))], "alice@acme.example", 1, LOOKUP)
    assert failed.kept == ()
    assert ("erin@acme.example", "the mail is not authenticated") in failed.dropped
    assert choose([(mail, Outcome())], "alice@acme.example", 1, LOOKUP).kept == ()
    # suppressed, and the limit
    suppressed = CcLookup(LOOKUP.accounts, LOOKUP.codes, LOOKUP.ours, {"erin@acme.example": "hard bounce"})
    assert ("erin@acme.example", "suppressed (hard bounce)") in choose(
        [(mail, _auth(True))], "alice@acme.example", 1, suppressed).dropped
    many = [f"u{i}@acme.example" for i in range(12)]
    lookup = CcLookup({a: frozenset({1}) for a in many}, {1: "ACME"})
    big = choose([(_mail("", ", ".join(many)), _auth(True))], "alice@acme.example", 1, lookup)
    assert len(big.kept) == 10 and [why for _, why in big.dropped] == ["more than 10 colleagues"] * 2


def test_erasing_a_colleague_takes_them_off_the_case(db_url: str, tmp_path: Path) -> None:
    desk = Desk(db_url, tmp_path)
    desk.directory()
    desk.mail(ny(2026, 11, 23, 8, 0), subject="With Erin and Monitor",
              headers={"Cc": "erin@acme.example, monitor@acme.example"})
    desk.process(ny(2026, 11, 23, 9, 31))
    assert desk.scalar(sa.select(CASE.c.cc)) == ["erin@acme.example", "monitor@acme.example"]
    with transaction(desk.engine) as conn:
        erase(conn, "erin@acme.example", ny(2026, 11, 24, 9, 0))
    assert desk.scalar(sa.select(CASE.c.cc)) == ["monitor@acme.example"]


def test_held_case_notice_to_requester_only_released_ack_copied(db_url: str, tmp_path: Path) -> None:
    desk = Desk(db_url, tmp_path)
    desk.directory()
    desk.directory("account,address,role\nUMBRELLA,carl@umbrella.example,user\n")
    desk.mail(ny(2026, 11, 23, 9, 0), sender="dave@umbrella.example", subject="Import fails",
              headers={"Cc": "carl@umbrella.example"})
    desk.process(ny(2026, 11, 23, 9, 31))
    assert [(r.kind, r.to_addr) for r in desk.outbox()] == [("notice/hold", "dave@umbrella.example")]
    assert desk.scalar(sa.select(CASE.c.cc)) == ["carl@umbrella.example"]
    with transaction(desk.engine) as conn:
        set_standing(conn, "UMBRELLA", "good", ny(2026, 11, 23, 11, 0), "test")
        conn.execute(sa.update(CASE).values(released_at=ny(2026, 11, 23, 11, 0)))
    desk.process(ny(2026, 11, 23, 15, 31))
    assert [(r.kind, r.to_addr) for r in desk.outbox()][1:] == [("ack", "dave@umbrella.example"),
                                                                ("ack", "carl@umbrella.example")]
