"""Every state and kind a stored row can be in: one place, used everywhere.

A logical mail (``message`` row) moves forward through the pipeline::

    stored -> headers-read -> parsed -> classified -> pending -> batched

``stored``        raw bytes committed; nothing else is known yet.  Normally
                  never seen: headers are read in the same transaction.
``headers-read``  the header fields that ingest-time rules need (From,
                  Message-ID, threading, automatic-mail markers) are stored;
                  the full parse has not run yet.
``parsed``        body text, attachments and defects are stored.
``classified``    the rules chain gave a final disposition that is not a new
                  request (suppressed, follow-up attached, staff note, notice
                  only).  Terminal.
``pending``       a request waiting for the next cutoff.
``batched``       made into (or attached to) a case at a cutoff.  Terminal.

Side states, reachable from any stage:

``historical``    imported from before a mailbox's start point, or by
                  ``reprocess``: kept, threaded and searchable, never a case,
                  never a reason to send mail.  Historical mail is still
                  parsed; ``historical`` is where it ends instead of
                  ``classified``/``pending``.
``held``          held for review (floods): no case, no mail until staff act.
``quarantined``   failed at some stage; the quarantine row says which stage
                  and why; ``retry`` puts it back to the state before that
                  stage.
"""

from __future__ import annotations

from enum import StrEnum


class MessageState(StrEnum):
    STORED = "stored"
    HEADERS_READ = "headers-read"
    PARSED = "parsed"
    CLASSIFIED = "classified"
    PENDING = "pending"
    BATCHED = "batched"
    HISTORICAL = "historical"
    HELD = "held"
    QUARANTINED = "quarantined"


class Stage(StrEnum):
    """Pipeline stages; a quarantine row names the one that failed."""

    FETCH = "fetch"        # too large to fetch, or unreadable from the server
    HEADERS = "headers"
    PARSE = "parse"
    CLASSIFY = "classify"
    BATCH = "batch"


#: the state a message returns to when a quarantine at that stage is retried
RETRY_STATE: dict[Stage, MessageState] = {
    Stage.FETCH: MessageState.STORED,
    Stage.HEADERS: MessageState.STORED,
    Stage.PARSE: MessageState.HEADERS_READ,
    Stage.CLASSIFY: MessageState.PARSED,
    Stage.BATCH: MessageState.PENDING,
}


class SourceKind(StrEnum):
    IMAP = "imap"
    MAILDIR = "maildir"
    MBOX = "mbox"
    EML = "eml"


class ReceivedSource(StrEnum):
    """Where a raw copy's ``received_at`` came from (issue 2 decision)."""

    INTERNALDATE = "internaldate"        # IMAP INTERNALDATE: the server's arrival time
    RECEIVED_HEADER = "received-header"  # top Received: added by our own server
    DATE_HEADER = "date-header"          # the sender's Date: (files without Received:)
    FILE_TIME = "file-time"              # file modification time
    STORED_AT = "stored-at"              # when mailcase stored it (no other source was plausible)


class PostAction(StrEnum):
    """What happens to a mail on the IMAP server once its bytes are committed."""

    LEAVE = "leave"
    SEEN = "seen"
    MOVE = "move"


class CaseStatus(StrEnum):
    """A case's lifecycle (the agreement): ``new -> acknowledged -> in-progress ->
    escalated -> resolved -> closed``, plus ``held`` (the account is not in good
    standing) and ``out-of-scope``."""

    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in-progress"
    ESCALATED = "escalated"
    RESOLVED = "resolved"
    CLOSED = "closed"
    HELD = "held"
    OUT_OF_SCOPE = "out-of-scope"


#: cases someone still owes an answer or work on (an owner's load counts them)
OPEN_CASE_STATUSES: tuple[str, ...] = tuple(s.value for s in (
    CaseStatus.NEW, CaseStatus.ACKNOWLEDGED, CaseStatus.IN_PROGRESS, CaseStatus.ESCALATED,
    CaseStatus.HELD, CaseStatus.OUT_OF_SCOPE,
))
#: cases whose work is done: a reply to one may reopen it, a new request may repeat it
CLOSED_CASE_STATUSES: tuple[str, ...] = (CaseStatus.RESOLVED.value, CaseStatus.CLOSED.value)
#: cases no first response is due on: done, or held until the account is in good standing
NOT_DUE_CASE_STATUSES: tuple[str, ...] = CLOSED_CASE_STATUSES + (CaseStatus.HELD.value,)


class OutboxStatus(StrEnum):
    """An outbox row: queued until a sender claims it (``sending``), then sent or
    failed; or held back by policy (``capped``, ``suppressed``) or by staff
    (``cancelled``)."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"
    CAPPED = "capped"
    SUPPRESSED = "suppressed"


#: mail that went out or is on its way: what counts as sent (a notice, a survey, a reply)
LIVE_OUTBOX_STATUSES: tuple[str, ...] = (OutboxStatus.QUEUED.value, OutboxStatus.SENDING.value,
                                         OutboxStatus.SENT.value)
#: mail that did not go out and may still: staff retry or cancel it
UNSENT_OUTBOX_STATUSES: tuple[str, ...] = (OutboxStatus.QUEUED.value, OutboxStatus.FAILED.value,
                                           OutboxStatus.CAPPED.value)
