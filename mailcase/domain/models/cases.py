"""Cases and the cutoffs that make them: cases, their mail and events, batches, specialists."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from mailcase.core.states import Tier
from mailcase.domain.models.columns import UTCDateTime, timestamp


class Case(SQLModel, table=True):
    __tablename__ = "support_case"
    id: int | None = Field(default=None, primary_key=True)
    number: int = Field(sa_column_kwargs={"unique": True})
    account_id: int | None = Field(default=None, foreign_key="account.id", index=True)
    requester: str = Field(max_length=320, index=True)
    person_id: int | None = Field(default=None, foreign_key="person.id")
    subject: str = ""
    severity: int = 3
    priority: int = 3
    tier: str = Field(default=Tier.SSI.value, max_length=8)
    owner_id: int | None = Field(default=None, index=True)
    status: str = Field(max_length=32, index=True)
    out_of_scope: bool = False
    #: made while the account was not in good standing
    held: bool = False
    no_auto_reply: bool = False
    flags: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))
    #: a new request that follows up a case closed too long ago
    linked_case_id: int | None = Field(default=None)
    #: merged into that case: its mail moved there, replies to its mail land there
    merged_into_id: int | None = Field(default=None)
    #: the requester's colleagues (known users of the same account) copied on the
    #: acknowledgement, replies and resolution
    cc: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False, server_default="[]"))
    batch_id: int | None = Field(default=None, index=True)
    #: standing restored: a held case waits for the next cutoff to be acknowledged
    released_at: datetime | None = timestamp()
    received_at: datetime | None = timestamp()
    processed_at: datetime | None = timestamp()
    ack_due_at: datetime | None = timestamp()
    ack_breach_at: datetime | None = timestamp()
    receipt_sent_at: datetime | None = timestamp()
    #: the first human answer to the customer (a staff reply or the resolution, when
    #: sent): what the agreement's 24/48-hour promise measures
    first_response_at: datetime | None = timestamp()
    first_staff_action_at: datetime | None = timestamp()
    resolved_at: datetime | None = timestamp()
    closed_at: datetime | None = timestamp()
    created_at: datetime | None = timestamp(nullable=False)


class CaseMessage(SQLModel, table=True):
    """The unique mail -> case link: a mail belongs to at most one case."""

    __tablename__ = "case_message"
    message_pk: int = Field(primary_key=True, foreign_key="message.id")
    case_id: int = Field(foreign_key="support_case.id", index=True)
    #: a CaseMessageRole
    role: str = Field(max_length=32)
    at: datetime | None = timestamp(nullable=False)


class CaseEvent(SQLModel, table=True):
    """Every change of a case: who, when, what."""

    __tablename__ = "case_event"
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="support_case.id", index=True)
    at: datetime | None = timestamp(nullable=False)
    actor: str = Field(max_length=200)
    kind: str = Field(max_length=40)
    detail: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False))


class Batch(SQLModel, table=True):
    """One cutoff, run exactly once (the unique cutoff_at)."""

    __tablename__ = "batch"
    id: int | None = Field(default=None, primary_key=True)
    cutoff_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UTCDateTime(), nullable=False, unique=True)
    )
    ran_at: datetime | None = timestamp(nullable=False)
    mails: int = 0
    cases: int = 0
    follow_ups: int = 0
    notices: int = 0
    acknowledgements: int = 0
    #: mailboxes that had not synced past the cutoff when it closed (alerted)
    late_mailboxes: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))
    #: mails received before an earlier cutoff that arrived too late for it
    late_mails: int = 0


class Specialist(SQLModel, table=True):
    __tablename__ = "specialist"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, sa_column_kwargs={"unique": True})
    address: str | None = Field(default=None, max_length=320)
    tier: str = Field(default=Tier.SSI.value, max_length=8)
    active: bool = True
    last_assigned_at: datetime | None = timestamp()
    created_at: datetime | None = timestamp(nullable=False)
