"""The directory the rules read (accounts, standing, people) and the rules' record (verdicts, classifications, bounces)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from mailcase.domain.models.columns import timestamp


class Account(SQLModel, table=True):
    """A customer account; its standing and people are kept with history."""

    __tablename__ = "account"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=100, sa_column_kwargs={"unique": True})
    name: str
    #: requests must carry the representative's PIN
    pin_required: bool = False
    #: PIN acceptance locked after repeated failures, until staff unlock it
    pin_locked_at: datetime | None = timestamp()
    created_at: datetime | None = timestamp(nullable=False)


class StandingChange(SQLModel, table=True):
    """Financial standing over time: the standing as of a cutoff is the last change before it."""

    __tablename__ = "standing_change"
    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    standing: str = Field(max_length=16)  # "good" | "hold"
    at: datetime | None = timestamp(nullable=False)
    actor: str = Field(max_length=200)


class Person(SQLModel, table=True):
    """A known address of an account, valid from ``added_at`` until ``removed_at``."""

    __tablename__ = "person"
    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    address: str = Field(max_length=320, index=True)
    name: str = ""
    #: "representative", "administrator" or "user"
    role: str = Field(max_length=32)
    #: HMAC-SHA256 of the PIN under the configured key; never the PIN
    pin_hash: str | None = Field(default=None, max_length=64)
    added_at: datetime | None = timestamp(nullable=False)
    removed_at: datetime | None = timestamp()


class Verdict(SQLModel, table=True):
    """One rule's verdict on one mail, at ingest or at a cutoff."""

    __tablename__ = "verdict"
    id: int | None = Field(default=None, primary_key=True)
    message_pk: int = Field(foreign_key="message.id", index=True)
    #: "ingest" or "cutoff <ISO time>"
    phase: str = Field(max_length=64)
    seq: int
    rule: str = Field(max_length=64)
    name: str = Field(max_length=64, index=True)
    reason: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    disposition: str | None = Field(default=None, max_length=32)
    at: datetime | None = timestamp(nullable=False)


class Classification(SQLModel, table=True):
    """The chain's latest outcome for a mail (verdicts keep the history)."""

    __tablename__ = "classification"
    message_pk: int = Field(primary_key=True, foreign_key="message.id")
    phase: str = Field(max_length=64)
    disposition: str = Field(max_length=32, index=True)
    no_auto_reply: bool = False
    automatic: bool = False
    account_id: int | None = Field(default=None, foreign_key="account.id", index=True)
    person_id: int | None = Field(default=None, foreign_key="person.id")
    #: the requester: the From address (normalised), never Reply-To
    sender: str | None = Field(default=None, max_length=320, index=True)
    eligible: bool = False
    case_pk: int | None = Field(default=None, index=True)
    #: a new request that replies to a case closed too long ago
    linked_case_id: int | None = None
    notice: str | None = Field(default=None, max_length=32)
    notice_allowed: bool = False
    notice_withheld_reason: str | None = None
    severity: int = 3
    out_of_scope: bool = False
    hold: bool = False
    flags: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))
    #: the sender-authentication result and the settings it was computed under
    auth: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(sa.JSON, nullable=True))
    #: what the content-only rules worked out from the mail alone, and the key of
    #: the code and the mail they were worked out from (rules/content.py)
    content: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(sa.JSON, nullable=True))
    at: datetime | None = timestamp(nullable=False)


class Bounce(SQLModel, table=True):
    """A delivery failure report, and whether it matched a mail we sent."""

    __tablename__ = "bounce"
    id: int | None = Field(default=None, primary_key=True)
    message_pk: int = Field(foreign_key="message.id", index=True)
    recipient: str | None = Field(default=None, max_length=320, index=True)
    #: the DSN's Original-Recipient, when it differs (mail through an alias)
    original_recipient: str | None = Field(default=None, max_length=320)
    status: str | None = Field(default=None, max_length=16)
    action: str | None = Field(default=None, max_length=32)
    original_message_id: str | None = Field(default=None, max_length=998)
    kind: str = Field(max_length=32)  # "dsn", "vendor", "read-receipt", "abuse-report"
    matched_outbox_id: int | None = None
    at: datetime | None = timestamp(nullable=False)
