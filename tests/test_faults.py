"""Faults, each ending with nothing lost: IMAP cut mid-FETCH and mid-IDLE, SMTP down for
hours of test-clock time, SQLite locked, PostgreSQL restarted under the daemon."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from batching import Desk, ny
from conftest import IN_CI
from helpers import ImapAccount, LogTail, config, make_mail, write_config
from servers.postgres import PrivateCluster
from servers.proxy import Proxy
from servers.smtp import SmtpSink
from test_daemon import _wait
from test_fetch_imap import NOW

from mailcase.core.errors import TransientError
from mailcase.domain.db import open_engine
from mailcase.domain.tables import MESSAGE, OUTBOX, RAW_COPY
from mailcase.ingest.fetch import sync_imap
from mailcase.outbound.deliver import deliver_due
from mailcase.outbound.transport import transport_for


@pytest.fixture
def proxy(imap: ImapAccount) -> Iterator[Proxy]:
    p = Proxy(imap.server.port).start()
    yield p
    p.stop()


def _count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_imap_cut_mid_fetch_loses_nothing(imap: ImapAccount, proxy: Proxy, db_url: str, tmp_path: Path) -> None:
    imap.append_many([make_mail(i, body="x" * 20_000 + "\n") for i in range(300)])
    cfg = config(db_url, tmp_path, [imap.mailbox_config(port=proxy.port, post_action="move", move_to="Done",
                                                        fetch_chunk_count=40)])
    engine = open_engine(cfg.database_url)
    proxy.cut_after = 3_000_000  # about half way through the bodies
    with pytest.raises(TransientError):
        sync_imap(engine, cfg.mailboxes[0], NOW)
    partial = _count(engine, MESSAGE)
    assert 0 < partial < 300 and proxy.cuts >= 1
    sync_imap(engine, cfg.mailboxes[0], NOW + timedelta(minutes=1))
    assert (_count(engine, MESSAGE), _count(engine, RAW_COPY)) == (300, 300)
    assert imap.uids("INBOX") == [] and len(imap.uids("Done")) == 300


def test_imap_cut_mid_idle_reconnects(imap: ImapAccount, proxy: Proxy, sqlite_url: str, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", sqlite_url, [imap.mailbox_config(port=proxy.port)],
                       daemon={"reconnect_max_seconds": 1.0})
    proc = subprocess.Popen([sys.executable, "-m", "mailcase", "-vv", "--config", str(cfg), "run"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    engine = open_engine(sqlite_url)
    try:
        tail = LogTail(proc.stderr)
        imap.append(make_mail(1))
        _wait(lambda: _count(engine, MESSAGE) == 1, 30)
        tail.wait_for("event=idle", 20)
        proxy.cut_all()
        imap.append(make_mail(2))
        _wait(lambda: _count(engine, MESSAGE) == 2, 20)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        err = tail.text()

    assert proc.returncode == 0
    assert "state=down" in err and err.count("state=connected") >= 2


def test_smtp_down_for_hours_of_test_clock(sqlite_url: str, tmp_path: Path) -> None:
    sink = SmtpSink().start()
    try:
        desk = Desk(sqlite_url, tmp_path, outgoing={"from_address": "support@support.example", "transport": "smtp",
                                                    "smtp_host": "127.0.0.1", "smtp_port": sink.port,
                                                    "smtp_security": "plain"})
        desk.directory()
        for i, s in enumerate(["alice@acme.example", "bob@globex.example", "x@stranger.example"]):
            desk.mail(ny(2026, 11, 23, 8, i), sender=s, subject=f"Request {i}")
        desk.process(ny(2026, 11, 23, 9, 31))
        sink.refuse()
        at = ny(2026, 11, 23, 9, 31)
        attempts_seen = []
        for _ in range(12):  # six hours of test-clock time, every half hour
            deliver_due(desk.engine, transport_for(desk.config), at, desk.config)
            attempts_seen.append(max(r.attempts for r in desk.outbox()))
            at += timedelta(minutes=30)
        assert {r.status for r in desk.outbox()} == {"queued"}
        assert attempts_seen[-1] < 12  # backoff: fewer attempts than passes, capped at an hour apart
        sink.accept()
        deliver_due(desk.engine, transport_for(desk.config), at + timedelta(hours=1), desk.config)
        assert {r.status for r in desk.outbox()} == {"sent"}
        assert len(sink.received) == 3
        deliver_due(desk.engine, transport_for(desk.config), at + timedelta(hours=3), desk.config)
        assert len(sink.received) == 3
    finally:
        sink.stop()


def test_sqlite_locked_is_a_clear_transient_error_then_heals(imap: ImapAccount, tmp_path: Path) -> None:
    db = tmp_path / "locked.db"
    url = f"sqlite:///{db}"
    imap.append_many([make_mail(i) for i in range(20)])
    cfg = config(url, tmp_path, [imap.mailbox_config()], database={"url": url, "busy_timeout_seconds": 0.5})
    engine = open_engine(url, 0.5)
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    with pytest.raises(TransientError, match="database: database is locked"):
        sync_imap(engine, cfg.mailboxes[0], NOW)
    released = threading.Timer(0.3, lambda: holder.execute("ROLLBACK"))
    released.start()
    time.sleep(0.5)
    sync_imap(engine, cfg.mailboxes[0], NOW)
    holder.close()
    assert (_count(engine, MESSAGE), _count(engine, RAW_COPY)) == (20, 20)


@pytest.fixture
def private_pg() -> Iterator[PrivateCluster]:
    try:
        cluster = PrivateCluster().start()
    except Exception as exc:  # no server binaries: in CI a failure, elsewhere a skip
        if IN_CI:
            pytest.fail(f"cannot start a private PostgreSQL: {exc}")
        pytest.skip(f"cannot start a private PostgreSQL: {exc}")
    yield cluster
    cluster.cleanup()


def test_postgresql_restarted_under_the_daemon(imap: ImapAccount, private_pg: PrivateCluster, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", private_pg.url, [imap.mailbox_config()],
                       daemon={"reconnect_max_seconds": 1.0, "stage_seconds": 1.0})
    proc = subprocess.Popen([sys.executable, "-m", "mailcase", "-vv", "--config", str(cfg), "run"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ})
    engine = open_engine(private_pg.url)

    def stored() -> int:
        try:
            return _count(engine, MESSAGE)
        except Exception:
            return -1

    try:
        imap.append(make_mail(1))
        _wait(lambda: stored() == 1, 30)
        private_pg.restart()
        imap.append(make_mail(2))
        imap.append(make_mail(3))
        _wait(lambda: stored() == 3, 60)
        with engine.connect() as conn:
            parsed = conn.execute(sa.select(sa.func.count()).where(MESSAGE.c.state != "headers-read")).scalar_one()
        _wait(lambda: stored() == 3 and parsed >= 0, 5)
        assert proc.poll() is None, "the daemon died with the database"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
        engine.dispose()
    assert _count(engine, MESSAGE) == 3
    assert _count(engine, OUTBOX) == 0
