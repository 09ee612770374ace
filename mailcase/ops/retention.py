"""Retention and erasure: raw mail and text go; counts stay.

Purging removes the raw bytes and the parsed text of mail received before a
date -- but never while its case is open, and for a closed case only once it
was closed before that date: retention is never shorter than the life of the
case.  Mail still on its way (pending, held, quarantined) is never purged.

Erasing a person (``erase --address``) removes their mail's bytes and text,
their address and name from messages, classifications, cases (the requester,
and the colleagues a case copies), the outbox, bounces, suppressions and the
directory, and keeps every row, so reports still count what happened.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mailcase.config.settings import Config
from mailcase.core.states import CaseStatus, MessageState
from mailcase.domain.db import transaction
from mailcase.domain.tables import (
    BLOB,
    BOUNCE,
    CASE,
    CASE_MESSAGE,
    CLASSIFICATION,
    MESSAGE,
    OUTBOX,
    PARSED_MAIL,
    PERSON,
    RAW_COPY,
    SUPPRESSION,
    VERDICT,
)

log = logging.getLogger(__name__)
ERASED = "[erased]"
_DONE = (MessageState.CLASSIFIED.value, MessageState.BATCHED.value, MessageState.HISTORICAL.value)


@dataclass
class PurgeResult:
    messages: int = 0
    raw_bytes: int = 0
    texts: int = 0

    def summary(self) -> str:
        return f"{self.messages} mails: {self.raw_bytes} bytes of raw mail, {self.texts} texts"


def purgeable(conn: Connection, before: datetime) -> list[int]:
    """Mail received before ``before`` whose processing and case are finished."""
    in_case = sa.select(CASE_MESSAGE.c.message_pk)
    closed_before = (
        sa.select(CASE_MESSAGE.c.message_pk).join(CASE, CASE.c.id == CASE_MESSAGE.c.case_id)
        .where(CASE.c.status == CaseStatus.CLOSED.value, CASE.c.closed_at < before)
    )
    rows = conn.execute(
        sa.select(MESSAGE.c.id).where(
            MESSAGE.c.received_at < before, MESSAGE.c.state.in_(_DONE),
            sa.or_(MESSAGE.c.id.not_in(in_case), MESSAGE.c.id.in_(closed_before)),
        )
    ).scalars().all()
    return [int(r) for r in rows]


def _drop_raw(conn: Connection, pks: list[int]) -> int:
    freed = 0
    for i in range(0, len(pks), 500):
        part = pks[i : i + 500]
        shas = conn.execute(sa.select(RAW_COPY.c.sha256).where(RAW_COPY.c.message_pk.in_(part))).scalars().all()
        if not shas:
            continue
        freed += int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(BLOB.c.size), 0)).where(
            BLOB.c.sha256.in_(list(shas)), BLOB.c.data.is_not(None))).scalar_one())
        conn.execute(sa.update(BLOB).where(BLOB.c.sha256.in_(list(shas))).values(data=None))
    return freed


def _drop_text(conn: Connection, pks: list[int]) -> int:
    n = 0
    for i in range(0, len(pks), 500):
        part = pks[i : i + 500]
        n += int(conn.execute(sa.update(PARSED_MAIL).where(
            PARSED_MAIL.c.message_pk.in_(part), PARSED_MAIL.c.text_body != "").values(text_body="", reply_text=None)).rowcount)
    return n


def purge(conn: Connection, before: datetime, raw: bool = True, text: bool = True) -> PurgeResult:
    pks = purgeable(conn, before)
    result = PurgeResult(messages=len(pks))
    if raw:
        result.raw_bytes = _drop_raw(conn, pks)
    if text:
        result.texts = _drop_text(conn, pks)
    return result


def apply_retention(engine: Engine, config: Config, now: datetime) -> None:
    r = config.retention
    if not (r.raw_days or r.text_days):
        return
    with transaction(engine) as conn:
        if r.raw_days:
            done = purge(conn, now - timedelta(days=r.raw_days), raw=True, text=False)
            if done.raw_bytes:
                log.info("event=retention-purged what=raw %s", done.summary().replace(" ", "_"))
        if r.text_days:
            done = purge(conn, now - timedelta(days=r.text_days), raw=False, text=True)
            if done.texts:
                log.info("event=retention-purged what=text texts=%d", done.texts)


@dataclass
class EraseResult:
    messages: int = 0
    cases: int = 0
    outbox: int = 0
    people: int = 0

    def summary(self) -> str:
        return (f"{self.messages} mails, {self.cases} cases, {self.outbox} outgoing mails, "
                f"{self.people} directory entries")


def _drop_copies(conn: Connection, address: str) -> None:
    """The address is no longer a colleague any case copies."""
    # compared in Python: the JSON text differs between the databases (PostgreSQL's
    # LIKE reads the backslash of an escaped non-ASCII character as its own escape)
    rows = conn.execute(sa.select(CASE.c.id, CASE.c.cc).where(sa.cast(CASE.c.cc, sa.Text) != "[]")).all()
    for case_id, cc in rows:
        kept = [a for a in (cc or []) if a != address]
        if kept != list(cc or []):
            conn.execute(sa.update(CASE).where(CASE.c.id == case_id).values(cc=kept))


def erase(conn: Connection, address: str, now: datetime) -> EraseResult:
    address = address.strip().lower()
    result = EraseResult()
    pks = [int(p) for p in conn.execute(sa.select(MESSAGE.c.id).where(MESSAGE.c.from_addr == address)).scalars()]
    result.messages = len(pks)
    _drop_raw(conn, pks)
    for i in range(0, len(pks), 500):
        part = pks[i : i + 500]
        conn.execute(sa.update(PARSED_MAIL).where(PARSED_MAIL.c.message_pk.in_(part)).values(
            text_body="", reply_text=None, to_addrs=[], cc_addrs=[], reply_to=[], attachments=[]))
        conn.execute(sa.update(MESSAGE).where(MESSAGE.c.id.in_(part)).values(
            from_addr=ERASED, from_name=None, subject=ERASED))
        conn.execute(sa.update(VERDICT).where(VERDICT.c.message_pk.in_(part)).values(
            reason=sa.func.replace(VERDICT.c.reason, address, ERASED)))
    conn.execute(sa.update(CLASSIFICATION).where(CLASSIFICATION.c.sender == address).values(sender=ERASED))
    result.cases = int(conn.execute(sa.update(CASE).where(CASE.c.requester == address).values(
        requester=ERASED, subject=ERASED)).rowcount)
    _drop_copies(conn, address)
    result.outbox = int(conn.execute(sa.update(OUTBOX).where(OUTBOX.c.to_addr == address).values(
        to_addr=ERASED, raw=b"", subject=ERASED)).rowcount)
    conn.execute(sa.update(BOUNCE).where(BOUNCE.c.recipient == address).values(recipient=ERASED))
    conn.execute(sa.delete(SUPPRESSION).where(SUPPRESSION.c.address == address))
    result.people = int(conn.execute(sa.update(PERSON).where(PERSON.c.address == address).values(
        address=ERASED, name="", pin_hash=None, removed_at=sa.func.coalesce(PERSON.c.removed_at, now))).rowcount)
    return result
