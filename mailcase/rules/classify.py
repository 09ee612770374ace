"""The classify stage: run the rules chain on parsed mail and record the outcome.

Impure by design (rules are not): builds each mail's :class:`Mail` from the
ledger (loading.py), answers the rules' questions from the database
(:class:`~mailcase.rules.context.DbContext`), stores every verdict and the
outcome, and applies the effects the verdicts ask for (record.py: record a
bounce, attach a follow-up, lock PIN acceptance, reopen a case).  The same
code runs again at each cutoff against the directory as of the cutoff
(cutoff/batch.py), with ``phase`` naming the cutoff.

States after classification (see states.py): historical mail ends in
``historical`` (verdicts recorded, no effects); suppressed mail, follow-ups
and staff notes in ``classified``; floods in ``held``; requests and mail
that may earn a notice in ``pending``, for the next cutoff.
"""

from __future__ import annotations

import logging
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mailcase.config.settings import Config
from mailcase.core.clock import Clock
from mailcase.core.log import kv
from mailcase.core.states import MessageState, Stage
from mailcase.domain.calendar import BusinessCalendar
from mailcase.domain.cases import staff_addresses
from mailcase.domain.db import is_outage, transaction
from mailcase.domain.directory import DbDirectory
from mailcase.domain.tables import BLOB, MESSAGE
from mailcase.ingest.quarantine import quarantine
from mailcase.ingest.stages import StageResult
from mailcase.rules.base import RuleSettings
from mailcase.rules.chain import run_chain
from mailcase.rules.context import DbContext, PassCache
from mailcase.rules.loading import load_mails
from mailcase.rules.record import EffectHandlers, Recorder

log = logging.getLogger(__name__)

#: raw mail a classify batch holds at once
CLASSIFY_BYTES = 16 * 1024 * 1024


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
    settings = RuleSettings.from_config(config)
    key = config.hmac_key()
    with transaction(engine) as conn:
        mails = load_mails(conn, pks, reread_headers=False, head_only=False)
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
