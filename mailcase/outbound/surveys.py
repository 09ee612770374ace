"""Resolutions and satisfaction surveys.

Resolving a case queues the resolution mail; its survey follows after a
delay (default 24 h) unless the requester was surveyed in the last 14 days,
across all their cases -- and never to automatic mail, a suppressed address
or a requester who is not (or no longer) an authorized representative.
Every survey not sent is an event on the case with the reason.

A survey reply counts as a score only when it replies to the survey (its
``[Survey #N]`` token or In-Reply-To) and its first unquoted line is exactly
one digit 1-5; anything else is a follow-up on the case (rules/survey.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcase.config.settings import Config
from mailcase.core.states import LIVE_OUTBOX_STATUSES, CaseEventKind, CaseStatus, MailKind, OutboxStatus
from mailcase.domain.cases import event, get_case, set_status
from mailcase.domain.people import REPRESENTATIVE_ROLES
from mailcase.domain.tables import CASE, OUTBOX, PERSON, SURVEY_RESPONSE
from mailcase.outbound.compose import OutgoingMail
from mailcase.outbound.copies import colleagues, enqueue_copied
from mailcase.outbound.outbox import enqueue, is_suppressed
from mailcase.outbound.render import render, templates
from mailcase.outbound.staffmail import case_view, requester_name, thread
from mailcase.rules.effects import RecordSurvey
from mailcase.rules.record import Applying


def _vars(conn: Connection, config: Config, row: Any) -> dict[str, Any]:
    return {"signature": f"{config.outgoing.from_name}\n{config.outgoing.from_address}",
            "requester": row.requester, "requester_name": requester_name(conn, row), "cases": [case_view(row)]}


def survey_blocker(conn: Connection, config: Config, row: Any, now: datetime) -> str | None:
    """Why this case's requester gets no survey now, or None."""
    if row.no_auto_reply:
        return "the request came from an automatic system"
    suppressed = is_suppressed(conn, row.requester)
    if suppressed:
        return f"{row.requester} is suppressed ({suppressed})"
    if row.person_id is None:
        return f"{row.requester} is not an authorized representative"
    person = conn.execute(sa.select(PERSON.c.role, PERSON.c.removed_at).where(PERSON.c.id == row.person_id)).first()
    if person is None or person.removed_at is not None or person.role not in REPRESENTATIVE_ROLES:
        return f"{row.requester} is no longer an authorized representative"
    quiet = timedelta(days=config.surveys.quiet_days)
    last = conn.execute(sa.select(sa.func.max(OUTBOX.c.created_at)).where(
        OUTBOX.c.to_addr == row.requester, OUTBOX.c.kind == MailKind.SURVEY.value,
        OUTBOX.c.status.in_(LIVE_OUTBOX_STATUSES),
    )).scalar()
    if last is not None:
        from datetime import UTC

        last = last if last.tzinfo else last.replace(tzinfo=UTC)
        if now - last < quiet:
            return f"{row.requester} was surveyed on {last:%Y-%m-%d} (within {config.surveys.quiet_days} days)"
    return None


def resolve(conn: Connection, config: Config, number: int, note: str, now: datetime, actor: str) -> tuple[str, str | None]:
    """Resolve a case, queue its resolution mail and (maybe) its survey.

    Returns (resolution key, why no survey or None).
    """
    row = set_status(conn, number, CaseStatus.RESOLVED, now, actor, note)
    row = get_case(conn, number)
    key = config.hmac_key()
    source = templates(config.outgoing.templates_dir)
    parent, refs = thread(conn, row.id)
    n = conn.execute(sa.select(sa.func.count()).where(  # the requester's, not the colleagues' copies
        OUTBOX.c.case_id == row.id, OUTBOX.c.kind == MailKind.RESOLUTION.value,
        OUTBOX.c.to_addr == row.requester)).scalar_one()
    resolution_key = f"resolution:case:{row.id}:{int(n) + 1}"
    rendered = render(source, "resolution", _vars(conn, config, row) | {
        "note": note.strip(), "reopen_days": config.rules.reopen_window_days})
    if not row.no_auto_reply:  # to the requester and a copy to each colleague; the survey is theirs alone
        enqueue_copied(conn, OutgoingMail(
            key=resolution_key, kind=MailKind.RESOLUTION, notice_kind=None, to_addr=row.requester, to_name="",
            rendered=rendered, case_id=row.id, case_number=row.number, in_reply_to=parent, references=refs,
        ), colleagues(conn, row, now), config, key, now)
    blocker = survey_blocker(conn, config, row, now)
    if blocker is not None:
        event(conn, row.id, now, "mailcase", CaseEventKind.SURVEY_SKIPPED, blocker)
        return resolution_key, blocker
    survey = render(source, "survey", _vars(conn, config, row))
    enqueue(conn, OutgoingMail(
        key=f"survey:case:{row.id}:{int(n) + 1}", kind=MailKind.SURVEY, notice_kind=None, to_addr=row.requester,
        to_name="", rendered=survey, case_id=row.id, case_number=row.number, in_reply_to=parent, references=refs,
    ), config, key, now)
    conn.execute(sa.update(OUTBOX).where(OUTBOX.c.key == f"survey:case:{row.id}:{int(n) + 1}").values(
        next_attempt_at=now + timedelta(hours=config.surveys.delay_hours)))
    event(conn, row.id, now, "mailcase", CaseEventKind.SURVEY_QUEUED,
          f"goes out after {now + timedelta(hours=config.surveys.delay_hours):%Y-%m-%d %H:%M} UTC")
    return resolution_key, None


def record_score(conn: Connection, case_id: int, message_pk: int, outbox_id: int, score: int, now: datetime) -> None:
    exists = conn.execute(sa.select(SURVEY_RESPONSE.c.id).where(SURVEY_RESPONSE.c.message_pk == message_pk)).first()
    if exists is None:
        conn.execute(sa.insert(SURVEY_RESPONSE).values(
            outbox_id=outbox_id, case_id=case_id, message_pk=message_pk, score=score, at=now))
        event(conn, case_id, now, "mailcase", CaseEventKind.SURVEY_SCORE, str(score))


def record_survey(applying: Applying, effect: RecordSurvey) -> None:
    assert applying.mail.pk is not None
    record_score(applying.conn, effect.case_id, applying.mail.pk, effect.outbox_id, effect.score, applying.now)


@dataclass(frozen=True)
class SurveyStats:
    sent: int
    responses: int
    average: float | None


def stats(conn: Connection, since: datetime | None = None) -> SurveyStats:
    q = sa.select(sa.func.count()).where(OUTBOX.c.kind == MailKind.SURVEY.value,
                                         OUTBOX.c.status == OutboxStatus.SENT.value)
    r = sa.select(sa.func.count(), sa.func.avg(SURVEY_RESPONSE.c.score))
    if since:
        q = q.where(OUTBOX.c.sent_at >= since)
        r = r.where(SURVEY_RESPONSE.c.at >= since)
    sent = int(conn.execute(q).scalar_one())
    n, avg = conn.execute(r).one()
    return SurveyStats(sent, int(n), round(float(avg), 2) if avg is not None else None)


def case_for_outbox(conn: Connection, outbox_id: int) -> Any:
    return conn.execute(sa.select(CASE).join(OUTBOX, OUTBOX.c.case_id == CASE.c.id).where(OUTBOX.c.id == outbox_id)).first()
