"""Every table's SQLAlchemy Core handle, defined once.

The stages write and read with Core statements on these handles (the models in
:mod:`mailcase.domain.models` declare them, one module per stage); importing a
table from here never imports the stage that owns it.  Importing this module
imports every model module, so the metadata then holds every table.
"""

from __future__ import annotations

from typing import cast

import sqlalchemy as sa
from sqlmodel import SQLModel

from mailcase.domain.models.cases import Batch, Case, CaseEvent, CaseMessage, Specialist
from mailcase.domain.models.ingest import Blob, MailboxState, Message, ParsedMail, Quarantine, RawCopy
from mailcase.domain.models.outbound import KbArticle, Outbox, Suppression, SurveyResponse
from mailcase.domain.models.rules import Account, Bounce, Classification, Person, StandingChange, Verdict
from mailcase.domain.models.service import Lease, OAuthToken, ServiceState


def _table(model: type[SQLModel]) -> sa.Table:
    return cast(sa.Table, model.__table__)  # type: ignore[attr-defined]


BLOB = _table(Blob)
MESSAGE = _table(Message)
RAW_COPY = _table(RawCopy)
PARSED_MAIL = _table(ParsedMail)
QUARANTINE = _table(Quarantine)
MAILBOX_STATE = _table(MailboxState)
LEASE = _table(Lease)
ACCOUNT = _table(Account)
STANDING = _table(StandingChange)
PERSON = _table(Person)
VERDICT = _table(Verdict)
CLASSIFICATION = _table(Classification)
BOUNCE = _table(Bounce)
CASE = _table(Case)
CASE_MESSAGE = _table(CaseMessage)
BATCH = _table(Batch)
SPECIALIST = _table(Specialist)
CASE_EVENT = _table(CaseEvent)
OUTBOX = _table(Outbox)
SUPPRESSION = _table(Suppression)
SURVEY_RESPONSE = _table(SurveyResponse)
KB = _table(KbArticle)
OAUTH_TOKEN = _table(OAuthToken)
SERVICE_STATE = _table(ServiceState)
