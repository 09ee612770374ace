"""The service's own tables: leases, OAuth2 tokens, desk-wide state."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from mailcase.domain.models.columns import timestamp


class Lease(SQLModel, table=True):
    """Who owns a mailbox (or another singleton job) right now."""

    __tablename__ = "lease"
    name: str = Field(primary_key=True, max_length=100)
    holder: str = Field(max_length=300)
    host: str = Field(max_length=255)
    pid: int
    acquired_at: datetime | None = timestamp(nullable=False)
    expires_at: datetime | None = timestamp(nullable=False)


class OAuthToken(SQLModel, table=True):
    """OAuth2 tokens of one mailbox or the SMTP server; the refresh token rotates."""

    __tablename__ = "oauth_token"
    name: str = Field(primary_key=True, max_length=100)
    access_token: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    expires_at: datetime | None = timestamp()
    refresh_token: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    updated_at: datetime | None = timestamp()
    last_error: str | None = None
    last_error_at: datetime | None = timestamp()


class ServiceState(SQLModel, table=True):
    """Small facts about the desk as a whole (when cutoffs start, the last cutoff failure)."""

    __tablename__ = "service_state"
    key: str = Field(primary_key=True, max_length=100)
    value: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False))
    at: datetime | None = timestamp(nullable=False)
