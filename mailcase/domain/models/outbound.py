"""What goes out and what it learns: the outbox, suppressions, survey responses, knowledge-base articles."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from mailcase.domain.models.columns import timestamp


class Outbox(SQLModel, table=True):
    """A mail we owe: rendered once, delivered at most once per key."""

    __tablename__ = "outbox"
    id: int | None = Field(default=None, primary_key=True)
    #: idempotency key: kind + what it is about (case, message, batch)
    key: str = Field(max_length=300, sa_column_kwargs={"unique": True})
    kind: str = Field(max_length=40, index=True)
    case_id: int | None = Field(default=None, index=True)
    #: every case the mail is about (an acknowledgement lists all of a requester's new cases)
    case_ids: list[int] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))
    message_pk: int | None = Field(default=None, index=True)
    batch_id: int | None = Field(default=None, index=True)
    to_addr: str = Field(max_length=320, index=True)
    envelope_from: str = Field(max_length=320)
    message_id: str = Field(max_length=300, index=True)
    subject: str = ""
    raw: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    #: queued, sending, sent, failed, cancelled, capped, suppressed
    status: str = Field(max_length=16, index=True)
    status_reason: str | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = timestamp(index=True)
    #: when a sender claimed it ("sending"); a stale claim is retried
    claimed_at: datetime | None = timestamp()
    last_error: str | None = None
    created_at: datetime | None = timestamp(nullable=False)
    sent_at: datetime | None = timestamp()


class Suppression(SQLModel, table=True):
    """An address we never send to again (until staff clear it)."""

    __tablename__ = "suppression"
    address: str = Field(primary_key=True, max_length=320)
    reason: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    status: str | None = Field(default=None, max_length=16)
    bounce_id: int | None = None
    since_at: datetime | None = timestamp(nullable=False)
    cleared_at: datetime | None = timestamp()
    cleared_by: str | None = None


class SurveyResponse(SQLModel, table=True):
    __tablename__ = "survey_response"
    id: int | None = Field(default=None, primary_key=True)
    outbox_id: int = Field(index=True)
    case_id: int = Field(index=True)
    message_pk: int = Field(sa_column_kwargs={"unique": True})
    score: int
    at: datetime | None = timestamp(nullable=False)


class KbArticle(SQLModel, table=True):
    """A knowledge-base article (indexed for full-text search)."""

    __tablename__ = "kb_article"
    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(max_length=200, sa_column_kwargs={"unique": True})
    title: str
    url: str
    body: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
