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
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mailcase.clock import Clock
from mailcase.config import SEVERITY_LEVELS, Config
from mailcase.db import insert_ignore, transaction
from mailcase.directory import ACCOUNT, DbDirectory
from mailcase.headers import read_headers, split_headers
from mailcase.ledger import BLOB, MESSAGE
from mailcase.log import kv
from mailcase.models import Bounce as BounceRow
from mailcase.models import Case as CaseRow
from mailcase.models import CaseMessage, Classification
from mailcase.models import Verdict as VerdictRow
from mailcase.msgid import parse_our_message_id
from mailcase.quarantine import quarantine
from mailcase.rules.base import (
    CaseRef,
    Disposition,
    Mail,
    Mark,
    Outcome,
    ResolvedCase,
    RuleSettings,
)
from mailcase.rules.chain import run_chain
from mailcase.stages import PARSED_MAIL, StageResult
from mailcase.states import MessageState, Stage

log = logging.getLogger(__name__)

VERDICT = VerdictRow.__table__  # type: ignore[attr-defined]
CLASSIFICATION = Classification.__table__  # type: ignore[attr-defined]
BOUNCE = BounceRow.__table__  # type: ignore[attr-defined]
CASE = CaseRow.__table__  # type: ignore[attr-defined]
CASE_MESSAGE = CaseMessage.__table__  # type: ignore[attr-defined]

OPEN_STATUSES = ("new", "acknowledged", "in-progress", "escalated", "held", "out-of-scope")
REQUEST_DISPOSITIONS = (Disposition.PENDING.value,)


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


@dataclass
class DbContext:
    """The rules' Context over the database, for one evaluation pass."""

    conn: Connection
    now: datetime
    settings: RuleSettings
    directory: DbDirectory
    key: bytes
    message_pk: int | None = None
    _resolved: dict[int, list[ResolvedCase]] = field(default_factory=dict)

    def case_for_message_ids(self, ids: Sequence[str]) -> CaseRef | None:
        for mid in ids:
            ours = parse_our_message_id(self.key, mid)
            if ours is not None and ours.case_number:
                case = self.case_by_number(ours.case_number)
                if case is not None:
                    return case
        if not ids:
            return None
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

    def is_our_message_id(self, message_id: str) -> bool:
        return parse_our_message_id(self.key, message_id) is not None

    def _before(self, since: datetime, until: datetime) -> sa.ColumnElement[bool]:
        cond = sa.and_(MESSAGE.c.received_at >= since, MESSAGE.c.received_at < until)
        if self.message_pk is not None:
            cond = sa.and_(cond, MESSAGE.c.id != self.message_pk)
        return cond

    def similar_mails_before(
        self, sender: str, subject: str, body_hash: str, since: datetime, until: datetime
    ) -> int:
        return int(self.conn.execute(
            sa.select(sa.func.count())
            .select_from(MESSAGE.join(PARSED_MAIL, PARSED_MAIL.c.message_pk == MESSAGE.c.id))
            .where(
                MESSAGE.c.from_addr == sender, MESSAGE.c.subject == subject,
                PARSED_MAIL.c.text_sha256 == body_hash, self._before(since, until),
            )
        ).scalar_one())

    def sender_mails_before(self, sender: str, since: datetime, until: datetime) -> int:
        return int(self.conn.execute(
            sa.select(sa.func.count()).select_from(MESSAGE)
            .where(MESSAGE.c.from_addr == sender, self._before(since, until))
        ).scalar_one())

    def notices_sent(self, address: str, kind: str, since: datetime) -> int:
        q = (
            sa.select(sa.func.count()).select_from(
                CLASSIFICATION.join(MESSAGE, MESSAGE.c.id == CLASSIFICATION.c.message_pk)
            )
            .where(
                CLASSIFICATION.c.sender == address, CLASSIFICATION.c.notice == kind,
                CLASSIFICATION.c.notice_allowed.is_(True), MESSAGE.c.received_at >= since,
                MESSAGE.c.historical.is_(False),
            )
        )
        if self.message_pk is not None:
            q = q.where(CLASSIFICATION.c.message_pk != self.message_pk)
        return int(self.conn.execute(q).scalar_one())

    def pin_failures(self, account_id: int, since: datetime) -> int:
        q = (
            sa.select(sa.func.count(sa.distinct(VERDICT.c.message_pk)))
            .select_from(VERDICT.join(CLASSIFICATION, CLASSIFICATION.c.message_pk == VERDICT.c.message_pk))
            .where(
                CLASSIFICATION.c.account_id == account_id,
                VERDICT.c.name.in_(["pin-missing", "pin-wrong", "pin-ambiguous"]),
                VERDICT.c.at >= since,
            )
        )
        if self.message_pk is not None:
            q = q.where(VERDICT.c.message_pk != self.message_pk)
        return int(self.conn.execute(q).scalar_one())

    def account_requests(self, account_id: int, since: datetime, until: datetime) -> int:
        q = (
            sa.select(sa.func.count()).select_from(
                CLASSIFICATION.join(MESSAGE, MESSAGE.c.id == CLASSIFICATION.c.message_pk)
            )
            .where(
                CLASSIFICATION.c.account_id == account_id,
                CLASSIFICATION.c.disposition.in_(REQUEST_DISPOSITIONS),
                self._before(since, until), MESSAGE.c.historical.is_(False),
            )
        )
        return int(self.conn.execute(q).scalar_one())

    def resolved_cases(self, account_id: int) -> Sequence[ResolvedCase]:
        if account_id not in self._resolved:
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
            self._resolved[account_id] = out
        return self._resolved[account_id]


# -- building the Mail ------------------------------------------------------------------


def load_mails(conn: Connection, pks: Sequence[int]) -> dict[int, Mail]:
    if not pks:
        return {}
    rows = conn.execute(
        sa.select(
            MESSAGE.c.id, MESSAGE.c.received_at, MESSAGE.c.stored_at, MESSAGE.c.historical,
            BLOB.c.data, PARSED_MAIL.c.text_body, PARSED_MAIL.c.to_addrs, PARSED_MAIL.c.cc_addrs,
            PARSED_MAIL.c.pin_hmacs,
        )
        .join(BLOB, BLOB.c.sha256 == MESSAGE.c.primary_sha256)
        .outerjoin(PARSED_MAIL, PARSED_MAIL.c.message_pk == MESSAGE.c.id)
        .where(MESSAGE.c.id.in_(list(pks)))
    ).all()
    out: dict[int, Mail] = {}
    for r in rows:
        raw = r.data or b""
        block = split_headers(raw)
        out[r.id] = Mail(
            raw=raw, block=block, info=read_headers(raw, block), body=r.text_body or "",
            received_at=r.received_at or r.stored_at, to=tuple(r.to_addrs or ()),
            cc=tuple(r.cc_addrs or ()), pk=r.id, historical=bool(r.historical),
            pin_hmacs=tuple(r.pin_hmacs or ()),
        )
    return out


# -- recording the outcome ----------------------------------------------------------------


def state_for(outcome: Outcome, historical: bool) -> MessageState:
    if historical:
        return MessageState.HISTORICAL
    d = outcome.final
    if d is Disposition.HELD_FOR_REVIEW:
        return MessageState.HELD
    if d in (Disposition.SUPPRESSED, Disposition.FOLLOW_UP, Disposition.STAFF_NOTE):
        return MessageState.CLASSIFIED
    return MessageState.PENDING


def record(
    conn: Connection, mail: Mail, outcome: Outcome, phase: str, now: datetime,
) -> MessageState:
    """Store verdicts and outcome, apply effects, move the message on."""
    assert mail.pk is not None
    pk = mail.pk
    conn.execute(sa.insert(VERDICT), [
        {"message_pk": pk, "phase": phase, "seq": i, "rule": v.rule, "name": v.name,
         "reason": v.reason[:4000], "disposition": v.disposition.value if v.disposition else None, "at": now}
        for i, v in enumerate(outcome.verdicts)
    ] or [{"message_pk": pk, "phase": phase, "seq": 0, "rule": "chain", "name": "no-rule-hit",
           "reason": "no rule matched: a request for the next cutoff", "disposition": None, "at": now}])
    sender = outcome.sender
    linked = next((e.data.get("case_id") for e in outcome.effects if e.kind == "link-case"), None)
    row = {
        "message_pk": pk, "phase": phase, "disposition": outcome.final.value,
        "no_auto_reply": Mark.NO_AUTO_REPLY in outcome.marks,
        "automatic": Mark.AUTOMATIC in outcome.marks,
        "account_id": sender.account.id if sender and sender.account else None,
        "person_id": sender.person.id if sender and sender.person else None,
        "sender": (sender.address if sender else None) or mail.sender,
        "eligible": bool(sender and sender.eligible),
        "case_pk": outcome.case.id if outcome.case else None,
        "linked_case_id": linked,
        "notice": outcome.notice.value if outcome.notice else None,
        "notice_allowed": outcome.notice_allowed,
        "notice_withheld_reason": outcome.notice_withheld_reason,
        "severity": outcome.severity, "out_of_scope": outcome.out_of_scope, "hold": outcome.hold,
        "flags": list(outcome.flags), "at": now,
    }
    conn.execute(sa.delete(CLASSIFICATION).where(CLASSIFICATION.c.message_pk == pk))
    conn.execute(sa.insert(CLASSIFICATION).values(**row))
    state = state_for(outcome, mail.historical)
    if state is not MessageState.HISTORICAL:
        _apply_effects(conn, mail, outcome, now)
    conn.execute(
        sa.update(MESSAGE).where(MESSAGE.c.id == pk).values(state=state.value, state_changed_at=now)
    )
    return state


def _apply_effects(conn: Connection, mail: Mail, outcome: Outcome, now: datetime) -> None:
    assert mail.pk is not None
    if outcome.case is not None and outcome.final in (Disposition.FOLLOW_UP, Disposition.STAFF_NOTE):
        role = "staff-note" if outcome.final is Disposition.STAFF_NOTE else "follow-up"
        insert_ignore(conn, CASE_MESSAGE, [{"message_pk": mail.pk, "case_id": outcome.case.id,
                                            "role": role, "at": now}], ["message_pk"])
    for effect in outcome.effects:
        d = effect.data
        if effect.kind == "record-bounce":
            conn.execute(sa.insert(BOUNCE).values(
                message_pk=mail.pk, recipient=d.get("recipient"), status=d.get("status"),
                action=d.get("action"), original_message_id=d.get("original_message_id"),
                kind=d.get("kind", "dsn"), matched_outbox_id=None, at=now,
            ))
        elif effect.kind == "lock-pin":
            conn.execute(sa.update(ACCOUNT).where(
                ACCOUNT.c.id == d["account_id"], ACCOUNT.c.pin_locked_at.is_(None)
            ).values(pin_locked_at=now))
        elif effect.kind == "reopen-case":
            conn.execute(sa.update(CASE).where(CASE.c.id == d["case_id"]).values(
                status="in-progress", resolved_at=None, closed_at=None))
        elif effect.kind == "alert":
            log.warning("event=alert message=%s what=%s", mail.pk, kv(d.get("what", "")))


# -- the stage ----------------------------------------------------------------------------


def classify_batch(
    engine: Engine, config: Config, clock: Clock, limit: int = 200
) -> StageResult:
    """Classify up to ``limit`` parsed mails, oldest received first."""
    with engine.connect() as conn:
        pks = [r[0] for r in conn.execute(
            sa.select(MESSAGE.c.id).where(MESSAGE.c.state == MessageState.PARSED.value)
            .order_by(MESSAGE.c.received_at, MESSAGE.c.id).limit(limit)
        )]
    result = StageResult()
    if not pks:
        return result
    now = clock.now()
    settings = rule_settings(config)
    key = config.hmac_key()
    with transaction(engine) as conn:
        mails = load_mails(conn, pks)
        directory = DbDirectory(conn, now, config.staff)
        for pk in pks:
            mail = mails[pk]
            ctx = DbContext(conn, now, settings, directory, key, message_pk=pk)
            try:
                with conn.begin_nested():
                    outcome = run_chain(mail, ctx)
                    record(conn, mail, outcome, "ingest", now)
            except Exception as exc:  # a rule bug quarantines one mail, not the stage
                log.exception("event=classify-failed message=%s", pk)
                quarantine(conn, pk, Stage.CLASSIFY, exc, now)
                result.quarantined += 1
                continue
            result.done += 1
    return result


def run_classify_stage(engine: Engine, config: Config, clock: Clock) -> StageResult:
    total = StageResult()
    while True:
        r = classify_batch(engine, config, clock)
        total += r
        if r.done + r.quarantined == 0:
            return total
