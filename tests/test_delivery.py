"""End to end through a real Dovecot and a real SMTP sink: what leaves, when, and only once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from batching import AUTH, DIRECTORY, MovingClock, ny
from helpers import ImapAccount, body_text, config, make_mail, write_config
from servers.smtp import SmtpSink

from mailcase.domain.db import open_engine
from mailcase.domain.tables import CASE, OUTBOX
from mailcase.ops.daemon import run_pass
from mailcase.outbound.bounces import suppressed


@pytest.fixture
def sink() -> Any:
    s = SmtpSink().start()
    yield s
    s.stop()


def _auth(sender: str) -> dict[str, str]:
    name, value = AUTH
    return {name: value.format(d=sender.rpartition("@")[2])}


class Site:
    """mailcase with an IMAP inbox, the SMTP sink, a directory and a moving clock."""

    def __init__(self, imap: ImapAccount, sink: SmtpSink, db_url: str, tmp: Path, **extra: Any) -> None:
        csv = tmp / "accounts.csv"
        csv.write_text(DIRECTORY)
        self.imap, self.sink = imap, sink
        sections: dict[str, Any] = {
            "rules": {"sender_authentication": "authserv-id", "authserv_id": "mx.support.example"},
            "outgoing": {"from_address": "support@support.example", "transport": "smtp",
                         "smtp_host": "127.0.0.1", "smtp_port": sink.port, "smtp_security": "plain",
                         **extra.pop("outgoing", {})},
            "directory": {"csv": str(csv), "effective": "2025-01-01T00:00:00+00:00"},
            **extra,
        }
        self.config = config(db_url, tmp, [imap.mailbox_config(start_at="all", post_action="seen")], **sections)
        self.engine = open_engine(self.config.database_url)
        self.clock = MovingClock(ny(2026, 11, 23, 7, 0))
        self.n = 0

    def mail(self, at: Any, sender: str = "alice@acme.example", **kw: Any) -> str:
        self.n += 1
        headers = {**(_auth(sender) if kw.pop("authenticated", True) else {}), **kw.pop("headers", {})}
        msgid = kw.pop("msgid", None) or f"<site{self.n}.{id(self)}@{sender.rpartition('@')[2]}>"
        self.imap.append(make_mail(self.n, sender=sender, date=at, msgid=msgid, headers=headers, **kw), when=at)
        return msgid

    def run(self, at: Any) -> Any:
        self.clock.at = at
        return run_pass(self.engine, self.config, self.clock)

    def rows(self, q: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(q).all())


def test_end_to_end_acks_notices_threading_and_envelope(imap: ImapAccount, sink: SmtpSink, db_url: str,
                                                       tmp_path: Path) -> None:
    site = Site(imap, sink, db_url, tmp_path)
    a1 = site.mail(ny(2026, 11, 23, 8, 0), subject="Invoices do not print")
    a2 = site.mail(ny(2026, 11, 23, 8, 10), subject="Reports are empty")
    b1 = site.mail(ny(2026, 11, 23, 8, 20), sender="bob@globex.example", subject="Export fails")
    site.mail(ny(2026, 11, 23, 8, 30), sender="erin@acme.example", subject="Please reset my password")
    site.mail(ny(2026, 11, 23, 8, 40), sender="who@stranger.example", subject="Trial version?")
    site.mail(ny(2026, 11, 23, 8, 50), sender="forged@stranger.example", subject="Wire money", authenticated=False)
    first = site.run(ny(2026, 11, 23, 9, 0))
    assert first.syncs[0].tally.new == 6 and sink.received == []  # nothing before the cutoff
    site.run(ny(2026, 11, 23, 9, 31))
    by_rcpt = Counter(r.rcpt_tos[0] for r in sink.received)
    assert by_rcpt == {"alice@acme.example": 2, "bob@globex.example": 1, "erin@acme.example": 1,
                       "who@stranger.example": 1}
    # one acknowledgement per case, each naming the other, each in its case's thread
    acks = {str(r.message["In-Reply-To"]): r.message for r in sink.to("alice@acme.example")}
    assert set(acks) == {a1, a2}
    msg = acks[a1]
    text = body_text(msg)
    assert msg["Subject"].startswith("[Case #000001]") and "[Case #000002]" in text
    assert acks[a2]["Subject"].startswith("[Case #000002]")
    assert msg["In-Reply-To"] == a1 and a1 in msg["References"]
    assert msg["Auto-Submitted"] == "auto-replied" and msg["X-Auto-Response-Suppress"] == "All"
    row = site.rows(sa.select(OUTBOX).where(OUTBOX.c.to_addr == "alice@acme.example", OUTBOX.c.case_id == 1))[0]
    ack = next(r for r in sink.to("alice@acme.example") if str(r.message["In-Reply-To"]) == a1)
    assert ack.mail_from == row.envelope_from
    assert ack.mail_from.startswith(f"bounces+{row.id}-") and ack.mail_from.endswith("@support.example")
    assert msg["Message-ID"] == row.message_id and row.status == "sent"
    bob = sink.to("bob@globex.example")[0].message
    assert bob["In-Reply-To"] == b1 and bob["Subject"].startswith("[Case #000003]")
    # the customer replies to the acknowledgement: a follow-up, no new acknowledgement
    reply = site.mail(ny(2026, 11, 23, 10, 0), subject="Re: [Case #000001] Invoices do not print",
                      headers={"In-Reply-To": row.message_id, "References": f"{a1} {row.message_id}"},
                      body="It also happens with the PDF printer.\n")
    site.run(ny(2026, 11, 23, 10, 1))
    site.run(ny(2026, 11, 23, 15, 31))
    assert len(sink.to("alice@acme.example")) == 2  # the follow-up earned no third
    from batching import Desk  # noqa: F401  (shared helpers)
    cases = site.rows(sa.select(CASE.c.number, CASE.c.status).order_by(CASE.c.number))
    assert [c.status for c in cases] == ["acknowledged"] * 3
    from mailcase.domain.tables import CASE_MESSAGE, MESSAGE

    attached = site.rows(sa.select(CASE.c.number, CASE_MESSAGE.c.role)
                         .join(CASE_MESSAGE, CASE_MESSAGE.c.case_id == CASE.c.id)
                         .join(MESSAGE, MESSAGE.c.id == CASE_MESSAGE.c.message_pk)
                         .where(MESSAGE.c.message_id == reply))
    assert [tuple(r) for r in attached] == [(1, "follow-up")]
    assert a2  # used above through the ack's case list


def test_smtp_faults_nothing_lost_nothing_twice(imap: ImapAccount, sink: SmtpSink, db_url: str,
                                                tmp_path: Path) -> None:
    site = Site(imap, sink, db_url, tmp_path)
    senders = ["alice@acme.example", "bob@globex.example", "who@stranger.example", "dave@umbrella.example"]
    for i, s in enumerate(senders):
        site.mail(ny(2026, 11, 23, 8, i), sender=s, subject=f"Request {i}")
    sink.refuse()
    site.run(ny(2026, 11, 23, 9, 31))
    queued = site.rows(sa.select(OUTBOX.c.status, OUTBOX.c.attempts, OUTBOX.c.last_error))
    assert len(queued) == 4 and all(r.status == "queued" and r.attempts == 1 for r in queued)
    assert all("cannot connect" in r.last_error for r in queued)
    sink.accept()
    sink.tempfail = True
    site.run(ny(2026, 11, 23, 9, 40))  # past the first backoff: 451 now
    assert sink.received == []
    assert all("451" in r.last_error for r in site.rows(sa.select(OUTBOX.c.last_error)))
    sink.tempfail = False
    sink.reject = {"bob@globex.example"}
    site.run(ny(2026, 11, 23, 12, 0))  # hours later: everything due again
    site.run(ny(2026, 11, 23, 14, 0))
    assert sorted(r.rcpt_tos[0] for r in sink.received) == [
        "alice@acme.example", "dave@umbrella.example", "who@stranger.example"]
    statuses = dict(site.rows(sa.select(OUTBOX.c.to_addr, OUTBOX.c.status)))
    assert statuses["bob@globex.example"] == "failed"
    assert {v for k, v in statuses.items() if k != "bob@globex.example"} == {"sent"}
    site.run(ny(2026, 11, 24, 14, 0))
    assert len(sink.received) == 3  # and nothing twice


def test_sender_killed_mid_delivery_sends_no_duplicate_beyond_the_window(
    sink: SmtpSink, db_url: str, tmp_path: Path
) -> None:
    from batching import Desk

    desk = Desk(db_url, tmp_path, outgoing={"from_address": "support@support.example", "transport": "smtp",
                                            "smtp_host": "127.0.0.1", "smtp_port": sink.port,
                                            "smtp_security": "plain", "daily_cap_per_address": 1000})
    desk.directory()
    for i in range(150):
        desk.mail(ny(2026, 11, 23, 7, 0) + timedelta(seconds=i), sender=f"p{i}@stranger{i}.example",
                  subject=f"Who are you {i}")
    desk.process(ny(2026, 11, 23, 9, 31))
    total = len(desk.outbox())
    assert total == 150
    cfg = write_config(tmp_path / "c.toml", db_url, [], rules=desk.config.rules.model_dump(exclude_none=True),
                       outgoing=desk.config.outgoing.model_dump(exclude_none=True))
    clock = tmp_path / "clock"
    env = {**os.environ, "MAILCASE_TEST_CLOCK": str(clock)}
    kills = 0
    for minute in (0, 20, 40):
        clock.write_text((ny(2026, 11, 23, 9, 35) + timedelta(minutes=minute)).isoformat())
        proc = subprocess.Popen([sys.executable, "-m", "mailcase", "--config", str(cfg), "outbox", "deliver"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        start = len(sink.received)
        deadline = time.monotonic() + 30
        while proc.poll() is None and len(sink.received) < start + 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    clock.write_text(ny(2026, 11, 23, 11, 0).isoformat())
    done = subprocess.run([sys.executable, "-m", "mailcase", "--config", str(cfg), "outbox", "deliver"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    ids = Counter(r.message["Message-ID"] for r in sink.received)
    assert len(ids) == total  # every due mail delivered
    duplicates = sum(n - 1 for n in ids.values())
    # the one window: the server took the mail, the sender died before recording it
    assert kills >= 2, "the sender finished before it could be killed"
    assert duplicates <= kills, f"{duplicates} duplicates after {kills} kills"
    assert {r.status for r in desk.outbox()} == {"sent"}


def test_auto_reply_peer_gets_nothing_after_the_first(imap: ImapAccount, sink: SmtpSink, db_url: str,
                                                      tmp_path: Path) -> None:
    site = Site(imap, sink, db_url, tmp_path)
    site.mail(ny(2026, 11, 23, 8, 0), sender="robot@peer.example", subject="Hello support")
    site.run(ny(2026, 11, 23, 9, 31))
    assert len(sink.to("robot@peer.example")) == 1
    at = ny(2026, 11, 23, 10, 0)
    for round_ in range(6):
        last = sink.to("robot@peer.example")[-1].message
        with_header = round_ % 2 == 0
        site.mail(at, sender="robot@peer.example", subject=f"Re: {last['Subject']}",
                  headers={"In-Reply-To": last["Message-ID"],
                           **({"Auto-Submitted": "auto-replied"} if with_header else {})},
                  body="Thank you for your mail. This is an automatic reply.\n")
        at += timedelta(hours=3)
        site.run(at)
    # with Auto-Submitted: suppressed; without: a new unknown-sender mail whose notice
    # is withheld (one per kind per 7 days) -- either way no second mail
    assert len(sink.to("robot@peer.example")) == 1


def test_reprocessing_1000_old_mails_sends_nothing(sink: SmtpSink, db_url: str, tmp_path: Path) -> None:
    import mailbox

    from mailcase.ingest.reprocess import ReprocessRequest, reprocess

    box = mailbox.mbox(str(tmp_path / "old.mbox"))
    senders = ["alice@acme.example", "who@stranger.example", "erin@acme.example", "bob@globex.example"]
    for i in range(1000):
        s = senders[i % 4]
        box.add(make_mail(i, sender=s, date=ny(2025, 6, 2, 8, 0) + timedelta(hours=i), headers=_auth(s)))
    box.close()
    site_cfg = config(db_url, tmp_path, [], rules={"sender_authentication": "authserv-id",
                                                  "authserv_id": "mx.support.example"},
                      outgoing={"from_address": "support@support.example", "transport": "smtp",
                                "smtp_host": "127.0.0.1", "smtp_port": sink.port, "smtp_security": "plain"})
    engine = open_engine(site_cfg.database_url)
    _, tally = reprocess(engine, site_cfg, ReprocessRequest(str(tmp_path / "old.mbox")), ny(2026, 11, 23, 7, 0))
    assert (tally.new, tally.historical) == (1000, 1000)
    run = run_pass(engine, site_cfg, MovingClock(ny(2026, 11, 23, 16, 0)))
    assert run.classified.done == 1000
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(OUTBOX)).scalar_one() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(CASE)).scalar_one() == 0
    assert sink.received == []


def test_bounces_match_and_suppress_forged_ones_do_not(imap: ImapAccount, sink: SmtpSink, db_url: str,
                                                       tmp_path: Path) -> None:
    site = Site(imap, sink, db_url, tmp_path)
    site.mail(ny(2026, 11, 23, 8, 0), subject="Printer jam")
    site.mail(ny(2026, 11, 23, 8, 5), sender="bob@globex.example", subject="Export")
    site.run(ny(2026, 11, 23, 9, 31))
    ack = site.rows(sa.select(OUTBOX).where(OUTBOX.c.to_addr == "alice@acme.example"))[0]
    forged = _dsn("bob@globex.example", "5.1.1", "<made-up@support.example>", to="support@support.example")
    real = _dsn("alice@acme.example", "5.1.1", ack.message_id, to=ack.envelope_from)
    site.imap.append(forged)
    site.imap.append(real)
    site.run(ny(2026, 11, 23, 10, 0))
    with site.engine.connect() as conn:
        listed = [r.address for r in suppressed(conn)]
    assert listed == ["alice@acme.example"]
    assert site.rows(sa.select(OUTBOX.c.status).where(OUTBOX.c.id == ack.id))[0][0] == "failed"
    # later mail to a suppressed address is kept, not sent
    site.mail(ny(2026, 11, 23, 11, 0), subject="Another question")
    site.run(ny(2026, 11, 23, 15, 31))
    later = site.rows(sa.select(OUTBOX.c.status, OUTBOX.c.status_reason).where(
        OUTBOX.c.to_addr == "alice@acme.example", OUTBOX.c.id != ack.id))
    assert [r.status for r in later] == ["suppressed"] and "hard bounce 5.1.1" in later[0].status_reason
    assert len(sink.to("alice@acme.example")) == 1


def _dsn(recipient: str, status: str, original_id: str, to: str) -> bytes:
    return f"""Return-Path: <>
From: Mail Delivery System <MAILER-DAEMON@mx.support.example>
To: {to}
Subject: Undelivered Mail Returned to Sender
Date: Mon, 23 Nov 2026 09:50:00 -0500
Message-ID: <dsn.{abs(hash((recipient, original_id)))}@mx.support.example>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

Your message could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.support.example

Final-Recipient: rfc822; {recipient}
Action: failed
Status: {status}

--B
Content-Type: text/rfc822-headers

From: Support <support@support.example>
To: {recipient}
Message-ID: {original_id}

--B--
""".replace("\n", "\r\n").encode()
