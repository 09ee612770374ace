"""Every table's SQLAlchemy Core handle, defined once.

The stages write and read with Core statements on these handles (the models in
:mod:`mailcase.domain.models` declare them); importing a table from here never
imports the stage that owns it.
"""

from __future__ import annotations

from typing import cast

import sqlalchemy as sa
from sqlmodel import SQLModel

from mailcase.domain import models


def _table(model: type[SQLModel]) -> sa.Table:
    return cast(sa.Table, model.__table__)  # type: ignore[attr-defined]


BLOB = _table(models.Blob)
MESSAGE = _table(models.Message)
RAW_COPY = _table(models.RawCopy)
PARSED_MAIL = _table(models.ParsedMail)
QUARANTINE = _table(models.Quarantine)
MAILBOX_STATE = _table(models.MailboxState)
LEASE = _table(models.Lease)
ACCOUNT = _table(models.Account)
STANDING = _table(models.StandingChange)
PERSON = _table(models.Person)
VERDICT = _table(models.Verdict)
CLASSIFICATION = _table(models.Classification)
BOUNCE = _table(models.Bounce)
CASE = _table(models.Case)
CASE_MESSAGE = _table(models.CaseMessage)
BATCH = _table(models.Batch)
SPECIALIST = _table(models.Specialist)
CASE_EVENT = _table(models.CaseEvent)
OUTBOX = _table(models.Outbox)
SUPPRESSION = _table(models.Suppression)
SURVEY_RESPONSE = _table(models.SurveyResponse)
KB = _table(models.KbArticle)
OAUTH_TOKEN = _table(models.OAuthToken)
SERVICE_STATE = _table(models.ServiceState)
