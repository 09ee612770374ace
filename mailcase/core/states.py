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
