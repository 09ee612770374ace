"""Ingest's tables: raw bytes, messages and their copies, the parse, quarantine, each mailbox's sync position."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from mailcase.core.states import MessageState, ReceivedSource
from mailcase.domain.models.columns import enum_value, timestamp


class Blob(SQLModel, table=True):
    """Raw bytes, content-addressed: the source of truth for every mail."""

    __tablename__ = "blob"
    sha256: str = Field(primary_key=True, max_length=64)
    size: int
    data: bytes | None = Field(default=None, sa_column=sa.Column(sa.LargeBinary, nullable=True))


class Message(SQLModel, table=True):
    """One logical mail: every raw copy of it points here."""

    __tablename__ = "message"
    id: int | None = Field(default=None, primary_key=True)
    #: sha256 over Message-ID, From, Date and the line-ending-normalised body
    identity: str = Field(max_length=64, sa_column_kwargs={"unique": True})
    message_id: str = Field(max_length=998, index=True)
    message_id_derived: bool = False
    from_addr: str | None = Field(default=None, max_length=320, index=True)
    from_name: str | None = None
    #: False when From is not exactly one well-formed mailbox: never trusted
    from_strict: bool = False
    subject: str | None = None
    date_at: datetime | None = timestamp()
    in_reply_to: str | None = None
    refs: str | None = None
    received_at: datetime | None = timestamp(index=True)
    received_source: str = enum_value(ReceivedSource, ReceivedSource.FILE_TIME)
    #: why a better source of received_at was passed over (an implausible date), if one was
    received_note: str | None = None
    state: str = enum_value(MessageState, MessageState.STORED, index=True)
    historical: bool = False
    #: the cutoff batch that claimed this mail (claimed once: WHERE batch_id IS NULL)
    batch_id: int | None = Field(default=None, index=True)
    stored_at: datetime | None = timestamp(nullable=False)
    state_changed_at: datetime | None = timestamp(nullable=False)
    #: the raw copy the later stages read
    primary_sha256: str = Field(max_length=64, foreign_key="blob.sha256")


class RawCopy(SQLModel, table=True):
    """One raw copy of a mail as one source delivered it."""

    __tablename__ = "raw_copy"
    __table_args__ = (sa.UniqueConstraint("source", "source_key", name="uq_raw_copy_source_key"),)
    id: int | None = Field(default=None, primary_key=True)
    message_pk: int = Field(foreign_key="message.id", index=True)
    #: "imap:<mailbox>", "maildir:<path>", "mbox:<path>" or "eml:<path>"
    source: str = Field(max_length=1024)
    #: "<uidvalidity>:<uid>" for IMAP, "sha256:<hex>" for files
    source_key: str = Field(max_length=128)
    mailbox: str | None = Field(default=None, max_length=64, index=True)
    uidvalidity: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    uid: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    sha256: str = Field(max_length=64, foreign_key="blob.sha256", index=True)
    size: int
    #: server-side size when only the headers were kept (over the size limit)
    truncated_from: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    received_at: datetime | None = timestamp()
    received_source: str = enum_value(ReceivedSource, ReceivedSource.FILE_TIME)
    received_note: str | None = None
    stored_at: datetime | None = timestamp(nullable=False)
    #: post-action owed on the server ("seen", "move:<folder>"); persisted so a
    #: crash between commit and action is repaired on the next sync
    post_action: str | None = Field(default=None, max_length=300)
    post_action_done_at: datetime | None = timestamp()


class ParsedMail(SQLModel, table=True):
    """The full parse of a message's primary raw copy."""

    __tablename__ = "parsed_mail"
    message_pk: int = Field(primary_key=True, foreign_key="message.id")
    parser: str = Field(max_length=32)
    to_addrs: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))
    cc_addrs: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))
    reply_to: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))
    text_body: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False))
    body_from_html: bool = False
    attachments: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False)
    )
    defects: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))
    #: sha256 of the text with whitespace collapsed: finds repeated mail (floods)
    text_sha256: str = Field(default="", max_length=64, index=True)
    #: sha256 of the newest part's words, numbers and dates blanked: near-identical
    #: requests (an autoresponder's, a loop) share it
    loose_sha256: str | None = Field(default=None, max_length=64)
    #: HMACs of the PINs on labelled lines (the digits are redacted from text_body)
    pin_hmacs: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))
    #: the newest, unquoted part of text_body (PINs redacted), worked out by the
    #: parse worker when the text has reply or forward markers; NULL: the whole text
    reply_text: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    parsed_at: datetime | None = timestamp(nullable=False)


class Quarantine(SQLModel, table=True):
    """A mail that failed at some stage, with the error; retry puts it back."""

    __tablename__ = "quarantine"
    id: int | None = Field(default=None, primary_key=True)
    message_pk: int = Field(foreign_key="message.id", index=True)
    stage: str = Field(max_length=32)
    error_type: str = Field(max_length=200)
    error: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    traceback: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    created_at: datetime | None = timestamp(nullable=False)
    attempts: int = 1
    resolved_at: datetime | None = timestamp(index=True)


class MailboxState(SQLModel, table=True):
    """Sync position of one configured mailbox."""

    __tablename__ = "mailbox_state"
    name: str = Field(primary_key=True, max_length=64)
    uidvalidity: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    #: highest UID committed (the high-water mark)
    last_uid: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False))
    #: UIDs at or below this are historical (resolved from start_at on first sync)
    historical_below_uid: int = Field(
        default=0, sa_column=sa.Column(sa.BigInteger, nullable=False)
    )
    historical_before: datetime | None = timestamp()
    last_sync_started_at: datetime | None = timestamp()
    last_sync_ok_at: datetime | None = timestamp()
    #: start time of the last sync that completed: a cutoff before it has all its mail
    last_sync_ok_started_at: datetime | None = timestamp()
    last_error: str | None = None
    last_error_at: datetime | None = timestamp()
    #: what the daemon's worker for this mailbox is doing (for `mailcase status`)
    mode: str | None = Field(default=None, max_length=16)  # "idle", "poll", "maildir"
    worker_state: str | None = Field(default=None, max_length=32)  # "connected", "down", "waiting-lease"
    worker_state_at: datetime | None = timestamp()
    worker: str | None = Field(default=None, max_length=300)  # host and pid
    heartbeat_at: datetime | None = timestamp()
