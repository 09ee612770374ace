"""The effect handlers of a stage that may meet bounces, survey scores and mail to and from staff.

:data:`EFFECTS` is the rules' and the domain's handlers plus the outbound
stage's own: a delivery report is stored and matched to the mail of ours it is
about (:func:`mailcase.outbound.bounces.record_bounce`), a survey reply's score
is recorded (:func:`mailcase.outbound.surveys.record_survey`), a customer's
follow-up is recorded and its owner told (:func:`mailcase.outbound.staffnews.customer_wrote`),
a staff member's reply by mail is queued to the customer
(:func:`mailcase.outbound.staffmail.queue_reply`).  The daemon, the CLI and the
cutoff pass it to the classify stage.
"""

from __future__ import annotations

import sqlalchemy as sa

from mailcase.domain.tables import SPECIALIST
from mailcase.outbound.bounces import record_bounce
from mailcase.outbound.staffmail import queue_reply
from mailcase.outbound.staffnews import customer_wrote
from mailcase.outbound.surveys import record_survey
from mailcase.rules.effects import CustomerWrote, RecordBounce, RecordSurvey, StaffReply
from mailcase.rules.record import BASE_EFFECTS, Applying, EffectHandlers


def _customer_wrote(applying: Applying, effect: CustomerWrote) -> None:
    mail = applying.mail
    assert mail.pk is not None
    customer_wrote(applying.conn, applying.config, effect.case_id, mail.pk, mail.sender or "?", applying.now,
                   effect.reopened)


def _staff_reply(applying: Applying, effect: StaffReply) -> None:
    conn = applying.conn
    name = conn.execute(sa.select(SPECIALIST.c.name).where(sa.func.lower(SPECIALIST.c.address) == effect.staff.lower())
                        .order_by(SPECIALIST.c.id).limit(1)).scalar()
    queue_reply(conn, applying.config, effect.number, effect.text, name or effect.staff, applying.now,
                f"mail from {effect.staff} (mail #{applying.mail.pk})", source=f"mail:{applying.mail.pk}")


EFFECTS: EffectHandlers = {
    **BASE_EFFECTS, RecordBounce: record_bounce, RecordSurvey: record_survey,
    CustomerWrote: _customer_wrote, StaffReply: _staff_reply,
}
