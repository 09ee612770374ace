"""Cutoff batches on SQLite and PostgreSQL: when, what, exactly once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from batching import Desk, ny
from helpers import body_text

from mailcase.domain.tables import BATCH, CASE, CLASSIFICATION, MESSAGE
from mailcase.mail.subjects import normalise_subject


def test_mail_before_0930_joins_0930_and_exactly_0930_joins_1530(db_url: str, tmp_path: Path) -> None:
    desk = Desk(db_url, tmp_path)
    desk.directory()
    early = desk.mail(ny(2026, 11, 23, 9, 29, 59), subject="Printer queue stuck")
    exact = desk.mail(ny(2026, 11, 23, 9, 30, 0), sender="bob@globex.example", subject="Export fails")
    run = desk.process(ny(2026, 11, 23, 9, 45))
    assert [r.cutoff for r in run.results] == [ny(2026, 11, 23, 9, 30)]
    assert desk.case_of(early) == 1 and desk.case_of(exact) is None
    run = desk.process(ny(2026, 11, 23, 15, 31))
    assert [r.cutoff for r in run.results] == [ny(2026, 11, 23, 15, 30)]
    assert desk.case_of(exact) == 2
    # nothing twice: running again does nothing
    again = desk.process(ny(2026, 11, 23, 15, 40))
    assert again.results == []
    assert desk.scalar(sa.select(sa.func.count()).select_from(CASE)) == 2
    assert len(desk.outbox()) == 2


def test_one_acknowledgement_per_case_each_in_its_own_thread(db_url: str, tmp_path: Path) -> None:
    """Issue 13 replaces "one acknowledgement per requester per cutoff": each case
    gets its own, with its token in the subject, answering the case's own first
    mail, so that the customer's reply to it lands in exactly that case."""
    desk = Desk(db_url, tmp_path)
    desk.directory()
    a = desk.mail(ny(2026, 11, 23, 8, 0), subject="Cannot print invoices")
    b = desk.mail(ny(2026, 11, 23, 8, 5), subject="Report totals wrong")
    reply = desk.mail(ny(2026, 11, 23, 8, 30), subject="Re: Cannot print invoices",
                      headers={"In-Reply-To": a, "References": a})
    same_subject = desk.mail(ny(2026, 11, 23, 8, 40), subject="AW: [EXTERNAL] report totals WRONG")
    generic1 = desk.mail(ny(2026, 11, 23, 8, 50), subject="Help")
    generic2 = desk.mail(ny(2026, 11, 23, 8, 55), subject="help")
    desk.process(ny(2026, 11, 23, 9, 31))
    assert desk.case_of(a) == desk.case_of(reply)
    assert desk.case_of(b) == desk.case_of(same_subject)
    assert desk.case_of(generic1) != desk.case_of(generic2)
    firsts = {desk.case_of(m): m for m in (a, b, generic1, generic2)}
    assert len(firsts) == 4
    acks = [r for r in desk.outbox() if r.kind == "ack"]
    assert len(acks) == 4
    import email
    from email.policy import default

    for ack in acks:
        number = desk.scalar(sa.select(CASE.c.number).where(CASE.c.id == ack.case_id))
        assert ack.case_ids == [ack.case_id]
        msg = email.message_from_bytes(ack.raw, policy=default)
        assert msg["Subject"].startswith(f"[Case #{number:06d}] ")
        assert msg["In-Reply-To"] == firsts[number]
        assert msg["Auto-Submitted"] == "auto-replied"
        assert msg["To"].addresses[0].addr_spec == "alice@acme.example"
        text = body_text(msg)
        # it names the requester's other new cases, each with its own mail
        others = [n for n in firsts if n != number]
        assert all(f"[Case #{n:06d}]" in text for n in others)
        assert text.startswith("Hello Alice Admin,")  # the directory's name
    # the customer answers one acknowledgement: it attaches to that case only
    ack_b = next(r for r in acks if r.case_id == desk.scalar(sa.select(CASE.c.id).where(
        CASE.c.number == desk.case_of(b))))
    answer = desk.mail(ny(2026, 11, 23, 10, 0), subject="Re: the totals", body="Still wrong today.\n",
                       headers={"In-Reply-To": ack_b.message_id, "References": f"{b} {ack_b.message_id}"})
    desk.process(ny(2026, 11, 23, 10, 1))
    assert desk.case_of(answer) == desk.case_of(b)


def test_directory_as_of_the_cutoff(db_url: str, tmp_path: Path) -> None:
    desk = Desk(db_url, tmp_path)
    m1 = desk.mail(ny(2026, 11, 23, 8, 0), sender="new.rep@initech.example", subject="First request")
    # imported at 09:00, before the 09:30 cutoff: counts for it
    desk.directory("account,address,role\nINITECH,new.rep@initech.example,representative\n", at=ny(2026, 11, 23, 9, 0))
    m2 = desk.mail(ny(2026, 11, 23, 10, 0), sender="late.rep@initech.example", subject="Second request")
    # imported at 15:31, after the 15:30 cutoff -- even though that batch runs later
    desk.directory("account,address,role\nINITECH,late.rep@initech.example,representative\n", at=ny(2026, 11, 23, 15, 31))
    desk.process(ny(2026, 11, 23, 16, 0))
    assert desk.case_of(m1) is not None
    assert desk.case_of(m2) is None
    notices = [r for r in desk.outbox() if r.kind == "notice/unknown-sender"]
    assert [r.to_addr for r in notices] == ["late.rep@initech.example"]


def test_downtime_friday_to_tuesday_after_monday_holiday(db_url: str, tmp_path: Path) -> None:
    """Stopped Friday 15:00 before MLK day (Monday 2027-01-18), restarted Tuesday 10:00."""
    desk = Desk(db_url, tmp_path)
    desk.directory()
    fri_1400 = desk.mail(ny(2027, 1, 15, 14, 0), subject="Friday afternoon question")
    desk.process(ny(2027, 1, 15, 15, 0))  # running until 15:00 Friday: nothing due
    assert desk.rows(sa.select(BATCH)) == []
    fri_1600 = desk.mail(ny(2027, 1, 15, 16, 0), sender="bob@globex.example", subject="Friday evening")
    sat = desk.mail(ny(2027, 1, 16, 11, 0), subject="Saturday problem")
    mon = desk.mail(ny(2027, 1, 18, 10, 0), sender="bob@globex.example", subject="Holiday Monday issue")
    tue_0945 = desk.mail(ny(2027, 1, 19, 9, 45), subject="Tuesday morning")
    run = desk.process(ny(2027, 1, 19, 10, 0))
    assert [r.cutoff for r in run.results] == [ny(2027, 1, 15, 15, 30), ny(2027, 1, 19, 9, 30)]
    cutoffs = [r.cutoff_at for r in desk.rows(sa.select(BATCH).order_by(BATCH.c.id))]
    assert cutoffs == [ny(2027, 1, 15, 15, 30), ny(2027, 1, 19, 9, 30)]
    batch_of = {mid: desk.scalar(sa.select(BATCH.c.cutoff_at).join(MESSAGE, MESSAGE.c.batch_id == BATCH.c.id)
                                 .where(MESSAGE.c.message_id == mid))
                for mid in (fri_1400, fri_1600, sat, mon, tue_0945)}
    assert batch_of[fri_1400] == ny(2027, 1, 15, 15, 30)
    assert batch_of[fri_1600] == batch_of[sat] == batch_of[mon] == ny(2027, 1, 19, 9, 30)
    assert batch_of[tue_0945] is None  # waits for Tuesday 15:30
    assert desk.case_of(fri_1400) == 1
    assert {desk.case_of(fri_1600), desk.case_of(sat), desk.case_of(mon)} == {2, 3, 4}
    assert desk.case_of(tue_0945) is None


def test_cutoff_waits_for_a_mailbox_then_closes_after_grace(db_url: str, tmp_path: Path) -> None:
    from helpers import config

    desk = Desk(db_url, tmp_path)
    desk.config = config(db_url, tmp_path, [{"name": "box", "kind": "maildir", "path": str(tmp_path / "md")}],
                         rules=desk.config.rules.model_dump(),
                         outgoing={"from_address": "support@support.example", "file_dir": str(tmp_path / "o")})
    desk.directory()
    desk.mail(ny(2026, 11, 23, 9, 0))
    waiting = desk.process(ny(2026, 11, 23, 9, 35))
    assert waiting.results == [] and "mailbox box has not completed a sync" in waiting.waiting
    closed = desk.process(ny(2026, 11, 23, 9, 46))  # grace of 15 minutes passed
    assert [r.late_mailboxes for r in closed.results] == [("box",)]
    assert desk.rows(sa.select(BATCH.c.late_mailboxes))[0][0] == ["box"]


def test_cutoff_waits_for_classification(db_url: str, tmp_path: Path) -> None:
    from mailcase.cutoff.batch import run_due

    desk = Desk(db_url, tmp_path)
    desk.directory()
    desk.mail(ny(2026, 11, 23, 9, 0))
    desk.clock.at = ny(2026, 11, 23, 9, 31)
    run = run_due(desk.engine, desk.config, desk.clock)  # not parsed yet
    assert run.results == [] and "not classified yet" in run.waiting


def test_held_account_case_then_release(db_url: str, tmp_path: Path) -> None:
    from mailcase.domain.db import transaction
    from mailcase.domain.directory import set_standing
    from mailcase.domain.tables import CASE

    desk = Desk(db_url, tmp_path)
    desk.directory()
    m = desk.mail(ny(2026, 11, 23, 9, 0), sender="dave@umbrella.example", subject="Import fails")
    desk.process(ny(2026, 11, 23, 9, 31))
    number = desk.case_of(m)
    assert desk.scalar(sa.select(CASE.c.status).where(CASE.c.number == number)) == "held"
    assert [r.kind for r in desk.outbox()] == ["notice/hold"]
    with transaction(desk.engine) as conn:
        set_standing(conn, "UMBRELLA", "good", ny(2026, 11, 23, 11, 0), "test")
        conn.execute(sa.update(CASE).where(CASE.c.number == number).values(released_at=ny(2026, 11, 23, 11, 0)))
    desk.process(ny(2026, 11, 23, 15, 31))
    assert desk.scalar(sa.select(CASE.c.status).where(CASE.c.number == number)) == "new"
    assert [r.kind for r in desk.outbox()] == ["notice/hold", "ack"]


def test_notices_and_what_gets_no_mail(db_url: str, tmp_path: Path) -> None:
    desk = Desk(db_url, tmp_path)
    desk.directory()
    unknown1 = desk.mail(ny(2026, 11, 23, 8, 0), sender="x@stranger.example", subject="hello?")
    desk.mail(ny(2026, 11, 23, 8, 10), sender="x@stranger.example", subject="anyone?")
    forged = desk.mail(ny(2026, 11, 23, 8, 20), sender="y@stranger.example", authenticated=False)
    user = desk.mail(ny(2026, 11, 23, 8, 30), sender="erin@acme.example", subject="Reset my password")
    monitor = desk.mail(ny(2026, 11, 23, 8, 40), sender="monitor@acme.example", subject="ALERT: queue length 500",
                        headers={"Auto-Submitted": "auto-generated"})
    desk.mail(ny(2026, 11, 23, 8, 50), sender="news@vendor.example", subject="Newsletter",
              headers={"Precedence": "bulk", "List-Id": "<news.vendor.example>"})
    historical = desk.mail(ny(2026, 11, 23, 8, 55), sender="x2@stranger.example", historical=True)
    desk.process(ny(2026, 11, 23, 9, 31))
    kinds = sorted((r.kind, r.to_addr) for r in desk.outbox())
    assert kinds == [("notice/not-authorized", "erin@acme.example"),
                     ("notice/unknown-sender", "x@stranger.example")]
    assert desk.case_of(monitor) is not None  # a representative's monitoring: a case, no ack
    assert desk.case_of(unknown1) is None and desk.case_of(user) is None and desk.case_of(forged) is None
    assert desk.scalar(sa.select(MESSAGE.c.state).where(MESSAGE.c.message_id == historical)) == "historical"
    withheld = desk.scalar(sa.select(CLASSIFICATION.c.notice_withheld_reason)
                           .join(MESSAGE, MESSAGE.c.id == CLASSIFICATION.c.message_pk)
                           .where(MESSAGE.c.message_id == forged))
    assert "no aligned SPF or DKIM pass" in withheld


def test_follow_up_attaches_at_ingest_and_gets_no_ack(db_url: str, tmp_path: Path) -> None:
    desk = Desk(db_url, tmp_path)
    desk.directory()
    first = desk.mail(ny(2026, 11, 23, 8, 0), subject="Printing broken")
    desk.process(ny(2026, 11, 23, 9, 31))
    ack = desk.outbox()[0]
    reply = desk.mail(ny(2026, 11, 23, 10, 0), subject="Re: [Case #000001] Printing broken",
                      headers={"In-Reply-To": ack.message_id, "References": f"{first} {ack.message_id}"})
    desk.process(ny(2026, 11, 23, 10, 1))
    assert desk.case_of(reply) == 1  # attached before any cutoff
    desk.process(ny(2026, 11, 23, 15, 31))
    assert len(desk.outbox()) == 1


def test_normalised_subject() -> None:
    assert normalise_subject("Re: AW: WG: [EXTERNAL] Printer   DOWN") == "printer down"
    assert normalise_subject("Fwd: [Case #000123] printer down") == "printer down"
    assert normalise_subject("SV: Re[2]: printer down") == "printer down"


def test_the_promise_counts_business_days_from_the_cutoff(db_url: str, tmp_path: Path) -> None:
    """The agreement: "acknowledged within 24 to 48 hours from the time they are
    processed".  Processed at Friday's 15:30 cutoff, a case is due on Monday at
    15:30 -- on the local clock, across the spring switch (71 real hours) --
    and late on Tuesday; after a Monday holiday, on Tuesday and Wednesday."""
    desk = Desk(db_url, tmp_path)
    desk.directory()
    m = desk.mail(ny(2026, 3, 6, 15, 0), subject="Before the spring switch")  # Friday
    desk.process(ny(2026, 3, 6, 15, 31))
    row = desk.rows(sa.select(CASE.c.processed_at, CASE.c.ack_due_at, CASE.c.ack_breach_at)
                    .where(CASE.c.number == desk.case_of(m)))[0]
    assert row.processed_at == ny(2026, 3, 6, 15, 30)
    assert (row.ack_due_at, row.ack_breach_at) == (ny(2026, 3, 9, 15, 30), ny(2026, 3, 10, 15, 30))
    assert row.ack_due_at - row.processed_at == timedelta(hours=71)
    holiday = desk.mail(ny(2027, 1, 15, 9, 0), subject="Before Martin Luther King Day")  # Friday
    desk.process(ny(2027, 1, 15, 9, 31))
    row = desk.rows(sa.select(CASE.c.ack_due_at, CASE.c.ack_breach_at)
                    .where(CASE.c.number == desk.case_of(holiday)))[0]
    assert (row.ack_due_at, row.ack_breach_at) == (ny(2027, 1, 19, 9, 30), ny(2027, 1, 20, 9, 30))


def test_a_late_cutoff_promises_from_when_it_ran(db_url: str, tmp_path: Path) -> None:
    """Run three days late (the service was down), the promise counts from the run:
    the acknowledgement never promises a time already past."""
    desk = Desk(db_url, tmp_path)
    desk.directory()
    m = desk.mail(ny(2026, 3, 6, 15, 0), subject="Waited over the weekend")
    desk.process(ny(2026, 3, 9, 11, 0))
    row = desk.rows(sa.select(CASE.c.processed_at, CASE.c.ack_due_at).where(CASE.c.number == desk.case_of(m)))[0]
    assert row.processed_at == ny(2026, 3, 9, 11, 0) and row.ack_due_at == ny(2026, 3, 10, 11, 0)
    import email
    from email.policy import default

    [ack] = [r for r in desk.outbox() if r.kind == "ack"]
    text = body_text(email.message_from_bytes(ack.raw, policy=default))
    assert "answer you by Tue 10 Mar 2026 11:00 EDT" in text
    assert "mail received before 9:30 and before 15:30 Eastern time, Monday to Friday" in text
