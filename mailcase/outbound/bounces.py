"""Bounces of our own mail: match, fail the row, suppress the address.

A bounce changes state only when it matches a mail we sent: the VERP
envelope address it came back to (``bounces+ROW-MAC@...``: the MAC is ours,
so it cannot be forged) or our Message-ID in the returned headers -- and in
both cases the failed recipient (its Final-Recipient, or the
Original-Recipient we addressed when the mail went through an alias) must
be the one we sent to.  A forged bounce naming a customer matches nothing
and changes nothing; a report that did not come back through our VERP
envelope and does not authenticate (aligned SPF or DKIM of its sender, RFC
8601) never suppresses anyone, whatever Message-ID it quotes.

A matched 5.1.x (bad mailbox / domain) suppresses the address for all later
mail; other 5.x failures suppress it once they repeat over two days; 4.x
failures only alert.  A sudden spike of hard bounces (our own relay failing
looks like every customer bouncing) pauses suppression and alerts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcase.config.settings import Config
from mailcase.core.log import kv
from mailcase.core.states import FAILURE_BOUNCE_KINDS, LIVE_OUTBOX_STATUSES, OutboxStatus
from mailcase.domain.db import insert_ignore
from mailcase.domain.tables import BOUNCE, OUTBOX, SUPPRESSION
from mailcase.mail.addresses import parse_address_list
from mailcase.mail.charsets import storable
from mailcase.mail.msgid import parse_verp
from mailcase.rules.authentication import evaluate
from mailcase.rules.base import Context, Mail, RuleSettings
from mailcase.rules.effects import RecordBounce
from mailcase.rules.record import Applying

log = logging.getLogger(__name__)
_ENVELOPE_HEADERS = ("delivered-to", "x-original-to", "envelope-to", "x-envelope-to", "to", "x-failed-recipients")


def _our_rows(mail: Mail, config: Config, key: bytes) -> set[int]:
    """Outbox rows named by the VERP address the bounce was delivered to."""
    rows: set[int] = set()
    base = config.outgoing.bounce_base
    for name in _ENVELOPE_HEADERS:
        for value in mail.headers(name):
            for addr in parse_address_list(value).addresses:
                row = parse_verp(key, base, addr.addr)
                if row is not None:
                    rows.add(row)
    return rows


@dataclass(frozen=True)
class _Settings:
    settings: RuleSettings


def _authenticated(mail: Mail, config: Config) -> bool:
    """The report's sender passed aligned SPF or DKIM at our server (or checks are off)."""
    auth = evaluate(mail, cast(Context, _Settings(RuleSettings.from_config(config))))
    return not auth.checked or auth.spf_aligned_pass or auth.dkim_aligned_pass or auth.dmarc_pass


def _clean(value: str | None, limit: int) -> str | None:
    """A report's fields are the sender's text: no NUL or lone surrogates in storage."""
    return storable(value)[:limit] if value is not None else None


def record_bounce(applying: Applying, effect: RecordBounce) -> None:
    """Store the report, then find the mail of ours it is about."""
    bounce_id = int(applying.conn.execute(sa.insert(BOUNCE).values(
        message_pk=applying.mail.pk, recipient=_clean(effect.recipient, 320), status=_clean(effect.status, 16),
        original_recipient=_clean(effect.original_recipient, 320), action=_clean(effect.action, 32),
        original_message_id=_clean(effect.original_message_id, 998), kind=effect.report,
        matched_outbox_id=None, at=applying.now,
    ).returning(BOUNCE.c.id)).scalar_one())
    match_bounce(applying.conn, applying.config, applying.key, applying.mail, bounce_id, applying.now)


def match_bounce(conn: Connection, config: Config, key: bytes, mail: Mail, bounce_id: int, now: datetime) -> None:
    b = conn.execute(sa.select(BOUNCE).where(BOUNCE.c.id == bounce_id)).one()
    if b.kind not in FAILURE_BOUNCE_KINDS:
        return
    candidates = _our_rows(mail, config, key)
    by_id = []
    if b.original_message_id:
        by_id = [r[0] for r in conn.execute(sa.select(OUTBOX.c.id).where(OUTBOX.c.message_id == b.original_message_id))]
    rows = conn.execute(sa.select(OUTBOX).where(OUTBOX.c.id.in_(sorted(candidates | set(by_id))))).all()
    named = {r.lower() for r in (b.recipient, b.original_recipient) if r}
    matched = None
    for row in rows:
        if not named and row.id not in candidates:
            continue  # a Message-ID alone, with no recipient named, proves too little
        if not named or row.to_addr in named:
            matched = row
            break
    if matched is None:
        log.info("event=bounce-unmatched message=%s recipient=%s: changes nothing", mail.pk, kv(b.recipient or "-"))
        return
    if matched.id not in candidates and not _authenticated(mail, config):
        log.info("event=bounce-unverified message=%s recipient=%s what=%s", mail.pk, kv(b.recipient or "-"),
                 kv("not through our VERP envelope and not authenticated: changes nothing"))
        return
    conn.execute(sa.update(BOUNCE).where(BOUNCE.c.id == bounce_id).values(matched_outbox_id=matched.id))
    status = b.status or ""
    conn.execute(sa.update(OUTBOX).where(OUTBOX.c.id == matched.id, OUTBOX.c.status.in_(LIVE_OUTBOX_STATUSES))
                 .values(status=OutboxStatus.FAILED.value, status_reason=f"bounced: {status or 'no status'}"))
    address = matched.to_addr
    if not status.startswith("5."):
        log.warning("event=alert what=%s", kv(f"delivery to {address} failed temporarily ({status or 'no status'}); "
                                              "not suppressed"))
        return
    spike = conn.execute(sa.select(sa.func.count()).select_from(BOUNCE).where(
        BOUNCE.c.matched_outbox_id.is_not(None), BOUNCE.c.status.like("5.%"), BOUNCE.c.at >= now - timedelta(hours=1),
    )).scalar_one()
    if spike > config.outgoing.bounce_spike_per_hour:
        log.warning("event=alert what=%s", kv(
            f"{spike} hard bounces in the last hour (limit {config.outgoing.bounce_spike_per_hour}): "
            f"suppression paused, {address} not suppressed; check the outgoing relay"))
        return
    reason: str | None = None
    if status.startswith("5.1."):
        reason = f"hard bounce {status} of outbox row {matched.id}"
    else:
        first = conn.execute(
            sa.select(sa.func.min(BOUNCE.c.at)).select_from(BOUNCE.join(OUTBOX, OUTBOX.c.id == BOUNCE.c.matched_outbox_id))
            .where(OUTBOX.c.to_addr == address, BOUNCE.c.status.like("5.%"))
        ).scalar()
        if first is not None and first.tzinfo is None:
            from datetime import UTC

            first = first.replace(tzinfo=UTC)
        if first is not None and now - first >= timedelta(days=2):
            reason = f"permanent failures ({status}) repeated since {first:%Y-%m-%d}"
        else:
            log.warning("event=alert what=%s", kv(f"permanent failure {status} for {address}; suppressed if it "
                                                  "repeats over two days"))
    if reason:
        suppress(conn, address, reason, status, bounce_id, now)


def suppress(conn: Connection, address: str, reason: str, status: str | None, bounce_id: int | None,
             now: datetime) -> None:
    address = address.lower()
    existing = conn.execute(sa.select(SUPPRESSION).where(SUPPRESSION.c.address == address)).first()
    if existing is None:
        insert_ignore(conn, SUPPRESSION, [{"address": address, "reason": reason, "status": status,
                                           "bounce_id": bounce_id, "since_at": now, "cleared_at": None,
                                           "cleared_by": None}], ["address"])
    elif existing.cleared_at is not None:
        conn.execute(sa.update(SUPPRESSION).where(SUPPRESSION.c.address == address).values(
            reason=reason, status=status, bounce_id=bounce_id, since_at=now, cleared_at=None, cleared_by=None))
    else:
        return
    log.warning("event=suppressed address=%s reason=%s", kv(address), kv(reason))


def clear(conn: Connection, address: str, actor: str, now: datetime) -> bool:
    return bool(conn.execute(
        sa.update(SUPPRESSION).where(SUPPRESSION.c.address == address.lower(), SUPPRESSION.c.cleared_at.is_(None))
        .values(cleared_at=now, cleared_by=actor)
    ).rowcount)


def suppressed(conn: Connection) -> list[Any]:
    return list(conn.execute(
        sa.select(SUPPRESSION).where(SUPPRESSION.c.cleared_at.is_(None)).order_by(SUPPRESSION.c.since_at)
    ).all())
