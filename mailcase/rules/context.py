"""What the rules ask, answered from the database for one evaluation pass.

:class:`DbContext` implements the rules' :class:`~mailcase.rules.base.Context`
over a connection; :class:`PassCache` loads what the rules count once per pass
(a classify batch or a cutoff) and keeps what the pass itself decides, so a
later mail of the same pass sees it.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcase.core.states import (
    CLOSED_CASE_STATUSES,
    LIVE_OUTBOX_STATUSES,
    NOTICE_KIND_PREFIX,
    CaseMessageRole,
    MailKind,
)
from mailcase.domain.casework import surviving_case
from mailcase.domain.directory import DbDirectory
from mailcase.domain.tables import (
    BATCH,
    CASE,
    CASE_MESSAGE,
    CLASSIFICATION,
    MESSAGE,
    OUTBOX,
    PARSED_MAIL,
    VERDICT,
)
from mailcase.mail.msgid import parse_our_message_id
from mailcase.mail.subjects import normalise_subject
from mailcase.rules.base import CaseRef, Disposition, Mail, ResolvedCase, RuleSettings
from mailcase.rules.pin import PIN_FAILURES

#: the dispositions of a mail that counts as one of an account's requests
REQUEST_DISPOSITIONS = (Disposition.PENDING.value,)


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
            senders = [m.sender for m in mails if m.sender]
            directory.prefetch(senders)
            # their accounts too, in three queries: the rules ask for each sender's account, and
            # a lock or standing change within the pass comes from a mail that read it first
            directory.prefetch_accounts([p.account_id for a in senders for p in directory.people(a)])

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
        found: dict[str, list[tuple[str, datetime]]] = {a: [] for a in addresses}
        for addr, k, at in conn.execute(
            sa.select(OUTBOX.c.to_addr, OUTBOX.c.kind, sa.func.coalesce(BATCH.c.cutoff_at, OUTBOX.c.created_at))
            .outerjoin(BATCH, BATCH.c.id == OUTBOX.c.batch_id)
            .where(
                OUTBOX.c.to_addr.in_(addresses), OUTBOX.c.kind.like(f"{NOTICE_KIND_PREFIX}%"),
                OUTBOX.c.status.in_(LIVE_OUTBOX_STATUSES),
            )
        ):
            if addr in found:
                found[addr].append((str(k).removeprefix(NOTICE_KIND_PREFIX),
                                    at if at.tzinfo else at.replace(tzinfo=UTC)))
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
            return _case_ref(surviving_case(self.conn, max(rows, key=lambda r: r.id))) if rows else None
        row = self.conn.execute(
            sa.select(CASE)
            .join(CASE_MESSAGE, CASE_MESSAGE.c.case_id == CASE.c.id)
            .join(MESSAGE, MESSAGE.c.id == CASE_MESSAGE.c.message_pk)
            .where(MESSAGE.c.message_id.in_(list(ids)[:200]))
            .order_by(CASE.c.id.desc())
            .limit(1)
        ).first()
        return _case_ref(surviving_case(self.conn, row)) if row else None

    def case_by_number(self, number: int) -> CaseRef | None:
        """The case of that number or, merged, the case it was merged into."""
        row = self.conn.execute(sa.select(CASE).where(CASE.c.number == number)).first()
        return _case_ref(surviving_case(self.conn, row)) if row else None

    def survey_for(self, ids: Sequence[str], token_case: int | None, sender: str) -> tuple[CaseRef, int] | None:
        for mid in ids:
            ours = parse_our_message_id(self.key, mid)
            if ours is None or ours.kind != MailKind.SURVEY:
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
                    OUTBOX.c.case_id == case.id, OUTBOX.c.kind == MailKind.SURVEY.value,
                ).order_by(OUTBOX.c.id.desc())).first()
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
                .where(CASE.c.account_id == account_id, CASE.c.status.in_(CLOSED_CASE_STATUSES))
                .order_by(CASE.c.id.desc()).limit(200)
            ).all()
            out = []
            for case_id, number, subject in rows:
                text = self.conn.execute(
                    sa.select(PARSED_MAIL.c.text_body)
                    .join(CASE_MESSAGE, CASE_MESSAGE.c.message_pk == PARSED_MAIL.c.message_pk)
                    .where(CASE_MESSAGE.c.case_id == case_id, CASE_MESSAGE.c.role == CaseMessageRole.REQUEST.value)
                    .order_by(PARSED_MAIL.c.message_pk).limit(1)
                ).scalar()
                out.append(ResolvedCase(number, subject or "", (text or "")[:20000]))
            resolved[account_id] = out
        return resolved[account_id]

