"""The classify stage: run the rules chain on parsed mail and record the outcome.

Impure by design (rules are not): builds each mail's :class:`Mail` from the
ledger, answers the rules' questions from the database (:class:`DbContext`),
stores every verdict, the outcome, and applies the effects the verdicts ask
for (record a bounce, attach a follow-up, lock PIN acceptance, reopen a
case).  The same code runs again at each cutoff against the directory as
of the cutoff (batch.py), with ``phase`` naming the cutoff.

States after classification (see states.py): historical mail ends in
``historical`` (verdicts recorded, no effects); suppressed mail, follow-ups
and staff notes in ``classified``; floods in ``held``; requests and mail
that may earn a notice in ``pending``, for the next cutoff.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mailcase.config.settings import SEVERITY_LEVELS, Config
from mailcase.core.clock import Clock
from mailcase.core.log import kv
from mailcase.core.states import MessageState, Stage
from mailcase.domain.calendar import BusinessCalendar
from mailcase.domain.db import insert_ignore, is_outage, transaction
from mailcase.domain.directory import DbDirectory
from mailcase.domain.tables import (
    BLOB,
    CASE,
    CASE_MESSAGE,
    CLASSIFICATION,
    MESSAGE,
    PARSED_MAIL,
    VERDICT,
)
from mailcase.ingest.quarantine import quarantine
from mailcase.ingest.stages import StageResult
from mailcase.mail.addresses import Address, AddressList
from mailcase.mail.charsets import storable
from mailcase.mail.headers import HeaderInfo, read_headers, split_headers
from mailcase.mail.msgid import parse_our_message_id
from mailcase.mail.subjects import normalise_subject
from mailcase.rules.base import (
    AuthResult,
    CaseRef,
    Disposition,
    Mail,
    Mark,
    Outcome,
    ResolvedCase,
    RuleSettings,
)
from mailcase.rules.chain import run_chain
from mailcase.rules.effects import LinkCase
from mailcase.rules.record import Applying, EffectHandlers

log = logging.getLogger(__name__)


OPEN_STATUSES = ("new", "acknowledged", "in-progress", "escalated", "held", "out-of-scope")
REQUEST_DISPOSITIONS = (Disposition.PENDING.value,)
PIN_FAILURES = ("pin-missing", "pin-wrong", "pin-ambiguous")
#: raw mail a classify batch holds at once
CLASSIFY_BYTES = 16 * 1024 * 1024


def rule_settings(config: Config) -> RuleSettings:
    r = config.rules
    return RuleSettings(
        authserv_id=r.authserv_id if r.sender_authentication == "authserv-id" else None,
        spam_header=r.spam_header,
        spam_values=r.spam_values,
        reopen_window_days=r.reopen_window_days,
        notice_period_days=r.notice_period_days,
        flood_same_count=r.flood_same_count,
        flood_same_seconds=r.flood_same_seconds,
        flood_sender_count=r.flood_sender_count,
        flood_sender_minutes=r.flood_sender_minutes,
        repeat_request_count=r.repeat_request_count,
        repeat_request_hours=r.repeat_request_hours,
        weekly_request_threshold=r.weekly_request_threshold,
        repeat_similarity=r.repeat_similarity,
        pin_max_failures=r.pin_max_failures,
        pin_failure_hours=r.pin_failure_hours,
        scope_phrases=dict(r.scope),
        severity_phrases={SEVERITY_LEVELS[k]: v for k, v in r.severity.items()},
        our_addresses=(config.outgoing.from_address.lower(),),
    )


def _case_ref(row: Any) -> CaseRef:
    return CaseRef(row.id, row.number, row.account_id, row.requester, row.status,
                   row.closed_at, row.resolved_at)


#: sorts before every real message pk
_FIRST = -(2**63)


def _in_window(times: list[tuple[datetime, int]], since: datetime, until: datetime, pk: int | None) -> int:
    """How many of the sorted (time, pk) fall in [since, until) or at ``until`` before
    the mail ``pk`` itself: mails received in the same second count in the order they
    were stored, so the 16th of sixteen identical mails is the 16th."""
    upto = (until, pk if pk is not None else -_FIRST)
    return bisect_left(times, upto) - bisect_left(times, (since, _FIRST))


@dataclass
class PassCache:
    """What the rules count, loaded once per pass (a classify batch or a cutoff).

    One query per sender, address or account instead of one per mail; what
    the pass itself decides (notices queued, requests recorded) is added in
    memory, so a later mail of the same pass sees it.
    """

    _sender: dict[str, list[tuple[datetime, int, str, str, str]]] = field(default_factory=dict)
    _sender_times: dict[str, list[tuple[datetime, int]]] = field(default_factory=dict)
    _similar_times: dict[tuple[str, str, str], list[tuple[datetime, int]]] = field(default_factory=dict)
    _similar_loaded: set[str] = field(default_factory=set)
    _repeat_times: dict[tuple[str, str, str], list[tuple[datetime, int]]] = field(default_factory=dict)
    _repeat_loaded: set[str] = field(default_factory=set)
    _notices: dict[str, list[tuple[str, datetime]]] = field(default_factory=dict)
    _requests: dict[int, dict[int, datetime]] = field(default_factory=dict)
    _pin_failures: dict[int, dict[int, datetime]] = field(default_factory=dict)
    resolved: dict[int, list[ResolvedCase]] = field(default_factory=dict)
    #: Message-ID -> case row, for the mails of a chunk (None: in no case)
    threads: dict[str, Any] = field(default_factory=dict)

    def prefetch_threads(self, conn: Connection, mails: Sequence[Mail]) -> None:
        """Look up in one query the cases every In-Reply-To/References of these mails names."""
        wanted = sorted({i for m in mails for i in m.info.in_reply_to + m.info.references} - set(self.threads))
        for i in range(0, len(wanted), 500):
            part = wanted[i : i + 500]
            found = {r.message_id: r for r in conn.execute(
                sa.select(CASE, MESSAGE.c.message_id)
                .join(CASE_MESSAGE, CASE_MESSAGE.c.case_id == CASE.c.id)
                .join(MESSAGE, MESSAGE.c.id == CASE_MESSAGE.c.message_pk)
                .where(MESSAGE.c.message_id.in_(part))
                .order_by(CASE.c.id)
            )}
            for mid in part:
                self.threads[mid] = found.get(mid)

    def prefetch(self, conn: Connection, mails: Sequence[Mail], directory: DbDirectory | None = None) -> None:
        """Load in a few queries what the rules will ask about these mails: the
        cases their threads name, their senders' earlier mails and notices, and
        (with ``directory``) the people behind their addresses."""
        self.prefetch_threads(conn, mails)
        senders = sorted({m.sender for m in mails if m.sender} - set(self._sender))
        for i in range(0, len(senders), 500):
            self._load_senders(conn, senders[i : i + 500])
        addresses = sorted({m.sender for m in mails if m.sender} - set(self._notices))
        for i in range(0, len(addresses), 500):
            self._load_notices(conn, addresses[i : i + 500])
        if directory is not None:
            directory.prefetch([m.sender for m in mails if m.sender])

    def sender_mails(self, conn: Connection, sender: str) -> list[tuple[datetime, int, str, str, str]]:
        if sender not in self._sender:
            self._load_senders(conn, [sender])
        return self._sender[sender]

    def _load_senders(self, conn: Connection, senders: list[str]) -> None:
        """(received, id, subject, text fingerprint, loose fingerprint) of every mail from these senders."""
        found: dict[str, list[tuple[datetime, int, str, str, str]]] = {s: [] for s in senders}
        for r in conn.execute(
            sa.select(MESSAGE.c.from_addr, MESSAGE.c.received_at, MESSAGE.c.id, MESSAGE.c.subject,
                      PARSED_MAIL.c.text_sha256, PARSED_MAIL.c.loose_sha256)
            .outerjoin(PARSED_MAIL, PARSED_MAIL.c.message_pk == MESSAGE.c.id)
            .where(MESSAGE.c.from_addr.in_(senders), MESSAGE.c.received_at.is_not(None))
        ):
            found[r[0]].append((r[1], r[2], r[3] or "", r[4] or "", r[5] or ""))
        self._sender.update(found)

    def sender_times(self, conn: Connection, sender: str) -> list[tuple[datetime, int]]:
        """When the sender's mails arrived (and their pks), sorted: floods count with bisect."""
        if sender not in self._sender_times:
            self._sender_times[sender] = sorted((at, pk) for at, pk, _, _, _ in self.sender_mails(conn, sender))
        return self._sender_times[sender]

    def similar_times(self, conn: Connection, sender: str, subject: str, text: str) -> list[tuple[datetime, int]]:
        if sender not in self._similar_loaded:
            self._similar_loaded.add(sender)
            for at, pk, subj, txt, _ in sorted(self.sender_mails(conn, sender)):
                self._similar_times.setdefault((sender, subj, txt), []).append((at, pk))
        return self._similar_times.get((sender, subject, text), [])

    def repeat_times(self, conn: Connection, sender: str, subject: str, loose: str) -> list[tuple[datetime, int]]:
        """The sender's mails with this normalised subject and loose fingerprint."""
        if sender not in self._repeat_loaded:
            self._repeat_loaded.add(sender)
            for at, pk, subj, _, lo in sorted(self.sender_mails(conn, sender)):
                if lo:
                    self._repeat_times.setdefault((sender, normalise_subject(subj), lo), []).append((at, pk))
        return self._repeat_times.get((sender, subject, loose), [])

    def notices(self, conn: Connection, address: str) -> list[tuple[str, datetime]]:
        """(kind, when) of the notices queued to ``address`` (the outbox is the truth).

        "When" is the cutoff that queued it, so a catch-up after downtime
        counts periods as they would have been counted on time.
        """
        if address not in self._notices:
            self._load_notices(conn, [address])
        return self._notices[address]

    def _load_notices(self, conn: Connection, addresses: list[str]) -> None:
        from mailcase.domain.tables import BATCH, OUTBOX

        found: dict[str, list[tuple[str, datetime]]] = {a: [] for a in addresses}
        for addr, k, at in conn.execute(
            sa.select(OUTBOX.c.to_addr, OUTBOX.c.kind, sa.func.coalesce(BATCH.c.cutoff_at, OUTBOX.c.created_at))
            .outerjoin(BATCH, BATCH.c.id == OUTBOX.c.batch_id)
            .where(
                OUTBOX.c.to_addr.in_(addresses), OUTBOX.c.kind.like("notice/%"),
                OUTBOX.c.status.in_(["queued", "sending", "sent"]),
            )
        ):
            if addr in found:
                found[addr].append((str(k).partition("/")[2], at if at.tzinfo else at.replace(tzinfo=UTC)))
        self._notices.update(found)

    def add_notice(self, address: str, kind: str, at: datetime) -> None:
        if address in self._notices:
            self._notices[address].append((kind, at))

    def requests(self, conn: Connection, account_id: int) -> dict[int, datetime]:
        """message pk -> received_at of the account's requests (non-historical)."""
        if account_id not in self._requests:
            rows = conn.execute(
                sa.select(MESSAGE.c.id, MESSAGE.c.received_at)
                .join(CLASSIFICATION, CLASSIFICATION.c.message_pk == MESSAGE.c.id)
                .where(
                    CLASSIFICATION.c.account_id == account_id,
                    CLASSIFICATION.c.disposition.in_(REQUEST_DISPOSITIONS),
                    MESSAGE.c.historical.is_(False), MESSAGE.c.received_at.is_not(None),
                )
            ).all()
            self._requests[account_id] = {int(r[0]): r[1] for r in rows}
        return self._requests[account_id]

    def add_request(self, account_id: int, pk: int, at: datetime) -> None:
        if account_id in self._requests:
            self._requests[account_id][pk] = at

    def add_pin_failure(self, account_id: int, pk: int, at: datetime) -> None:
        self._pin_failures.setdefault(account_id, {})[pk] = at

    def pin_failures_in_pass(self, account_id: int, since: datetime, exclude: int | None) -> set[int]:
        return {pk for pk, at in self._pin_failures.get(account_id, {}).items() if at >= since and pk != exclude}


@dataclass
class DbContext:
    """The rules' Context over the database, for one evaluation pass."""

    conn: Connection
    now: datetime
    settings: RuleSettings
    directory: DbDirectory
    key: bytes
    cache: PassCache
    message_pk: int | None = None
    #: the cutoff a mail received at a time joins (the calendar's), for repeats across cutoffs
    cutoff_of: Callable[[datetime], datetime] | None = None

    def case_for_message_ids(self, ids: Sequence[str]) -> CaseRef | None:
        for mid in ids:
            ours = parse_our_message_id(self.key, mid)
            if ours is not None and ours.case_number:
                case = self.case_by_number(ours.case_number)
                if case is not None:
                    return case
        if not ids:
            return None
        if all(mid in self.cache.threads for mid in ids):
            rows = [self.cache.threads[mid] for mid in ids if self.cache.threads[mid] is not None]
            return _case_ref(max(rows, key=lambda r: r.id)) if rows else None
        row = self.conn.execute(
            sa.select(CASE)
            .join(CASE_MESSAGE, CASE_MESSAGE.c.case_id == CASE.c.id)
            .join(MESSAGE, MESSAGE.c.id == CASE_MESSAGE.c.message_pk)
            .where(MESSAGE.c.message_id.in_(list(ids)[:200]))
            .order_by(CASE.c.id.desc())
            .limit(1)
        ).first()
        return _case_ref(row) if row else None

    def case_by_number(self, number: int) -> CaseRef | None:
        row = self.conn.execute(sa.select(CASE).where(CASE.c.number == number)).first()
        return _case_ref(row) if row else None

    def survey_for(self, ids: Sequence[str], token_case: int | None, sender: str) -> tuple[CaseRef, int] | None:
        from mailcase.domain.tables import OUTBOX

        for mid in ids:
            ours = parse_our_message_id(self.key, mid)
            if ours is None or ours.kind != "survey":
                continue
            row = self.conn.execute(sa.select(OUTBOX.c.id, OUTBOX.c.case_id).where(OUTBOX.c.message_id == mid)).first()
            if row is not None and row.case_id is not None:
                case = self.conn.execute(sa.select(CASE).where(CASE.c.id == row.case_id)).first()
                if case is not None:
                    return _case_ref(case), int(row.id)
        if token_case is not None:
            case = self.conn.execute(sa.select(CASE).where(CASE.c.number == token_case)).first()
            if case is not None and case.requester == sender:
                row = self.conn.execute(sa.select(OUTBOX.c.id).where(
                    OUTBOX.c.case_id == case.id, OUTBOX.c.kind == "survey").order_by(OUTBOX.c.id.desc())).first()
                if row is not None:
                    return _case_ref(case), int(row.id)
        return None

    def is_our_message_id(self, message_id: str) -> bool:
        return parse_our_message_id(self.key, message_id) is not None

    def similar_mails_before(
        self, sender: str, subject: str, body_hash: str, since: datetime, until: datetime
    ) -> int:
        times = self.cache.similar_times(self.conn, sender, subject, body_hash)
        return _in_window(times, since, until, self.message_pk)

    def sender_mails_before(self, sender: str, since: datetime, until: datetime) -> int:
        return _in_window(self.cache.sender_times(self.conn, sender), since, until, self.message_pk)

    def repeated_requests(self, sender: str, subject: str, loose_hash: str, since: datetime,
                          until: datetime) -> int:
        times = self.cache.repeat_times(self.conn, sender, subject, loose_hash)
        earlier = times[bisect_left(times, (since, _FIRST)):bisect_left(times, (until, self.message_pk or -_FIRST))]
        if self.cutoff_of is None:
            return len(earlier)
        own = self.cutoff_of(until)
        return len({self.cutoff_of(at) for at, _ in earlier} - {own})

    def notices_sent(self, address: str, kind: str, since: datetime) -> int:
        return sum(1 for k, at in self.cache.notices(self.conn, address) if k == kind and at >= since)

    def pin_failures(self, account_id: int, since: datetime) -> int:
        q = (
            sa.select(VERDICT.c.message_pk).distinct()
            .select_from(VERDICT.join(CLASSIFICATION, CLASSIFICATION.c.message_pk == VERDICT.c.message_pk))
            .where(
                CLASSIFICATION.c.account_id == account_id,
                VERDICT.c.name.in_(PIN_FAILURES),
                VERDICT.c.at >= since,
            )
        )
        if self.message_pk is not None:
            q = q.where(VERDICT.c.message_pk != self.message_pk)
        stored = {int(r[0]) for r in self.conn.execute(q)}
        return len(stored | self.cache.pin_failures_in_pass(account_id, since, self.message_pk))

    def account_requests(self, account_id: int, since: datetime, until: datetime) -> int:
        return sum(
            1 for pk, at in self.cache.requests(self.conn, account_id).items()
            if since <= at < until and pk != self.message_pk
        )

    def resolved_cases(self, account_id: int) -> Sequence[ResolvedCase]:
        resolved = self.cache.resolved
        if account_id not in resolved:
            rows = self.conn.execute(
                sa.select(CASE.c.id, CASE.c.number, CASE.c.subject)
                .where(CASE.c.account_id == account_id, CASE.c.status.in_(["resolved", "closed"]))
                .order_by(CASE.c.id.desc()).limit(200)
            ).all()
            out = []
            for case_id, number, subject in rows:
                text = self.conn.execute(
                    sa.select(PARSED_MAIL.c.text_body)
                    .join(CASE_MESSAGE, CASE_MESSAGE.c.message_pk == PARSED_MAIL.c.message_pk)
                    .where(CASE_MESSAGE.c.case_id == case_id, CASE_MESSAGE.c.role == "request")
                    .order_by(PARSED_MAIL.c.message_pk).limit(1)
                ).scalar()
                out.append(ResolvedCase(number, subject or "", (text or "")[:20000]))
            resolved[account_id] = out
        return resolved[account_id]


# -- building the Mail ------------------------------------------------------------------


def _auth_key(settings: RuleSettings) -> list[Any]:
    return [settings.authserv_id, settings.spam_header, list(settings.spam_values)]


def auth_json(auth: AuthResult, settings: RuleSettings) -> dict[str, Any]:
    return {"key": _auth_key(settings), "checked": auth.checked, "found": auth.found, "dmarc": auth.dmarc_pass,
            "spf": auth.spf_aligned_pass, "dkim": auth.dkim_aligned_pass, "spam": auth.spam, "detail": auth.detail}


def auth_from_json(data: Any, settings: RuleSettings) -> AuthResult | None:
    """The stored result, if it was computed under the same settings."""
    if not isinstance(data, dict) or data.get("key") != _auth_key(settings):
        return None
    return AuthResult(bool(data["checked"]), bool(data["found"]), bool(data["dmarc"]), bool(data["spf"]),
                      bool(data["dkim"]), bool(data["spam"]), str(data["detail"]))


def _info_from_row(r: Any) -> HeaderInfo:
    """The header fields as ingestion stored them (no re-parse)."""
    if r.from_addr:
        addresses: tuple[Address, ...] = (Address(r.from_name or "", r.from_addr),)
        defects: tuple[str, ...] = () if r.from_strict else ("From was not exactly one well-formed mailbox",)
    else:
        addresses, defects = (), ("no From address",)
    return HeaderInfo(
        message_id=r.message_id, message_id_derived=bool(r.message_id_derived),
        from_list=AddressList(addresses, defects), subject=r.subject or "", date_at=r.date_at,
        in_reply_to=tuple((r.in_reply_to or "").split()), references=tuple((r.refs or "").split()),
        identity=r.identity,
    )


#: the bytes of a mail a cutoff reads first: enough for nearly every header block
HEAD_BYTES = 64 * 1024


def _whole_blob(conn: Connection, sha: str) -> Callable[[], bytes]:
    def load() -> bytes:
        data = conn.execute(sa.select(BLOB.c.data).where(BLOB.c.sha256 == sha)).scalar()
        return data or b""

    return load


def load_mails(
    conn: Connection, pks: Sequence[int], reread_headers: bool = True, settings: RuleSettings | None = None,
) -> dict[int, Mail]:
    """The rules' view of stored mails; ``reread_headers=False`` trusts the stored
    header fields (a cutoff re-runs the chain on mail classified before) and
    reads only the head of each mail: its header block, and the rest only if
    a rule asks (:meth:`Mail.whole_raw`).  A cutoff of 10,000 mails with
    attachments would otherwise read and hold every attachment."""
    if not pks:
        return {}
    data = BLOB.c.data if reread_headers else sa.func.substr(BLOB.c.data, 1, HEAD_BYTES).label("data")
    rows = conn.execute(
        sa.select(
            MESSAGE.c.id, MESSAGE.c.received_at, MESSAGE.c.stored_at, MESSAGE.c.historical,
            MESSAGE.c.message_id, MESSAGE.c.message_id_derived, MESSAGE.c.from_addr, MESSAGE.c.from_name,
            MESSAGE.c.from_strict, MESSAGE.c.subject, MESSAGE.c.date_at, MESSAGE.c.in_reply_to,
            MESSAGE.c.refs, MESSAGE.c.identity, MESSAGE.c.primary_sha256, BLOB.c.size,
            data, PARSED_MAIL.c.text_body, PARSED_MAIL.c.to_addrs, PARSED_MAIL.c.cc_addrs,
            PARSED_MAIL.c.pin_hmacs, PARSED_MAIL.c.reply_text, PARSED_MAIL.c.text_sha256, CLASSIFICATION.c.auth,
            PARSED_MAIL.c.loose_sha256,
        )
        .join(BLOB, BLOB.c.sha256 == MESSAGE.c.primary_sha256)
        .outerjoin(PARSED_MAIL, PARSED_MAIL.c.message_pk == MESSAGE.c.id)
        .outerjoin(CLASSIFICATION, CLASSIFICATION.c.message_pk == MESSAGE.c.id)
        .where(MESSAGE.c.id.in_(list(pks)))
    ).all()
    out: dict[int, Mail] = {}
    for r in rows:
        raw = bytes(r.data or b"")
        loader = None
        if len(raw) < (r.size or 0):  # the head only
            if b"\n\n" not in raw and b"\n\r\n" not in raw:  # a header block longer than the head
                raw = _whole_blob(conn, r.primary_sha256)()
            else:
                loader = _whole_blob(conn, r.primary_sha256)
        block = split_headers(raw)
        out[r.id] = Mail(
            raw=raw, block=block, info=read_headers(raw, block) if reread_headers else _info_from_row(r),
            body=r.text_body or "", received_at=r.received_at or r.stored_at, to=tuple(r.to_addrs or ()),
            cc=tuple(r.cc_addrs or ()), pk=r.id, historical=bool(r.historical),
            pin_hmacs=tuple(r.pin_hmacs or ()), stored_reply=r.reply_text,
            auth_cache=auth_from_json(r.auth, settings) if settings is not None else None,
            load_raw=loader, stored_body_hash=r.text_sha256 or None, stored_loose_hash=r.loose_sha256 or None,
        )
    return out


# -- recording the outcome ----------------------------------------------------------------


def state_for(outcome: Outcome, historical: bool) -> MessageState:
    if historical:
        return MessageState.HISTORICAL
    d = outcome.final
    if d is Disposition.HELD_FOR_REVIEW:
        return MessageState.HELD
    if d in (Disposition.SUPPRESSED, Disposition.FOLLOW_UP, Disposition.STAFF_NOTE, Disposition.SURVEY_RESPONSE):
        return MessageState.CLASSIFIED
    return MessageState.PENDING


class Recorder:
    """Stores a pass's verdicts and outcomes in bulk (a few statements per
    pass, not per mail) and applies effects as they come.

    Nothing a rule reads in the same pass comes from these tables (the
    pass's counters live in :class:`PassCache`), so deferring the writes to
    :meth:`flush` changes no verdict.
    """

    def __init__(
        self, conn: Connection, phase: str, now: datetime, config: Config, effects: EffectHandlers,
        cache: PassCache | None = None, settings: RuleSettings | None = None,
    ) -> None:
        self.config = config
        self.key = config.hmac_key()
        self.effects = effects
        self.settings = settings
        self.conn = conn
        self.phase = phase
        self.now = now
        self.cache = cache
        self.verdicts: list[dict[str, Any]] = []
        self.classifications: list[dict[str, Any]] = []
        self.states: dict[MessageState, list[int]] = defaultdict(list)

    def add(self, mail: Mail, outcome: Outcome) -> MessageState:
        assert mail.pk is not None
        pk, now, phase = mail.pk, self.now, self.phase
        verdicts = self.verdicts_of(pk, outcome)
        sender = outcome.sender
        account_id = sender.account.id if sender and sender.account else None
        classification = {
            "message_pk": pk, "phase": phase, "disposition": outcome.final.value,
            "no_auto_reply": Mark.NO_AUTO_REPLY in outcome.marks,
            "automatic": Mark.AUTOMATIC in outcome.marks,
            "account_id": account_id,
            "person_id": sender.person.id if sender and sender.person else None,
            "sender": (sender.address if sender else None) or mail.sender,
            "eligible": bool(sender and sender.eligible),
            "case_pk": outcome.case.id if outcome.case else None,
            "linked_case_id": next((e.case_id for e in outcome.effects if isinstance(e, LinkCase)), None),
            "notice": outcome.notice.value if outcome.notice else None,
            "notice_allowed": outcome.notice_allowed,
            "notice_withheld_reason": outcome.notice_withheld_reason,
            "severity": outcome.severity, "out_of_scope": outcome.out_of_scope, "hold": outcome.hold,
            "flags": list(outcome.flags), "at": now,
            "auth": auth_json(outcome.auth, self.settings) if outcome.auth and self.settings else None,
        }
        state = state_for(outcome, mail.historical)
        if state is not MessageState.HISTORICAL and (outcome.effects or outcome.case is not None):
            with self.conn.begin_nested():  # a failing effect leaves nothing behind
                _apply_effects(Applying(self.conn, self.config, self.key, now, mail), outcome, self.effects)
        self.verdicts += verdicts
        self.classifications.append(classification)
        if state is not MessageState.HISTORICAL:
            if self.cache is not None and account_id is not None and outcome.final is Disposition.PENDING:
                self.cache.add_request(account_id, pk, mail.received_at)
            if self.cache is not None and account_id is not None and any(
                v.name in PIN_FAILURES for v in outcome.verdicts
            ):
                self.cache.add_pin_failure(account_id, pk, now)
        self.states[state].append(pk)
        return state

    def verdicts_of(self, pk: int, outcome: Outcome) -> list[dict[str, Any]]:
        now, phase = self.now, self.phase
        return [
            {"message_pk": pk, "phase": phase, "seq": i, "rule": v.rule, "name": v.name,
             "reason": storable(v.reason)[:4000], "disposition": v.disposition.value if v.disposition else None,
             "at": now}
            for i, v in enumerate(outcome.verdicts)
        ] or [{"message_pk": pk, "phase": phase, "seq": 0, "rule": "chain", "name": "no-rule-hit",
               "reason": "no rule matched: a request for the next cutoff", "disposition": None, "at": now}]

    def flush(self) -> None:
        conn = self.conn
        if self.verdicts:
            conn.execute(sa.insert(VERDICT), self.verdicts)
        pks = [row["message_pk"] for row in self.classifications]
        for i in range(0, len(pks), 500):
            conn.execute(sa.delete(CLASSIFICATION).where(CLASSIFICATION.c.message_pk.in_(pks[i : i + 500])))
        if self.classifications:
            conn.execute(sa.insert(CLASSIFICATION), self.classifications)
        for state, ids in self.states.items():
            for i in range(0, len(ids), 500):
                conn.execute(sa.update(MESSAGE).where(MESSAGE.c.id.in_(ids[i : i + 500]))
                             .values(state=state.value, state_changed_at=self.now))
        self.verdicts, self.classifications, self.states = [], [], defaultdict(list)


def _apply_effects(applying: Applying, outcome: Outcome, handlers: EffectHandlers) -> None:
    mail, conn, now = applying.mail, applying.conn, applying.now
    if outcome.case is not None and outcome.final in (Disposition.FOLLOW_UP, Disposition.STAFF_NOTE):
        role = "staff-note" if outcome.final is Disposition.STAFF_NOTE else "follow-up"
        insert_ignore(conn, CASE_MESSAGE, [{"message_pk": mail.pk, "case_id": outcome.case.id,
                                            "role": role, "at": now}], ["message_pk"])
    for effect in outcome.effects:
        handler = handlers.get(type(effect))
        if handler is None:
            raise LookupError(f"no handler for the {effect.kind} effect in this stage")
        handler(applying, effect)


# -- the stage ----------------------------------------------------------------------------


def classify_batch(
    engine: Engine, config: Config, clock: Clock, effects: EffectHandlers, limit: int = 500
) -> StageResult:
    """Classify up to ``limit`` parsed mails (and 16 MB of raw mail), oldest received first,
    in one transaction."""
    pks: list[int] = []
    with engine.connect() as conn:
        total = 0
        for pk, size in conn.execute(
            sa.select(MESSAGE.c.id, BLOB.c.size).join(BLOB, BLOB.c.sha256 == MESSAGE.c.primary_sha256)
            .where(MESSAGE.c.state == MessageState.PARSED.value)
            .order_by(MESSAGE.c.received_at, MESSAGE.c.id).limit(limit)
        ):
            if pks and total + size > CLASSIFY_BYTES:
                break
            pks.append(int(pk))
            total += int(size)
    if not pks:
        return StageResult()
    try:
        return _classify(engine, config, effects, clock.now(), pks)
    except Exception as exc:
        if is_outage(exc):
            raise
        # the database refused something of one mail (not: went away): find it
        log.warning("event=classify-batch-failed messages=%d error=%s action=one-by-one", len(pks),
                    kv(f"{type(exc).__name__}: {exc}"))
        first: Exception = exc
    result = StageResult()
    for pk in pks:
        now = clock.now()
        try:
            result += _classify(engine, config, effects, now, [pk]) if len(pks) > 1 else _reraise(first)
        except Exception as exc:
            if is_outage(exc):
                raise
            with transaction(engine) as conn:
                quarantine(conn, pk, Stage.CLASSIFY, exc, now, context="recording the verdicts")
            result.quarantined += 1
    return result


def _reraise(exc: Exception) -> StageResult:
    raise exc


def _classify(engine: Engine, config: Config, effects: EffectHandlers, now: datetime, pks: list[int]) -> StageResult:
    """Classify these mails in one transaction (a rule that raises quarantines its mail)."""
    result = StageResult()
    settings = rule_settings(config)
    key = config.hmac_key()
    with transaction(engine) as conn:
        mails = load_mails(conn, pks)
        from mailcase.domain.cases import staff_addresses

        directory = DbDirectory(conn, now, config.staff, staff_addresses(conn))
        cache = PassCache()
        cache.prefetch(conn, list(mails.values()), directory)
        recorder = Recorder(conn, "ingest", now, config, effects, cache, settings)
        cutoff_of = BusinessCalendar(config.calendar).cutoff_for
        for pk in pks:
            mail = mails[pk]
            ctx = DbContext(conn, now, settings, directory, key, cache, message_pk=pk, cutoff_of=cutoff_of)
            try:
                outcome = run_chain(mail, ctx)
                state = recorder.add(mail, outcome)
                log.debug("event=classified message=%s state=%s disposition=%s case=%s verdicts=%s",
                          pk, state.value, outcome.final.value, outcome.case.number if outcome.case else "-",
                          ",".join(v.name for v in outcome.verdicts) or "-")
            except Exception as exc:  # a rule bug quarantines one mail, not the stage
                log.exception("event=classify-failed message=%s", pk)
                quarantine(conn, pk, Stage.CLASSIFY, exc, now)
                result.quarantined += 1
                continue
            result.done += 1
        recorder.flush()
    return result


def run_classify_stage(engine: Engine, config: Config, clock: Clock, effects: EffectHandlers) -> StageResult:
    total = StageResult()
    while True:
        r = classify_batch(engine, config, clock, effects)
        total += r
        if r.done + r.quarantined == 0:
            return total
