"""The outbox: business logic only enqueues; a sender delivers.

A row holds the exact bytes to send, rendered once when it is queued (in the
same transaction as the batch that owes it), under an idempotency key: kind +
what it is about.  Queuing the same key twice adds nothing, so every command
can be re-run without a second mail.  Delivery claims rows, hands them to a
transport and records the result.

Headers of every mail we send: our Message-ID (recognisable, naming the
case: msgid.py), In-Reply-To/References to the mail it answers (RFC 5322
§3.6.4), the case token in the subject, ``Auto-Submitted: auto-replied`` on
acknowledgements and notices (RFC 3834 §5), ``X-Auto-Response-Suppress: All``
so Exchange does not answer with out-of-office replies.  Mail goes to the
matched From address, never to a differing Reply-To.
"""

from __future__ import annotations

import logging
import os
import random
import re
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import quoprimime
from email.header import Header
from email.policy import compat32
from email.utils import format_datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mailcase.config.settings import Config
from mailcase.core.backoff import delay
from mailcase.core.errors import MailcaseError, TransientError
from mailcase.core.log import kv
from mailcase.domain.db import insert_ignore, is_outage, transaction
from mailcase.domain.tables import OUTBOX, SUPPRESSION
from mailcase.mail.addresses import AddressError, format_mailbox
from mailcase.mail.msgid import make_message_id
from mailcase.mail.subjects import case_number as case_number_in
from mailcase.mail.subjects import format_case_token
from mailcase.mail.subjects import survey_number as survey_number_in
from mailcase.outbound.render import Rendered, clean_header_text

log = logging.getLogger(__name__)

#: RFC 3834 §5: replies to a person's mail are auto-replied; mail we start ourselves auto-generated
AUTO_SUBMITTED = {
    "ack": "auto-replied",
    "notice": "auto-replied",
    "resolution": "auto-generated",
    "survey": "auto-generated",
    "reply": None,  # a staff member wrote it
}


@dataclass(frozen=True)
class OutgoingMail:
    key: str
    kind: str            # "ack", "notice", "resolution", "survey", "reply"
    notice_kind: str | None
    to_addr: str
    to_name: str
    rendered: Rendered
    case_id: int | None = None
    case_number: int | None = None
    case_ids: tuple[int, ...] = ()
    message_pk: int | None = None
    batch_id: int | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()


_SMTP = compat32.clone(linesep="\r\n")


class ComposeError(MailcaseError):
    """A mail cannot be written (an address no mail can carry, ...): that one mail
    fails with this reason; nothing else does."""


def _address(name: str, addr: str) -> str:
    """A To/From value by RFC 5322/6532: quoted local parts stay quoted, the
    display name is a quoted-string or RFC 2047 encoded, never spliced."""
    try:
        return format_mailbox(name, addr).header
    except AddressError as exc:
        raise ComposeError(f"cannot address mail to {addr!r}: {exc}") from None


def _header(value: str) -> str | Header:
    value = clean_header_text(value, 250)
    try:
        value.encode("ascii")
        return value
    except UnicodeEncodeError:
        return Header(value, "utf-8")


def with_token(subject: str, case_number: int | None) -> str:
    """The subject with the case token, so replies thread even without headers."""
    if case_number is None or case_number_in(subject) == case_number or survey_number_in(subject) == case_number:
        return subject  # already names the case (a survey's own token does)
    return f"{format_case_token(case_number)} {subject}"


def compose(mail: OutgoingMail, config: Config, key: bytes, now: datetime) -> tuple[str, bytes]:
    """(our Message-ID, the exact bytes).

    Every header value passes through clean_header_text (no CR/LF, no
    control characters) so nothing a sender wrote can add a header line.
    """
    out = config.outgoing
    kind = mail.kind if mail.kind != "notice" else f"n-{mail.notice_kind or 'x'}"[:20]
    message_id = make_message_id(key, out.domain, kind, mail.case_number)
    fields: list[tuple[str, str | Header]] = [
        ("From", _address(out.from_name, out.from_address)),
        ("To", _address(mail.to_name, mail.to_addr)),
        ("Subject", _header(with_token(mail.rendered.subject, mail.case_number))),
        ("Date", format_datetime(now)),
        ("Message-ID", message_id),
    ]
    parent = mail.in_reply_to if mail.in_reply_to and _MSG_ID.fullmatch(mail.in_reply_to) else None
    if parent:
        # only well-formed ASCII ids: a sender's odd Message-ID must not make
        # our header 8-bit or unparseable (RFC 5322 §3.6.4)
        refs = [r for r in mail.references if r != parent and _MSG_ID.fullmatch(r)][-20:] + [parent]
        fields.append(("In-Reply-To", parent))
        fields.append(("References", " ".join(refs)))
    auto = AUTO_SUBMITTED.get(mail.kind)
    if auto:
        fields.append(("Auto-Submitted", auto))
    fields.append(("X-Auto-Response-Suppress", "All"))
    fields.append(("X-Mailcase-Kind", mail.kind if not mail.notice_kind else f"notice/{mail.notice_kind}"))
    return message_id, _alternative(fields, mail.rendered.text, mail.rendered.html)


_MSG_ID = re.compile(r"<[!-;=?-~]{1,990}>")

#: header fields holding addresses: written as composed, never re-folded (a
#: folder may not split inside a quoted local part, nor encode a UTF-8 one)
_ADDRESS_FIELDS = ("From", "To", "Cc")


def _field(name: str, value: str | Header) -> str:
    """One header line, folded (RFC 5322 §2.2.3) when long or encoded."""
    if isinstance(value, str) and (len(name) + len(value) < 76 or name in _ADDRESS_FIELDS):
        if len(name) + len(value) > 996:
            raise ComposeError(f"{name} is longer than a header line may be")
        return f"{name}: {value}\r\n"
    return _SMTP.fold(name, cast(Any, value))  # compat32 folds Header objects too (typeshed says str)


def _qp_part(subtype: str, text: str) -> str:
    """A text part, UTF-8, quoted-printable (what MIMEText with a QP charset writes)."""
    encoded = quoprimime.body_encode(text.encode("utf-8").decode("latin-1"), eol="\r\n")
    return (f'Content-Type: text/{subtype}; charset="utf-8"\r\nMIME-Version: 1.0\r\n'
            f"Content-Transfer-Encoding: quoted-printable\r\n\r\n{encoded}\r\n")


def _alternative(fields: Sequence[tuple[str, str | Header]], text: str, html: str) -> bytes:
    """multipart/alternative of a text and an HTML part, CRLF line ends.

    Written directly rather than through email.generator (a fifth of the
    time: the generator re-folds every header and checks the boundary with a
    freshly compiled expression per message).  Every value was cleaned of
    CR/LF before it got here; the boundary starts with ``=_``, which no
    quoted-printable line can contain, so no body can end the part early.
    """
    boundary = f"=_mailcase_{secrets.token_hex(12)}"
    head = "".join(_field(n, v) for n, v in fields)
    # ASCII but for an internationalised address (RFC 6532: UTF-8 in the
    # header, sent only with SMTPUTF8)
    return (
        f'{head}MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\n{_qp_part('plain', text)}--{boundary}\r\n{_qp_part('html', html)}--{boundary}--\r\n"
    ).encode("utf-8")


def enqueue(conn: Connection, mail: OutgoingMail, config: Config, key: bytes, now: datetime) -> bool:
    """Queue a mail once per key; False if that key was queued before."""
    queue = OutboxQueue(conn, config, key, now)
    queue.add(mail)
    return queue.flush() == 1


def _row(mail: OutgoingMail, config: Config, key: bytes, now: datetime) -> dict[str, Any]:
    message_id, raw = compose(mail, config, key, now)
    return {
        "key": mail.key, "kind": mail.kind if not mail.notice_kind else f"notice/{mail.notice_kind}",
        "case_id": mail.case_id, "case_ids": list(mail.case_ids or ((mail.case_id,) if mail.case_id else ())),
        "message_pk": mail.message_pk, "batch_id": mail.batch_id, "to_addr": mail.to_addr,
        "envelope_from": config.outgoing.from_address, "message_id": message_id,
        "subject": clean_header_text(mail.rendered.subject, 250), "raw": raw, "status": "queued",
        "status_reason": None, "attempts": 0, "next_attempt_at": now, "last_error": None,
        "created_at": now, "sent_at": None,
    }


@dataclass
class OutboxQueue:
    """Queues mails in the caller's transaction, once per key: one query for
    the keys already there and one insert per ``size`` mails, not two
    statements per mail (a cutoff after an outage queues thousands)."""

    conn: Connection
    config: Config
    key: bytes
    now: datetime
    size: int = 500
    queued: int = 0
    _pending: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, mail: OutgoingMail) -> None:
        """Compose the mail now (a mail that cannot be written raises here, for
        the caller to isolate) and write it with the next flush."""
        self.put(self.prepare(mail))

    def prepare(self, mail: OutgoingMail) -> dict[str, Any]:
        """The row of ``mail``, composed (ComposeError and the like raise here)."""
        return _row(mail, self.config, self.key, self.now)

    def put(self, row: dict[str, Any]) -> None:
        """Queue a composed row for the next flush."""
        self._pending.setdefault(row["key"], row)  # the first of one key wins, as one by one
        if len(self._pending) >= self.size:
            self.flush()

    def discard(self) -> None:
        """Forget what is not written yet (its transaction was rolled back)."""
        self._pending.clear()

    def flush(self) -> int:
        """Write what is pending; how many were new."""
        if not self._pending:
            return 0
        keys = list(self._pending)
        there = {r[0] for r in self.conn.execute(sa.select(OUTBOX.c.key).where(OUTBOX.c.key.in_(keys)))}
        rows = [row for k, row in self._pending.items() if k not in there]
        self._pending.clear()
        insert_ignore(self.conn, OUTBOX, rows, ["key"])
        self.queued += len(rows)
        return len(rows)


# -- delivery -------------------------------------------------------------------------


class Transport(Protocol):
    name: str

    def send(self, row_id: int, envelope_from: str, to_addr: str, raw: bytes) -> None:
        """Deliver or raise: TransientError to retry later, anything else fails the row."""
        ...


@dataclass
class FileTransport:
    """Writes each mail as ``<id>-<to>.eml`` (the demo's default, and a dry run of SMTP).

    Idempotent: a file already there means that row was delivered.
    """

    folder: Path
    name: str = "file"

    def send(self, row_id: int, envelope_from: str, to_addr: str, raw: bytes) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "@.-_" else "_" for c in to_addr)[:80]
        path = self.folder / f"{row_id:08d}-{safe}.eml"
        if path.exists():
            return
        tmp = path.with_suffix(".tmp")
        # a customer's mail: readable by the service's user only
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
            fh.write(f"X-Envelope-From: <{envelope_from}>\r\nX-Envelope-To: <{to_addr}>\r\n".encode())
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


def transport_for(config: Config, engine: Engine | None = None, clock: Any = None) -> Transport:
    if config.outgoing.transport == "smtp":
        from mailcase.outbound.smtp import SmtpTransport

        token = None
        oauth = config.outgoing.smtp_oauth
        if oauth is not None and engine is not None and clock is not None:
            from mailcase.domain.oauth import access_token

            token = lambda: access_token(engine, "smtp", oauth, clock.now())  # noqa: E731
        return SmtpTransport(config.outgoing, token=token)
    folder = config.outgoing.file_dir or str(Path(config.data_dir) / "outbox")
    return FileTransport(Path(folder))


@dataclass
class DeliveryResult:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    capped: int = 0
    suppressed: int = 0
    errors: list[str] = field(default_factory=list)


RETRY_BASE = timedelta(minutes=1)
RETRY_MAX = timedelta(hours=1)
#: a claim this old belongs to a sender that died mid-delivery
STALE_CLAIM = timedelta(minutes=10)
#: kinds never capped: an eligible requester always gets the receipt of their cases
UNCAPPED = ("ack", "reply")


def backoff(attempts: int, rng: random.Random | None = None) -> timedelta:
    """When a deferred row is tried again (exponential, capped at an hour, jittered)."""
    return timedelta(seconds=delay(attempts, RETRY_BASE.total_seconds(), RETRY_MAX.total_seconds(), rng))


#: mail that is a person's answer to the customer: what the agreement's promise measures
HUMAN_RESPONSES = ("reply", "resolution")


def _mark_receipts(conn: Connection, row: Any, now: datetime) -> None:
    """A first answer on a case (ack, hold or out-of-scope notice) is its receipt; an
    acknowledgement makes a new (or released) case acknowledged; a staff reply or the
    resolution is the first human response the promise measures."""
    from mailcase.domain.cases import event

    st = _statements()
    if row.kind == "ack" or row.kind in ("notice/hold", "notice/out-of-scope"):
        for case_id in row.case_ids or []:
            if conn.execute(st.receipt, {"p_case": case_id, "p_at": now}).rowcount:
                event(conn, case_id, now, "mailcase", "receipt-sent", f"{row.kind} to {row.to_addr}")
            if row.kind == "ack":
                conn.execute(st.acknowledged, {"p_case": case_id})
    elif row.kind in HUMAN_RESPONSES:
        for case_id in row.case_ids or []:
            if conn.execute(st.responded, {"p_case": case_id, "p_at": now}).rowcount:
                event(conn, case_id, now, "mailcase", "first-response", f"{row.kind} sent to {row.to_addr}")


def is_suppressed(conn: Connection, address: str) -> str | None:
    row = conn.execute(_statements().suppressed, {"p_addr": address.lower()}).first()
    return row[0] if row else None


def _policy(conn: Connection, row: Any, config: Config, now: datetime) -> tuple[str, str] | None:
    """(status, reason) when the row must not go out; None to send it."""
    reason = is_suppressed(conn, row.to_addr)
    if reason is not None:
        return "suppressed", f"{row.to_addr} is suppressed: {reason}"
    if row.kind.split("/")[0] not in UNCAPPED:
        sent = conn.execute(_statements().sent_today, {
            "p_addr": row.to_addr, "p_id": row.id, "p_since": now - timedelta(hours=24),
        }).scalar_one()
        cap = config.outgoing.daily_cap_per_address
        if sent >= cap:
            return "capped", f"{sent} automatic mails to {row.to_addr} in 24 h (cap {cap})"
    return None


@dataclass(frozen=True)
class _Statements:
    """The statements every delivered mail runs, built once with bound parameters.

    Building a SQLAlchemy statement and its cache key costs more than running
    it on SQLite: delivery ran some ten of them per mail, at 4 ms of CPU.
    """

    claim: Any
    row: Any
    set_envelope: Any
    sent: Any
    suppressed: Any
    sent_today: Any
    receipt: Any
    acknowledged: Any
    responded: Any


@lru_cache(maxsize=1)
def _statements() -> _Statements:
    from mailcase.domain.tables import CASE

    rid: Any = sa.bindparam("p_id")
    return _Statements(
        claim=sa.update(OUTBOX).where(OUTBOX.c.id == rid, OUTBOX.c.status == "queued")
        .values(status="sending", attempts=OUTBOX.c.attempts + 1, claimed_at=sa.bindparam("p_at")),
        row=sa.select(OUTBOX).where(OUTBOX.c.id == rid),
        set_envelope=sa.update(OUTBOX).where(OUTBOX.c.id == rid).values(envelope_from=sa.bindparam("p_env")),
        sent=sa.update(OUTBOX).where(OUTBOX.c.id == rid).values(
            status="sent", sent_at=sa.bindparam("p_at"), last_error=None),
        suppressed=sa.select(SUPPRESSION.c.reason).where(
            SUPPRESSION.c.address == sa.bindparam("p_addr"), SUPPRESSION.c.cleared_at.is_(None)),
        sent_today=sa.select(sa.func.count()).where(
            OUTBOX.c.to_addr == sa.bindparam("p_addr"), OUTBOX.c.status.in_(["sent", "sending"]),
            OUTBOX.c.kind.not_in(UNCAPPED), OUTBOX.c.id != rid,
            OUTBOX.c.sent_at >= sa.bindparam("p_since")),
        receipt=sa.update(CASE).where(CASE.c.id == sa.bindparam("p_case"), CASE.c.receipt_sent_at.is_(None))
        .values(receipt_sent_at=sa.bindparam("p_at")),
        acknowledged=sa.update(CASE).where(CASE.c.id == sa.bindparam("p_case"), CASE.c.status == "new")
        .values(status="acknowledged"),
        responded=sa.update(CASE).where(CASE.c.id == sa.bindparam("p_case"), CASE.c.first_response_at.is_(None))
        .values(first_response_at=sa.bindparam("p_at")),
    )


def release_stale_claims(engine: Engine, now: datetime) -> int:
    """Rows left "sending" by a sender that died: back in the queue.

    This is the one window where a mail can go out twice: the server had
    accepted it but the sender died before recording that.  Everything
    else (re-runs, retries, several senders) is kept to once by the key and
    the claim.
    """
    with transaction(engine) as conn:
        return int(conn.execute(
            sa.update(OUTBOX).where(OUTBOX.c.status == "sending", OUTBOX.c.claimed_at < now - STALE_CLAIM)
            .values(status="queued", next_attempt_at=now, last_error="sender died during delivery; retried")
        ).rowcount)


#: rows the server accepted whose "sent" this process could not record (the
#: database was away at that moment): recorded before anything else on the next
#: run, so a blip of the database never sends a mail twice
_accepted: dict[int, tuple[Any, datetime]] = {}
_accepted_lock = threading.Lock()


def _record_accepted(engine: Engine) -> int:
    with _accepted_lock:
        pending = dict(_accepted)
    if not pending:
        return 0
    st = _statements()
    with transaction(engine) as conn:
        for row_id, (row, at) in pending.items():
            conn.execute(st.sent, {"p_id": row_id, "p_at": at})
            _mark_receipts(conn, row, at)
    with _accepted_lock:
        for row_id in pending:
            _accepted.pop(row_id, None)
    log.info("event=sent-recorded-late rows=%d", len(pending))
    return len(pending)


def deliver_due(
    engine: Engine, transport: Transport, now: datetime, config: Config | None = None, limit: int = 200,
) -> DeliveryResult:
    """Send queued rows whose time has come, oldest first."""
    result = DeliveryResult()
    _record_accepted(engine)
    release_stale_claims(engine, now)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(OUTBOX.c.id).where(
                OUTBOX.c.status == "queued", OUTBOX.c.next_attempt_at <= now
            ).order_by(OUTBOX.c.id).limit(limit)
        ).scalars().all()
    key = config.hmac_key() if config else None
    try:
        for row_id in rows:
            _deliver_one(engine, transport, row_id, now, config, key, result)
    finally:
        close = getattr(transport, "close", None)
        if close is not None:
            close()
    if rows:
        log.info("event=outbox-progress sent=%d deferred=%d failed=%d capped=%d suppressed=%d transport=%s",
                 result.sent, result.retried, result.failed, result.capped, result.suppressed, transport.name)
    return result


def _deliver_one(
    engine: Engine, transport: Transport, row_id: int, now: datetime, config: Config | None,
    key: bytes | None, result: DeliveryResult,
) -> None:
    from mailcase.mail.msgid import verp_address
    from mailcase.outbound.smtp import PermanentDeliveryError

    st = _statements()
    with transaction(engine) as conn:
        # claim: a second sender finds it no longer queued
        claimed = conn.execute(st.claim, {"p_id": row_id, "p_at": now}).rowcount
        if not claimed:
            return
        row = conn.execute(st.row, {"p_id": row_id}).one()
        blocked = _policy(conn, row, config, now) if config else None
        if blocked is not None:
            status, reason = blocked
            conn.execute(sa.update(OUTBOX).where(OUTBOX.c.id == row_id).values(
                status=status, status_reason=reason))
            log.info("event=not-sent outbox=%s status=%s reason=%s", row_id, status, kv(reason))
            if status == "capped":
                result.capped += 1
            else:
                result.suppressed += 1
            return
        envelope = verp_address(key, config.outgoing.bounce_base, row_id) if key and config else row.envelope_from
        if envelope != row.envelope_from:
            conn.execute(st.set_envelope, {"p_id": row_id, "p_env": envelope})
    try:
        transport.send(row.id, envelope, row.to_addr, row.raw)
    except TransientError as exc:
        with transaction(engine) as conn:
            conn.execute(sa.update(OUTBOX).where(OUTBOX.c.id == row_id).values(
                status="queued", next_attempt_at=now + backoff(row.attempts + 1), last_error=str(exc)[:2000]))
        result.retried += 1
        log.warning("event=send-deferred outbox=%s case=%s message=%s to=%s attempt=%d error=%s",
                    row_id, row.case_id or "-", row.message_pk or "-", kv(row.to_addr), row.attempts + 1, kv(exc))
        return
    except (PermanentDeliveryError, Exception) as exc:
        if is_outage(exc):
            raise
        reason = "refused" if isinstance(exc, PermanentDeliveryError) else f"send: {type(exc).__name__}"
        with transaction(engine) as conn:
            conn.execute(sa.update(OUTBOX).where(OUTBOX.c.id == row_id).values(
                status="failed", status_reason=reason, last_error=f"{type(exc).__name__}: {exc}"[:2000]))
        result.failed += 1
        result.errors.append(f"{row_id}: {exc}")
        log.error("event=send-failed outbox=%s case=%s message=%s to=%s error=%s",
                  row_id, row.case_id or "-", row.message_pk or "-", kv(row.to_addr), kv(exc))
        return
    try:
        with transaction(engine) as conn:
            conn.execute(st.sent, {"p_id": row_id, "p_at": now})
            _mark_receipts(conn, row, now)
    except Exception as exc:
        if is_outage(exc):
            with _accepted_lock:
                _accepted[row_id] = (row, now)
        raise
    result.sent += 1
    log.debug("event=sent outbox=%s kind=%s case=%s message=%s to=%s transport=%s",
              row_id, row.kind, row.case_id or "-", row.message_pk or "-", kv(row.to_addr), transport.name)


def retry_rows(conn: Connection, ids: Sequence[int] | None, now: datetime) -> int:
    """Queue failed/capped/deferred rows again (all failed ones with ids=None)."""
    q = sa.update(OUTBOX).where(OUTBOX.c.status.in_(["failed", "queued", "capped"]))
    q = q.where(OUTBOX.c.id.in_(list(ids))) if ids is not None else q.where(OUTBOX.c.status == "failed")
    return int(conn.execute(q.values(status="queued", next_attempt_at=now, status_reason=None)).rowcount)


def cancel_rows(conn: Connection, ids: Sequence[int], actor: str) -> int:
    return int(conn.execute(
        sa.update(OUTBOX).where(OUTBOX.c.id.in_(list(ids)), OUTBOX.c.status.in_(["queued", "failed", "capped"]))
        .values(status="cancelled", status_reason=f"cancelled by {actor}")
    ).rowcount)


def list_outbox(conn: Connection, status: str | None = None, limit: int = 50) -> Sequence[Any]:
    q = sa.select(OUTBOX.c.id, OUTBOX.c.kind, OUTBOX.c.status, OUTBOX.c.to_addr, OUTBOX.c.subject,
                  OUTBOX.c.created_at, OUTBOX.c.sent_at, OUTBOX.c.attempts, OUTBOX.c.last_error)
    if status:
        q = q.where(OUTBOX.c.status == status)
    return conn.execute(q.order_by(OUTBOX.c.id.desc()).limit(limit)).all()[::-1]


def get_row(conn: Connection, row_id: int) -> Any:
    from mailcase.core.errors import UsageError

    row = conn.execute(sa.select(OUTBOX).where(OUTBOX.c.id == row_id)).first()
    if row is None:
        raise UsageError(f"no outbox row {row_id}")
    return row
