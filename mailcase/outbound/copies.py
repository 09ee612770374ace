"""Copies of a case's mail to the requester's colleagues: one outbox row per recipient.

A case's colleagues (``support_case.cc``, chosen at its cutoff:
cutoff/cc.py) receive its acknowledgement, staff replies and resolution --
never notices or surveys, which are the requester's alone.  Each colleague
gets a row of their own: its own idempotency key, suppression, daily cap and
VERP bounce address, so one bounced or suppressed colleague stops no one
else.  Every copy carries the same headers as the requester's mail (To the
requester, Cc the colleagues, one Message-ID), so everyone sees who got it
and a reply from any of them threads into the case.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcase.config.settings import Config
from mailcase.core.states import CaseEventKind
from mailcase.core.tokens import token_hex
from mailcase.domain.cases import event
from mailcase.domain.tables import CASE_EVENT, PERSON
from mailcase.outbound.compose import OutgoingMail
from mailcase.outbound.outbox import OutboxQueue


def copy_key(key: str, address: str) -> str:
    """A copy's idempotency key: the requester's mail's, and a hash of the colleague's
    address (no address in a key: erasure rewrites addresses, never keys)."""
    return f"{key}:cc:{hashlib.sha256(address.lower().encode('utf-8')).hexdigest()[:16]}"


def with_copies(mail: OutgoingMail, cc: Sequence[str]) -> list[OutgoingMail]:
    """The requester's mail naming ``cc`` in its Cc header, then a copy for each colleague."""
    if not cc:
        return [mail]
    main = replace(mail, cc=tuple(cc), msgid_unique=mail.msgid_unique or token_hex(8))
    return [main] + [replace(main, key=copy_key(mail.key, a), to_addr=a, header_to=mail.to_addr) for a in cc]


def colleagues(conn: Connection, row: Any, now: datetime) -> tuple[str, ...]:
    """The case's colleagues (``row``: the case) who are still known users of its account;
    one no longer in the directory is left out, with an event."""
    cc = [str(a) for a in (row.cc or [])]
    if not cc:
        return ()
    live = set(conn.execute(sa.select(PERSON.c.address).where(
        PERSON.c.account_id == row.account_id, PERSON.c.address.in_(cc), PERSON.c.added_at <= now,
        sa.or_(PERSON.c.removed_at.is_(None), PERSON.c.removed_at > now))).scalars()) if row.account_id else set()
    gone = [a for a in cc if a not in live]
    detail = f"not copied: {', '.join(gone)} (no longer a user of the account)"
    if gone and conn.execute(sa.select(CASE_EVENT.c.id).where(  # said once, however often it is asked
            CASE_EVENT.c.case_id == row.id, CASE_EVENT.c.kind == CaseEventKind.CC.value,
            CASE_EVENT.c.detail == detail)).first() is None:
        event(conn, row.id, now, "mailcase", CaseEventKind.CC, detail)
    return tuple(a for a in cc if a in live)


def enqueue_copied(conn: Connection, mail: OutgoingMail, cc: Sequence[str], config: Config, key: bytes,
                   now: datetime) -> bool:
    """Queue the requester's mail and its copies, once per key; False if none of them was new."""
    queue = OutboxQueue(conn, config, key, now)
    mails = with_copies(mail, cc)
    for m in mails:
        queue.add(m)
    return queue.flush() > 0
