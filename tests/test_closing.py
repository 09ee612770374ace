"""Resolved cases close themselves after a quiet period (issue 15); retention then applies."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from batching import Desk, ny

from mailcase.domain.db import transaction
from mailcase.domain.tables import CASE, CASE_EVENT, CASE_MESSAGE, MESSAGE, OUTBOX, PARSED_MAIL
from mailcase.ops.closing import close_quiet_cases, close_resolved
from mailcase.ops.daemon import run_pass
from mailcase.ops.retention import purge
from mailcase.outbound.surveys import resolve


def _status(desk: Desk) -> dict[int, tuple[str, object]]:
    return {r.number: (r.status, r.closed_at) for r in desk.rows(sa.select(CASE.c.number, CASE.c.status,
                                                                            CASE.c.closed_at))}


def test_resolved_case_closes_after_seven_quiet_days_once(db_url: str, tmp_path: Path) -> None:
    desk = Desk(db_url, tmp_path)
    desk.directory()
    desk.mail(ny(2026, 11, 23, 8, 0), subject="Printer queue stuck")
    desk.mail(ny(2026, 11, 23, 8, 5), subject="Export fails")
    desk.process(ny(2026, 11, 23, 9, 31))
    resolved_at = ny(2026, 11, 23, 11, 0)
    with transaction(desk.engine) as conn:
        resolve(conn, desk.config, 1, "Spooler restarted.", resolved_at, "sam")
        resolve(conn, desk.config, 2, "Export fixed.", resolved_at, "sam")
    # the customer answers case 2's resolution: it reopens, and is not closed
    resolution = desk.rows(sa.select(OUTBOX.c.message_id).where(OUTBOX.c.kind == "resolution",
                                                                OUTBOX.c.case_id == 2))[0][0]
    desk.mail(ny(2026, 11, 24, 8, 0), subject="Re: Export fails", body="Still failing.\n",
              headers={"In-Reply-To": resolution, "References": resolution})
    desk.process(ny(2026, 11, 24, 8, 5))
    assert _status(desk)[2][0] == "in-progress"

    assert desk.config.retention.close_resolved_after_days == 7
    assert close_quiet_cases(desk.engine, desk.config, resolved_at + timedelta(days=6)) == []
    assert _status(desk)[1] == ("resolved", None)
    eight = resolved_at + timedelta(days=8)
    assert close_quiet_cases(desk.engine, desk.config, eight) == [1]
    assert _status(desk) == {1: ("closed", eight), 2: ("in-progress", None)}
    events = desk.rows(sa.select(CASE_EVENT.c.kind, CASE_EVENT.c.actor, CASE_EVENT.c.detail)
                       .where(CASE_EVENT.c.case_id == 1, CASE_EVENT.c.kind == "closed"))
    assert [(e.kind, e.actor) for e in events] == [("closed", "mailcase")]
    assert "no customer reply for 7 days" in events[0].detail
    # running again closes nothing twice
    assert close_quiet_cases(desk.engine, desk.config, eight + timedelta(minutes=1)) == []
    assert desk.scalar(sa.select(sa.func.count()).select_from(CASE_EVENT).where(CASE_EVENT.c.kind == "closed")) == 1
    # retention then applies: the closed case's mail is purged once it was closed before the date
    with transaction(desk.engine) as conn:
        assert purge(conn, eight - timedelta(days=1)).texts == 0
        done = purge(conn, eight + timedelta(days=1))
    assert done.messages == 1 and done.texts == 1
    assert desk.scalar(sa.select(sa.func.count()).select_from(PARSED_MAIL).where(PARSED_MAIL.c.text_body == "")) == 1


def test_a_late_customer_mail_keeps_the_case_open_and_zero_days_never_closes(db_url: str, tmp_path: Path) -> None:
    desk = Desk(db_url, tmp_path)
    desk.directory()
    desk.mail(ny(2026, 11, 23, 8, 0), subject="Printer queue stuck")
    desk.process(ny(2026, 11, 23, 9, 31))
    resolved_at = ny(2026, 11, 23, 11, 0)
    with transaction(desk.engine) as conn:
        resolve(conn, desk.config, 1, "Spooler restarted.", resolved_at, "sam")
        # never closed with the key at 0
        assert close_resolved(conn, resolved_at + timedelta(days=30), 0) == []
        # a customer mail on the case after the resolution (attached, not yet reopened): the quiet
        # period runs from that mail
        case_id = conn.execute(sa.select(CASE.c.id).where(CASE.c.number == 1)).scalar_one()
        pk = conn.execute(sa.select(CASE_MESSAGE.c.message_pk).where(CASE_MESSAGE.c.case_id == case_id)).scalar()
        conn.execute(sa.update(MESSAGE).where(MESSAGE.c.id == pk).values(received_at=resolved_at + timedelta(days=3)))
        assert close_resolved(conn, resolved_at + timedelta(days=8), 7) == []
        assert close_resolved(conn, resolved_at + timedelta(days=10, minutes=1), 7) == [1]


def test_run_once_closes_quiet_resolved_cases(db_url: str, tmp_path: Path) -> None:
    desk = Desk(db_url, tmp_path)
    desk.directory()
    desk.mail(ny(2026, 11, 23, 8, 0), subject="Printer queue stuck")
    desk.process(ny(2026, 11, 23, 9, 31))
    with transaction(desk.engine) as conn:
        resolve(conn, desk.config, 1, "Spooler restarted.", ny(2026, 11, 23, 11, 0), "sam")
    desk.clock.at = ny(2026, 12, 2, 11, 0)
    run_pass(desk.engine, desk.config, desk.clock)
    assert _status(desk)[1] == ("closed", ny(2026, 12, 2, 11, 0))
