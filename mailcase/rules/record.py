"""Recording what the chain decided: the verdicts, the outcome, the mail's state, the effects.

:class:`Recorder` stores a pass's verdicts and classifications in bulk, moves
each mail to its state (:func:`state_for`) and applies the effects of its
outcome in the mail's transaction.  Effects are applied through an
:data:`EffectHandlers` table keyed by the effect's type.  :data:`BASE_EFFECTS`
handles what the rules and the domain own (case links and reopening, PIN
locks, alerts); a caller that may meet bounces and survey scores passes the
outbound stage's larger table.  An effect without a handler raises, which
quarantines that one mail.  The classify stage and the cutoff's second
judgement record through the same code.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcase.config.settings import Config
from mailcase.core.log import kv
from mailcase.core.states import CaseMessageRole, MessageState
from mailcase.domain.cases import reopen_case
from mailcase.domain.db import insert_ignore
from mailcase.domain.directory import lock_pin
from mailcase.domain.tables import CASE_MESSAGE, CLASSIFICATION, MESSAGE, VERDICT
from mailcase.mail.charsets import storable
from mailcase.rules.base import Disposition, Mail, Mark, Outcome, RuleSettings
from mailcase.rules.content import content_json
from mailcase.rules.context import PassCache
from mailcase.rules.effects import Alert, LinkCase, LockPin, ReopenCase
from mailcase.rules.loading import auth_json
from mailcase.rules.pin import PIN_FAILURES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Applying:
    """What a handler is given: the transaction, the configuration and the mail the effect came from."""

    conn: Connection
    config: Config
    key: bytes
    now: datetime
    mail: Mail


Handler = Callable[[Applying, Any], None]
EffectHandlers = Mapping[type, Handler]


def _linked(applying: Applying, effect: LinkCase) -> None:
    """Nothing to do: the link is stored with the classification."""


def _reopen(applying: Applying, effect: ReopenCase) -> None:
    mail = applying.mail
    reopen_case(applying.conn, effect.case_id, applying.now, "mailcase", f"reply from {mail.sender} (mail #{mail.pk})")


def _lock_pin(applying: Applying, effect: LockPin) -> None:
    lock_pin(applying.conn, effect.account_id, applying.now)


def _alert(applying: Applying, effect: Alert) -> None:
    log.warning("event=alert message=%s what=%s", applying.mail.pk, kv(effect.what))


BASE_EFFECTS: EffectHandlers = {LinkCase: _linked, ReopenCase: _reopen, LockPin: _lock_pin, Alert: _alert}


# -- recording the outcome ----------------------------------------------------------------


def state_for(outcome: Outcome, historical: bool) -> MessageState:
    """Where a classified mail rests (states.py): a request waits for the next cutoff."""
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
            "content": content_json(mail),
        }
        state = state_for(outcome, mail.historical)
        if state is not MessageState.HISTORICAL and (outcome.effects or outcome.case is not None):
            with self.conn.begin_nested():  # a failing effect leaves nothing behind
                apply_effects(Applying(self.conn, self.config, self.key, now, mail), outcome, self.effects)
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


def apply_effects(applying: Applying, outcome: Outcome, handlers: EffectHandlers) -> None:
    """Attach a follow-up or staff note to its case and run each effect's handler."""
    mail, conn, now = applying.mail, applying.conn, applying.now
    if outcome.case is not None and outcome.final in (Disposition.FOLLOW_UP, Disposition.STAFF_NOTE):
        role = CaseMessageRole.STAFF_NOTE if outcome.final is Disposition.STAFF_NOTE else CaseMessageRole.FOLLOW_UP
        insert_ignore(conn, CASE_MESSAGE, [{"message_pk": mail.pk, "case_id": outcome.case.id,
                                            "role": role.value, "at": now}], ["message_pk"])
    for effect in outcome.effects:
        handler = handlers.get(type(effect))
        if handler is None:
            raise LookupError(f"no handler for the {effect.kind} effect in this stage")
        handler(applying, effect)

