"""Bounce matching rules: 5.x over two days, spikes pause suppression, VERP must carry our MAC."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from batching import Desk, ny

from mailcase.domain.db import transaction
from mailcase.domain.tables import OUTBOX
from mailcase.mail.msgid import parse_verp, verp_address
from mailcase.outbound.bounces import suppressed


def _dsn(to: str, recipient: str, status: str, original: str, n: int = 0, original_recipient: str | None = None,
         authenticated: bool = False) -> bytes:
    orig = f"Original-Recipient: rfc822;{original_recipient}\r\n" if original_recipient else ""
    # our server checked the report's HELO name (a bounce has a null reverse path)
    auth = ("Authentication-Results: mx.support.example; spf=pass smtp.helo=mx.example\r\n"
            if authenticated else "")
    return (f"Return-Path: <>\r\n{auth}From: MAILER-DAEMON@mx.example\r\nTo: {to}\r\nSubject: failure\r\n"
            f"Message-ID: <dsn{n}@mx.example>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n--B\r\n"
            "Content-Type: text/plain\r\n\r\nfailed\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n"
            f"Reporting-MTA: dns; mx.example\r\n\r\n{orig}Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\n"
            f"Status: {status}\r\n\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {original}\r\n"
            "\r\n--B--\r\n").encode()


def _sent(desk: Desk, senders: list[str]) -> list[Any]:
    for i, s in enumerate(senders):
        desk.mail(ny(2026, 11, 23, 8, i % 60, i // 60), sender=s, subject=f"Request {i}")
    desk.process(ny(2026, 11, 23, 9, 31))
    with transaction(desk.engine) as conn:
        conn.execute(sa.update(OUTBOX).values(status="sent"))
    return desk.outbox()


_n = iter(range(10_000))


def _bounce(desk: Desk, row: Any, status: str, at: datetime, via_verp: bool = True, original: str | None = None,
            final: str | None = None, authenticated: bool = False) -> None:
    """A DSN arrives and goes through the real pipeline (store, parse, rules, matching).

    With ``final``, the mail went through an alias: the report's Final-Recipient
    is ``final`` and its Original-Recipient the address we sent to."""
    from mailcase.core.states import ReceivedSource
    from mailcase.ingest.ledger import Incoming, store

    key = desk.config.hmac_key()
    to = verp_address(key, desk.config.outgoing.bounce_base, row.id) if via_verp else "support@support.example"
    n = next(_n)
    rcpt = row.to_addr
    raw = _dsn(to, final or rcpt, status, original or row.message_id, n,
               original_recipient=rcpt if final else None, authenticated=authenticated)
    with transaction(desk.engine) as conn:
        store(conn, [Incoming("eml:/bounces", f"b{n}", raw, at, ReceivedSource.DATE_HEADER, False)], at)
    desk.process(at)


def test_verp_needs_our_mac() -> None:
    key = b"k" * 32
    addr = verp_address(key, "bounces@support.example", 42)
    assert parse_verp(key, "bounces@support.example", addr) == 42
    assert parse_verp(key, "bounces@support.example", addr.replace("+42-", "+43-")) is None
    assert parse_verp(b"x" * 32, "bounces@support.example", addr) is None


def test_5x_suppresses_only_when_repeated_over_two_days(sqlite_url: str, tmp_path: Path) -> None:
    desk = Desk(sqlite_url, tmp_path)
    desk.directory()
    rows = _sent(desk, ["alice@acme.example"])
    _bounce(desk, rows[0], "5.7.1", ny(2026, 11, 23, 10, 0))
    with desk.engine.connect() as conn:
        assert suppressed(conn) == []  # once: only an alert
    _bounce(desk, rows[0], "5.7.1", ny(2026, 11, 25, 11, 0))
    with desk.engine.connect() as conn:
        assert [r.address for r in suppressed(conn)] == ["alice@acme.example"]


def test_a_spike_of_hard_bounces_pauses_suppression(sqlite_url: str, tmp_path: Path) -> None:
    desk = Desk(sqlite_url, tmp_path, outgoing={"from_address": "support@support.example",
                                                "bounce_spike_per_hour": 5, "file_dir": str(tmp_path / "o")})
    senders = [f"p{i}@stranger{i}.example" for i in range(8)]
    desk.directory()
    rows = _sent(desk, senders)
    at = ny(2026, 11, 23, 10, 0)
    for i, row in enumerate(rows):
        _bounce(desk, row, "5.1.1", at + timedelta(minutes=i))
    with desk.engine.connect() as conn:
        listed = [r.address for r in suppressed(conn)]
    assert len(listed) == 5  # the sixth hard bounce within the hour is a spike: not suppressed


def test_a_bounce_naming_nothing_we_sent_changes_nothing(sqlite_url: str, tmp_path: Path) -> None:
    desk = Desk(sqlite_url, tmp_path)
    desk.directory()
    rows = _sent(desk, ["alice@acme.example"])
    row = rows[0]
    _bounce(desk, row, "5.1.1", ny(2026, 11, 23, 10, 0), via_verp=False, original="<forged@x.example>")
    with desk.engine.connect() as conn:
        assert suppressed(conn) == []
        assert conn.execute(sa.select(OUTBOX.c.status).where(OUTBOX.c.id == row.id)).scalar_one() == "sent"


def test_a_hard_bounce_through_an_alias_matches_by_original_recipient(sqlite_url: str, tmp_path: Path) -> None:
    desk = Desk(sqlite_url, tmp_path)
    desk.directory()
    row = _sent(desk, ["alice@acme.example"])[0]
    _bounce(desk, row, "5.1.1", ny(2026, 11, 23, 10, 0), final="alice.a@mailhost.acme.example")
    with desk.engine.connect() as conn:
        assert [r.address for r in suppressed(conn)] == ["alice@acme.example"]
        assert conn.execute(sa.select(OUTBOX.c.status).where(OUTBOX.c.id == row.id)).scalar_one() == "failed"


def test_a_report_neither_through_verp_nor_authenticated_suppresses_nobody(sqlite_url: str, tmp_path: Path) -> None:
    """It quotes our real Message-ID and names our recipient -- anyone who saw our mail can --
    but came to the intake address and its sender did not authenticate."""
    desk = Desk(sqlite_url, tmp_path)
    desk.directory()
    alice, bob = _sent(desk, ["alice@acme.example", "bob@globex.example"])
    _bounce(desk, alice, "5.1.1", ny(2026, 11, 23, 10, 0), via_verp=False)
    with desk.engine.connect() as conn:
        assert suppressed(conn) == []
        assert conn.execute(sa.select(OUTBOX.c.status).where(OUTBOX.c.id == alice.id)).scalar_one() == "sent"
    # the same report from an authenticated mail system counts
    _bounce(desk, bob, "5.1.1", ny(2026, 11, 23, 10, 5), via_verp=False, authenticated=True)
    with desk.engine.connect() as conn:
        assert [r.address for r in suppressed(conn)] == ["bob@globex.example"]
