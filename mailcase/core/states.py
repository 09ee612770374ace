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
from typing import TypeAlias


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


class CaseMessageRole(StrEnum):
    """What a mail is to its case (``case_message.role``)."""

    REQUEST = "request"        # made the case at a cutoff
    FOLLOW_UP = "follow-up"    # the requester (or a colleague) wrote again
    STAFF_NOTE = "staff-note"  # staff mail on the case


class Tier(StrEnum):
    """Support tiers, in escalation order (a case only moves up)."""

    SSI = "SSI"
    SSII = "SSII"
    SSIII = "SSIII"
    DEV = "DEV"


class Standing(StrEnum):
    """An account's financial standing (``standing_change.standing``)."""

    GOOD = "good"
    HOLD = "hold"  # not in good standing: its new cases are held


class PromiseState(StrEnum):
    """How far an open, unanswered case is along the agreement's promise (ops/promise.py);
    each is also a case event, recorded once."""

    DUE_SOON = "due-soon"  # within four hours of its due time
    OVERDUE = "overdue"    # past its due time
    BREACHED = "breached"  # past its breach time


class CaseEventKind(StrEnum):
    """A ``case_event`` row's kind.  A status change (an escalation too) is
    recorded under the new :class:`CaseStatus`, the promise under its
    :class:`PromiseState` (:data:`CaseEventName` is any of the three)."""

    CREATED = "created"
    LINKED = "linked"                        # a new request following up a case closed too long ago
    ASSIGNED = "assigned"
    RELEASE_REQUESTED = "release-requested"  # standing restored: a held case joins the next cutoff
    RELEASED = "released"                    # that cutoff released it
    REOPENED = "reopened"
    REPLY = "reply"                          # staff queued a reply
    FOLLOW_UP = "follow-up"                  # the customer wrote again on the case
    RECEIPT_SENT = "receipt-sent"            # the first answer (ack, hold or out-of-scope notice) went out
    FIRST_RESPONSE = "first-response"        # the first human answer went out (what the promise measures)
    SURVEY_QUEUED = "survey-queued"
    SURVEY_SKIPPED = "survey-skipped"
    SURVEY_CANCELLED = "survey-cancelled"
    SURVEY_SCORE = "survey-score"
    CC = "cc"                                # who the case copies, and the Cc addresses dropped with why
    NOTE = "note"                            # a staff note on the case (never sent)
    SEVERITY = "severity"                    # staff corrected the severity
    MERGED = "merged"                        # merged into another case, or another merged into it


#: what a case event may be named
CaseEventName: TypeAlias = CaseEventKind | CaseStatus | PromiseState


class MailKind(StrEnum):
    """What an outbox row is (``outbox.kind``; a notice is stored as
    ``notice/<the notice>``: :func:`notice_kind`)."""

    ACK = "ack"                # the receipt of a requester's new (or released) cases
    NOTICE = "notice"          # why a mail made no case, or a held / out-of-scope case
    REPLY = "reply"            # a staff member's answer
    RESOLUTION = "resolution"  # the case is resolved
    SURVEY = "survey"          # the satisfaction survey after a resolution
    STAFF = "staff"            # news of a case for its owner or a tier (never to a customer)


#: how the outbox kind of a notice starts (``kind LIKE 'notice/%'`` finds every notice)
NOTICE_KIND_PREFIX = f"{MailKind.NOTICE.value}/"


def notice_kind(notice: str) -> str:
    """The outbox kind of a notice: ``notice/<the notice>``."""
    return f"{NOTICE_KIND_PREFIX}{notice}"


#: kinds never capped: an eligible requester always gets the receipt of their cases, and staff's replies;
#: staff hear of every case (each news of a case is queued once, under its own key)
UNCAPPED_MAIL_KINDS: tuple[str, ...] = (MailKind.ACK.value, MailKind.REPLY.value, MailKind.STAFF.value)
#: mail that is a person's answer to the customer: what the agreement's promise measures
HUMAN_RESPONSE_KINDS: tuple[str, ...] = (MailKind.REPLY.value, MailKind.RESOLUTION.value)


class BounceKind(StrEnum):
    """What a delivery report was (``bounce.kind``; rules/bounce.py).  A
    ``multipart/report`` of a type with no reader, or without its status part,
    is stored as ``report-<type>`` (:func:`report_kind`)."""

    DSN = "dsn"                    # RFC 3464 delivery status notification, read field by field
    VENDOR = "vendor"              # a vendor's format (flufl.bounce)
    DELAY = "delay"                # a delay or warning report: not a failure
    UNPARSED = "unparsed"          # a mail system's notice in no known format
    READ_RECEIPT = "read-receipt"  # RFC 8098
    ABUSE_REPORT = "abuse-report"  # RFC 5965 feedback report


#: bounces that name failed recipients: the only ones matched against mail we sent
FAILURE_BOUNCE_KINDS: tuple[str, ...] = (BounceKind.DSN.value, BounceKind.VENDOR.value)
#: how the kind of a report with no reader starts
REPORT_KIND_PREFIX = "report-"


def report_kind(report_type: str) -> str:
    """The bounce kind of a ``multipart/report`` of ``report_type`` with nothing to read (fits the column)."""
    return f"{REPORT_KIND_PREFIX}{report_type}"[:32]


class WorkerState(StrEnum):
    """What a mailbox worker is doing (ingest/watch.py); kept in
    ``mailbox_state.worker_state`` for ``status`` and the metrics."""

    STARTING = "starting"            # the thread is up, nothing tried yet (memory only)
    WAITING_LEASE = "waiting-lease"  # another daemon holds the mailbox
    CONNECTED = "connected"          # synced; idling or polling
    DOWN = "down"                    # failed; retrying with backoff
    STOPPED = "stopped"              # the daemon is stopping
    DEAD = "dead"                    # the metrics' word for a worker whose thread is gone (never stored)


class WorkerMode(StrEnum):
    """How a mailbox worker waits for new mail (``mailbox_state.mode``)."""

    IDLE = "idle"        # IMAP IDLE
    POLL = "poll"        # IMAP without IDLE (or IDLE off): poll
    MAILDIR = "maildir"  # a Maildir: poll
