"""All tables (SQLModel).  Hot paths use SQLAlchemy Core on these tables.

Timestamps are aware UTC and end in ``_at``; :class:`UTCDateTime` refuses a
naive datetime on the way in and restores UTC on the way out (SQLite keeps no
zone).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel

from mailcase.core.states import MessageState, ReceivedSource

# named constraints: SQLite migrations (batch mode) can only alter what has a name
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: mailcase stores aware UTC only")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _ts(nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=sa.Column(UTCDateTime(), nullable=nullable, index=index))


def _enum(enum: type, default: Any, index: bool = False) -> Any:
    # stored as its string value; a CHECK-less VARCHAR keeps migrations simple
    return Field(default=default, sa_column=sa.Column(sa.String(32), nullable=False, index=index))


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
    date_at: datetime | None = _ts()
    in_reply_to: str | None = None
    refs: str | None = None
    received_at: datetime | None = _ts(index=True)
    received_source: str = _enum(ReceivedSource, ReceivedSource.FILE_TIME)
    #: why a better source of received_at was passed over (an implausible date), if one was
    received_note: str | None = None
    state: str = _enum(MessageState, MessageState.STORED, index=True)
    historical: bool = False
    #: the cutoff batch that claimed this mail (claimed once: WHERE batch_id IS NULL)
    batch_id: int | None = Field(default=None, index=True)
    stored_at: datetime | None = _ts(nullable=False)
    state_changed_at: datetime | None = _ts(nullable=False)
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
    received_at: datetime | None = _ts()
    received_source: str = _enum(ReceivedSource, ReceivedSource.FILE_TIME)
    received_note: str | None = None
    stored_at: datetime | None = _ts(nullable=False)
    #: post-action owed on the server ("seen", "move:<folder>"); persisted so a
    #: crash between commit and action is repaired on the next sync
    post_action: str | None = Field(default=None, max_length=300)
    post_action_done_at: datetime | None = _ts()


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
    parsed_at: datetime | None = _ts(nullable=False)


class Quarantine(SQLModel, table=True):
    """A mail that failed at some stage, with the error; retry puts it back."""

    __tablename__ = "quarantine"
    id: int | None = Field(default=None, primary_key=True)
    message_pk: int = Field(foreign_key="message.id", index=True)
    stage: str = Field(max_length=32)
    error_type: str = Field(max_length=200)
    error: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    traceback: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    created_at: datetime | None = _ts(nullable=False)
    attempts: int = 1
    resolved_at: datetime | None = _ts(index=True)


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
    historical_before: datetime | None = _ts()
    last_sync_started_at: datetime | None = _ts()
    last_sync_ok_at: datetime | None = _ts()
    #: start time of the last sync that completed: a cutoff before it has all its mail
    last_sync_ok_started_at: datetime | None = _ts()
    last_error: str | None = None
    last_error_at: datetime | None = _ts()
    #: what the daemon's worker for this mailbox is doing (for `mailcase status`)
    mode: str | None = Field(default=None, max_length=16)  # "idle", "poll", "maildir"
    worker_state: str | None = Field(default=None, max_length=32)  # "connected", "down", "waiting-lease"
    worker_state_at: datetime | None = _ts()
    worker: str | None = Field(default=None, max_length=300)  # host and pid
    heartbeat_at: datetime | None = _ts()


class Lease(SQLModel, table=True):
    """Who owns a mailbox (or another singleton job) right now."""

    __tablename__ = "lease"
    name: str = Field(primary_key=True, max_length=100)
    holder: str = Field(max_length=300)
    host: str = Field(max_length=255)
    pid: int
    acquired_at: datetime | None = _ts(nullable=False)
    expires_at: datetime | None = _ts(nullable=False)


# -- directory: accounts, people, staff (issue 4) ------------------------------------


class Account(SQLModel, table=True):
    """A customer account; its standing and people are kept with history."""

    __tablename__ = "account"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=100, sa_column_kwargs={"unique": True})
    name: str
    #: requests must carry the representative's PIN
    pin_required: bool = False
    #: PIN acceptance locked after repeated failures, until staff unlock it
    pin_locked_at: datetime | None = _ts()
    created_at: datetime | None = _ts(nullable=False)


class StandingChange(SQLModel, table=True):
    """Financial standing over time: the standing as of a cutoff is the last change before it."""

    __tablename__ = "standing_change"
    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    standing: str = Field(max_length=16)  # "good" | "hold"
    at: datetime | None = _ts(nullable=False)
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
    added_at: datetime | None = _ts(nullable=False)
    removed_at: datetime | None = _ts()


# -- the rules' record (issue 4) ----------------------------------------------------


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
    at: datetime | None = _ts(nullable=False)


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
    at: datetime | None = _ts(nullable=False)


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
    at: datetime | None = _ts(nullable=False)


# -- cases (issues 4-5) ---------------------------------------------------------------


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
    tier: str = Field(default="SSI", max_length=8)
    owner_id: int | None = Field(default=None, index=True)
    status: str = Field(max_length=32, index=True)
    out_of_scope: bool = False
    #: made while the account was not in good standing
    held: bool = False
    no_auto_reply: bool = False
    flags: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))
    #: a new request that follows up a case closed too long ago
    linked_case_id: int | None = Field(default=None)
    batch_id: int | None = Field(default=None, index=True)
    #: standing restored: a held case waits for the next cutoff to be acknowledged
    released_at: datetime | None = _ts()
    received_at: datetime | None = _ts()
    processed_at: datetime | None = _ts()
    ack_due_at: datetime | None = _ts()
    ack_breach_at: datetime | None = _ts()
    receipt_sent_at: datetime | None = _ts()
    #: the first human answer to the customer (a staff reply or the resolution, when
    #: sent): what the agreement's 24/48-hour promise measures
    first_response_at: datetime | None = _ts()
    first_staff_action_at: datetime | None = _ts()
    resolved_at: datetime | None = _ts()
    closed_at: datetime | None = _ts()
    created_at: datetime | None = _ts(nullable=False)


class CaseMessage(SQLModel, table=True):
    """The unique mail -> case link: a mail belongs to at most one case."""

    __tablename__ = "case_message"
    message_pk: int = Field(primary_key=True, foreign_key="message.id")
    case_id: int = Field(foreign_key="support_case.id", index=True)
    #: "request", "follow-up", "staff-note"
    role: str = Field(max_length=32)
    at: datetime | None = _ts(nullable=False)


# -- cutoffs, cases, outbox (issue 5) -----------------------------------------------------


class Batch(SQLModel, table=True):
    """One cutoff, run exactly once (the unique cutoff_at)."""

    __tablename__ = "batch"
    id: int | None = Field(default=None, primary_key=True)
    cutoff_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UTCDateTime(), nullable=False, unique=True)
    )
    ran_at: datetime | None = _ts(nullable=False)
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
    tier: str = Field(default="SSI", max_length=8)
    active: bool = True
    last_assigned_at: datetime | None = _ts()
    created_at: datetime | None = _ts(nullable=False)


class CaseEvent(SQLModel, table=True):
    """Every change of a case: who, when, what."""

    __tablename__ = "case_event"
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="support_case.id", index=True)
    at: datetime | None = _ts(nullable=False)
    actor: str = Field(max_length=200)
    kind: str = Field(max_length=40)
    detail: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False))


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
    next_attempt_at: datetime | None = _ts(index=True)
    #: when a sender claimed it ("sending"); a stale claim is retried
    claimed_at: datetime | None = _ts()
    last_error: str | None = None
    created_at: datetime | None = _ts(nullable=False)
    sent_at: datetime | None = _ts()


# -- delivery: suppression, surveys, knowledge base (issue 6) -----------------------------


class Suppression(SQLModel, table=True):
    """An address we never send to again (until staff clear it)."""

    __tablename__ = "suppression"
    address: str = Field(primary_key=True, max_length=320)
    reason: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    status: str | None = Field(default=None, max_length=16)
    bounce_id: int | None = None
    since_at: datetime | None = _ts(nullable=False)
    cleared_at: datetime | None = _ts()
    cleared_by: str | None = None


class SurveyResponse(SQLModel, table=True):
    __tablename__ = "survey_response"
    id: int | None = Field(default=None, primary_key=True)
    outbox_id: int = Field(index=True)
    case_id: int = Field(index=True)
    message_pk: int = Field(sa_column_kwargs={"unique": True})
    score: int
    at: datetime | None = _ts(nullable=False)


class KbArticle(SQLModel, table=True):
    """A knowledge-base article (indexed for full-text search)."""

    __tablename__ = "kb_article"
    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(max_length=200, sa_column_kwargs={"unique": True})
    title: str
    url: str
    body: str = Field(sa_column=sa.Column(sa.Text, nullable=False))


class OAuthToken(SQLModel, table=True):
    """OAuth2 tokens of one mailbox or the SMTP server; the refresh token rotates."""

    __tablename__ = "oauth_token"
    name: str = Field(primary_key=True, max_length=100)
    access_token: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    expires_at: datetime | None = _ts()
    refresh_token: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    updated_at: datetime | None = _ts()
    last_error: str | None = None
    last_error_at: datetime | None = _ts()


# -- the service (issue 12) ------------------------------------------------------------------


class ServiceState(SQLModel, table=True):
    """Small facts about the desk as a whole (when cutoffs start, the last cutoff failure)."""

    __tablename__ = "service_state"
    key: str = Field(primary_key=True, max_length=100)
    value: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False))
    at: datetime | None = _ts(nullable=False)
