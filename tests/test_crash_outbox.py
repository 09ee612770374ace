"""Delivery claims rows in groups: a crash in the middle of a group re-sends at most
the mail in flight, and the group's rows never handed to the server go out later."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from batching import Desk, ny
from helpers import write_config
from servers.smtp import SmtpSink

from mailcase.core.states import MailKind
from mailcase.domain.db import QuickCommits, transaction
from mailcase.domain.tables import OUTBOX
from mailcase.outbound.compose import OutgoingMail
from mailcase.outbound.deliver import GROUP, STALE_CLAIM, deliver_due
from mailcase.outbound.outbox import OutboxQueue
from mailcase.outbound.render import Rendered
from mailcase.outbound.transport import transport_for

N = GROUP + 50      # two groups
QUEUED_AT = ny(2026, 11, 23, 9, 31)


@dataclass
class KillingSink(SmtpSink):
    """Kills the sender while the ``kill_at``-th mail is in flight: the sink has it,
    the sender dies before it hears the 250 (so before it can record the mail)."""

    victim: int = 0
    kill_at: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if self.victim and len(self.received) == self.kill_at:
            os.kill(self.victim, signal.SIGKILL)
            time.sleep(0.2)  # dead before the reply is written
        return reply


def _queue(desk: Desk) -> None:
    with transaction(desk.engine) as conn:
        queue = OutboxQueue(conn, desk.config, desk.config.hmac_key(), QUEUED_AT)
        for i in range(N):
            queue.add(OutgoingMail(key=f"test:reply:{i}", kind=MailKind.REPLY, notice_kind=None,
                                   to_addr=f"p{i}@customer{i % 7}.example", to_name="",
                                   rendered=Rendered(f"About your request {i}", f"Answer {i}\n", f"<p>Answer {i}</p>")))
        queue.flush()


def _desk(db_url: str, tmp_path: Path, sink: SmtpSink) -> Desk:
    desk = Desk(db_url, tmp_path, outgoing={"from_address": "support@support.example", "transport": "smtp",
                                            "smtp_host": "127.0.0.1", "smtp_port": sink.port,
                                            "smtp_security": "plain"})
    _queue(desk)
    return desk


def _statuses(desk: Desk) -> Counter[str]:
    with desk.engine.connect() as conn:
        return Counter(dict(conn.execute(sa.select(OUTBOX.c.status, sa.func.count()).group_by(OUTBOX.c.status)).all()))


def test_sigkill_mid_group_resends_only_the_mail_in_flight(db_url: str, tmp_path: Path) -> None:
    kill_at = 30
    sink = KillingSink(kill_at=kill_at)
    sink.start()
    try:
        desk = _desk(db_url, tmp_path, sink)
        cfg = write_config(tmp_path / "c.toml", db_url, [], rules=desk.config.rules.model_dump(exclude_none=True),
                           outgoing=desk.config.outgoing.model_dump(exclude_none=True))
        clock = tmp_path / "clock"
        env = {**os.environ, "MAILCASE_TEST_CLOCK": str(clock)}
        deliver = [sys.executable, "-m", "mailcase", "--config", str(cfg), "outbox", "deliver"]
        at = ny(2026, 11, 23, 9, 35)
        clock.write_text(at.isoformat())
        proc = subprocess.Popen(deliver, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        sink.victim = proc.pid
        proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        sink.victim = 0
        # every mail the server accepted before the one in flight is recorded; the rest of the
        # claimed group (the one in flight among them) waits as a claim, the next group as queued
        assert _statuses(desk) == {"sent": kill_at - 1, "sending": GROUP - (kill_at - 1), "queued": N - GROUP}

        # a restart before the claim is stale sends the queued rows, not the claimed ones
        clock.write_text((at + STALE_CLAIM / 2).isoformat())
        done = subprocess.run(deliver, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert _statuses(desk) == {"sent": kill_at - 1 + N - GROUP, "sending": GROUP - (kill_at - 1)}

        clock.write_text((at + STALE_CLAIM + timedelta(minutes=1)).isoformat())
        done = subprocess.run(deliver, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert _statuses(desk) == {"sent": N}
        ids = Counter(r.message["Message-ID"] for r in sink.received)
        assert len(ids) == N and len(sink.received) == N + 1
        [(twice, n)] = [(m, n) for m, n in ids.items() if n > 1]
        assert n == 2 and twice == sink.received[kill_at - 1].message["Message-ID"]  # the one in flight
    finally:
        sink.stop()


def test_a_failed_mark_mid_group_sends_nothing_twice_and_frees_the_rest(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database fails as a mail's "sent" is written: that mail is recorded by the next
    run, the group's rows not handed over are queued again at once (no stale-claim wait)."""
    sink = SmtpSink().start()
    try:
        desk = _desk(db_url, tmp_path, sink)
        fail_at = 20
        calls = {"n": 0}
        real = QuickCommits.transaction

        def failing(self: QuickCommits, durable: bool = False) -> Any:
            calls["n"] += 1
            if calls["n"] == fail_at:
                raise sa.exc.OperationalError("UPDATE outbox", {}, Exception("database is locked"))
            return real(self, durable)

        monkeypatch.setattr(QuickCommits, "transaction", failing)
        at = ny(2026, 11, 23, 9, 35)
        with pytest.raises(sa.exc.OperationalError):
            deliver_due(desk.engine, transport_for(desk.config), at, desk.config)
        assert len(sink.received) == fail_at
        with desk.engine.connect() as conn:
            rows = {r.id: r for r in conn.execute(sa.select(OUTBOX).order_by(OUTBOX.c.id))}
        by_status = Counter(r.status for r in rows.values())
        # the mail whose mark failed waits to be recorded; the next one had only its MAIL FROM out
        assert by_status == {"sent": fail_at - 1, "sending": 1, "queued": N - fail_at}
        assert all(r.attempts == 0 and r.claimed_at is None for r in rows.values() if r.status == "queued")

        monkeypatch.setattr(QuickCommits, "transaction", real)
        result = deliver_due(desk.engine, transport_for(desk.config), at, desk.config)
        assert result.sent == N - fail_at and _statuses(desk) == {"sent": N}
        ids = Counter(r.message["Message-ID"] for r in sink.received)
        assert len(ids) == N == len(sink.received)  # nothing twice
    finally:
        sink.stop()


def test_rows_claimed_but_not_sent_when_the_budget_ends_are_released(db_url: str, tmp_path: Path) -> None:
    sink = SmtpSink().start()
    try:
        desk = _desk(db_url, tmp_path, sink)
        at: datetime = ny(2026, 11, 23, 9, 35)
        transport = transport_for(desk.config)  # kept open between the calls
        first = deliver_due(desk.engine, transport, at, desk.config, budget=0.0)
        assert first.sent == 1 and first.more  # at least one mail per call
        assert _statuses(desk) == {"sent": 1, "queued": N - 1}
        rest = deliver_due(desk.engine, transport, at, desk.config)
        assert rest.sent == N - 1 and not rest.more and len(sink.received) == N
    finally:
        sink.stop()


def test_a_kept_connection_the_server_closed_is_opened_again(db_url: str, tmp_path: Path) -> None:
    """Between groups or slices the server may drop the session (idle timeout, restart): the
    next mail goes out on a new connection instead of being deferred."""
    sink = SmtpSink().start()
    try:
        desk = _desk(db_url, tmp_path, sink)
        at = ny(2026, 11, 23, 9, 35)
        transport = transport_for(desk.config)
        first = deliver_due(desk.engine, transport, at, desk.config, budget=0.0)
        assert first.sent == 1 and first.more  # the connection is kept for the next call
        sink.refuse()  # the server goes away and comes back: the kept session is gone
        sink.accept()
        rest = deliver_due(desk.engine, transport, at, desk.config)
        assert (rest.sent, rest.retried, rest.failed) == (N - 1, 0, 0)
        assert _statuses(desk) == {"sent": N} and len(sink.received) == N
    finally:
        sink.stop()
