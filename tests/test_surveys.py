"""Resolutions and surveys: the 14-day rule across cases, scores and non-scores."""

from __future__ import annotations

import email
from datetime import datetime, timedelta
from email.policy import default
from pathlib import Path

import sqlalchemy as sa
from batching import Desk, ny

from mailcase.domain.db import transaction
from mailcase.domain.tables import CASE, CASE_EVENT, CASE_MESSAGE, MESSAGE, OUTBOX, SURVEY_RESPONSE
from mailcase.outbound.deliver import deliver_due
from mailcase.outbound.surveys import resolve, stats
from mailcase.outbound.transport import transport_for


def _resolve(desk: Desk, number: int, at: datetime, note: str = "Fixed the printer profile.") -> str | None:
    with transaction(desk.engine) as conn:
        _, why = resolve(conn, desk.config, number, note, at, "sam")
    return why


def test_fourteen_day_rule_across_cases(db_url: str, tmp_path: Path) -> None:
    desk = Desk(db_url, tmp_path)
    desk.directory()
    for day in (2, 3, 10, 20):  # November 2026
        desk.mail(ny(2026, 11, day, 8, 0), subject=f"Problem of day {day}")
    desk.mail(ny(2026, 11, 2, 8, 5), sender="monitor@acme.example", subject="ALERT disk full",
              headers={"Auto-Submitted": "auto-generated"})
    desk.process(ny(2026, 11, 20, 9, 31))
    numbers = {desk.scalar(sa.select(CASE.c.subject).where(CASE.c.number == n)): n for n in range(1, 6)}
    assert _resolve(desk, numbers["Problem of day 2"], ny(2026, 11, 4, 10, 0)) is None
    # three days later, another of alice's cases: within 14 days, no survey
    why = _resolve(desk, numbers["Problem of day 3"], ny(2026, 11, 7, 10, 0))
    assert why is not None and "surveyed on 2026-11-04" in why
    # the automatic monitoring case never gets one
    assert "automatic system" in (_resolve(desk, numbers["ALERT disk full"], ny(2026, 11, 8, 10, 0)) or "")
    # 15 days after the first survey: surveyed again
    assert _resolve(desk, numbers["Problem of day 10"], ny(2026, 11, 19, 10, 0)) is None
    assert "surveyed on 2026-11-19" in (_resolve(desk, numbers["Problem of day 20"], ny(2026, 11, 25, 10, 0)) or "")
    surveys = desk.rows(sa.select(OUTBOX.c.case_id, OUTBOX.c.next_attempt_at, OUTBOX.c.created_at)
                        .where(OUTBOX.c.kind == "survey").order_by(OUTBOX.c.id))
    assert len(surveys) == 2
    assert all(s.next_attempt_at - s.created_at == timedelta(hours=24) for s in surveys)
    resolutions = desk.rows(sa.select(OUTBOX.c.case_id).where(OUTBOX.c.kind == "resolution"))
    assert len(resolutions) == 4  # the automatic case gets no resolution mail either
    skipped = desk.rows(sa.select(CASE_EVENT.c.detail).where(CASE_EVENT.c.kind == "survey-skipped"))
    assert len(skipped) == 3


def test_survey_reply_score_and_follow_up(db_url: str, tmp_path: Path) -> None:
    desk = Desk(db_url, tmp_path)
    desk.directory()
    desk.mail(ny(2026, 11, 23, 8, 0), subject="Claims rejected")
    desk.process(ny(2026, 11, 23, 9, 31))
    _resolve(desk, 1, ny(2026, 11, 23, 11, 0))
    deliver_due(desk.engine, transport_for(desk.config), ny(2026, 11, 24, 11, 1), desk.config)
    survey = desk.rows(sa.select(OUTBOX).where(OUTBOX.c.kind == "survey"))[0]
    assert survey.status == "sent"
    msg = email.message_from_bytes(survey.raw, policy=default)
    assert msg["Subject"].startswith("[Survey #000001]") and msg["Auto-Submitted"] == "auto-generated"
    score = desk.mail(ny(2026, 11, 24, 12, 0), subject=f"Re: {msg['Subject']}",
                      headers={"In-Reply-To": survey.message_id}, body="5\n\n> How satisfied are you?\n")
    crash = desk.mail(ny(2026, 11, 24, 12, 5), subject=f"Re: {msg['Subject']}",
                      headers={"In-Reply-To": survey.message_id}, body="5 minutes later it crashed again\n")
    desk.process(ny(2026, 11, 24, 12, 10))
    responses = desk.rows(sa.select(SURVEY_RESPONSE.c.score, SURVEY_RESPONSE.c.case_id))
    assert [r.score for r in responses] == [5]
    roles = dict(desk.rows(sa.select(MESSAGE.c.message_id, CASE_MESSAGE.c.role)
                           .join(CASE_MESSAGE, CASE_MESSAGE.c.message_pk == MESSAGE.c.id)))
    assert roles.get(crash) == "follow-up" and score not in roles
    # a follow-up to a resolved case reopens it
    assert desk.scalar(sa.select(CASE.c.status).where(CASE.c.number == 1)) == "in-progress"
    with desk.engine.connect() as conn:
        st = stats(conn)
    assert (st.sent, st.responses, st.average) == (1, 1, 5.0)
