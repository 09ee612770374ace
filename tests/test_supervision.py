"""Supervision and honest health (issue 12), against the real service.

A PostgreSQL outage through a proxy: intake resumes within 30 s of the
database's return without a restart, metrics say ``mailcase_database_up 0``
instead of failing, ``status`` exits 75, and a clean stop exits 0 after it.
A worker that hangs (a server that never answers) stops the watchdog and
``status`` says so; a port clash exits 78 naming the key.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from helpers import ImapAccount, make_mail, run_cli, write_config
from servers.dovecot import free_port
from servers.notify import NotifyListener
from servers.proxy import Proxy
from test_daemon import _wait

from mailcase.domain.db import open_engine
from mailcase.domain.tables import MESSAGE


def _daemon(cfg: Path, notify: NotifyListener, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "2000000"}
    env.pop("WATCHDOG_PID", None)
    return subprocess.Popen([sys.executable, "-m", "mailcase", *args, "--config", str(cfg), "run"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err


def _status(cfg: Path) -> tuple[int, dict[str, Any]]:
    done = run_cli("--config", str(cfg), "status", "--json", timeout=60)
    return done.returncode, json.loads(done.stdout)


@pytest.fixture
def pg_proxy(pg_url: str) -> Iterator[tuple[Proxy, str]]:
    proxy = Proxy(5432).start()
    yield proxy, pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    proxy.stop()


def test_database_outage_intake_resumes_without_restart(imap: ImapAccount, pg_url: str,
                                                       pg_proxy: tuple[Proxy, str], tmp_path: Path) -> None:
    proxy, url = pg_proxy
    metrics_port = free_port()
    cfg = write_config(tmp_path / "c.toml", url, [imap.mailbox_config(start_at="all")],
                       daemon={"stage_seconds": 1.0, "batch_seconds": 2.0, "deliver_seconds": 2.0,
                               "metrics_listen": f"127.0.0.1:{metrics_port}"})
    notify = NotifyListener(tmp_path / "notify.sock")
    proc = _daemon(cfg, notify, "-v")
    direct = open_engine(pg_url)

    def count(state: str | None = None) -> int:
        q = sa.select(sa.func.count()).select_from(MESSAGE)
        if state:
            q = q.where(MESSAGE.c.state == state)
        with direct.connect() as conn:
            return int(conn.execute(q).scalar_one())

    try:
        _wait(lambda: notify.count("READY=1") == 1, 30)
        imap.append(make_mail(1, subject="Before the outage"))
        _wait(lambda: count() == 1, 20)
        assert _status(cfg)[0] in (0, 1)  # running (a fresh desk may lack a sync past a cutoff)

        proxy.down()
        outage = time.monotonic()
        imap.append(make_mail(2, subject="During the outage"))
        imap.append(make_mail(3, subject="During the outage too"))
        time.sleep(3)
        code, st = _status(cfg)
        assert code == 75 and st["database"].startswith("unreachable")
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as resp:
            body = resp.read().decode()
        assert resp.status == 200 and "mailcase_database_up 0.0" in body
        assert 'mailcase_worker_alive{worker="mailbox:support"} 1.0' in body
        while time.monotonic() - outage < 20:  # a 20 s outage
            time.sleep(1)
        assert proc.poll() is None, "the daemon died with the database"
        # workers back off and retry; they are alive, so the watchdog is fed throughout
        assert notify.count("WATCHDOG=1", since=outage + 1) >= 8

        proxy.up()
        back = time.monotonic()
        took = _wait(lambda: count() == 3 and count("pending") == 3, 30)
        print(f"\noutage: 20 s; intake resumed {took:.1f} s after the database came back")
        assert took < 30, f"intake resumed {took:.1f} s after the database came back"
        assert proc.poll() is None, "the daemon restarted or died"
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as resp:
            assert "mailcase_database_up 1.0" in resp.read().decode()
        assert time.monotonic() - back < 40
    finally:
        failed = sys.exc_info()[0] is not None
        code, err = _stop(proc)
        notify.close()
        direct.dispose()
        if failed:
            print("the service's log:\n" + err[-20000:])
    assert code == 0, err[-3000:]
    assert "state=down" in err and "state=connected" in err
    # a repeating error is logged once, then with a count -- not once a second for 20 s
    waiting = [line for line in err.splitlines() if "event=job-waiting" in line]
    assert 1 <= len(waiting) <= 12, "\n".join(waiting)


class StalledServer:
    """A server that accepts connections and never says a word (a hung IMAP server)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


def test_a_hung_worker_stops_the_watchdog(imap: ImapAccount, sqlite_url: str, tmp_path: Path) -> None:
    stalled = StalledServer()
    hung = {"name": "hung", "kind": "imap", "host": "127.0.0.1", "port": stalled.port, "security": "plain",
            "username": "x", "password": {"file": str(imap.password_file)}, "timeout_seconds": 600.0}
    cfg = write_config(tmp_path / "c.toml", sqlite_url, [imap.mailbox_config(start_at="all"), hung],
                       daemon={"stage_seconds": 1.0, "worker_stale_seconds": 5.0})
    notify = NotifyListener(tmp_path / "notify.sock")
    proc = _daemon(cfg, notify)
    engine = open_engine(sqlite_url)
    try:
        _wait(lambda: notify.count("READY=1") == 1, 40)
        # the good mailbox goes on while the other hangs
        imap.append(make_mail(1))

        def stored() -> int:
            with engine.connect() as conn:  # a new snapshot each time
                return int(conn.execute(sa.select(sa.func.count()).select_from(MESSAGE)).scalar_one())

        _wait(lambda: stored() == 1, 20)
        _wait(lambda: any(m.startswith("STATUS=unhealthy") for _, m in notify.messages), 20)
        stopped = time.monotonic()
        time.sleep(4)
        assert notify.count("WATCHDOG=1", since=stopped) == 0, "the watchdog is still fed"
        code, st = _status(cfg)
        assert code == 3 and st["health"] == "not-running"
        assert any("mailbox hung" in p and "heartbeat" in p for p in st["problems"]), st["problems"]
    finally:
        _stop(proc)
        notify.close()
        stalled.close()


def test_metrics_port_clash_exits_78_naming_the_key(sqlite_url: str, tmp_path: Path) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        cfg = write_config(tmp_path / "c.toml", sqlite_url, [], daemon={"metrics_listen": f"127.0.0.1:{port}"})
        done = run_cli("--config", str(cfg), "run", timeout=60)
    finally:
        busy.close()
    assert done.returncode == 78
    lines = [line for line in done.stderr.splitlines() if line.startswith("mailcase:")]
    assert len(lines) == 1 and "daemon.metrics_listen" in lines[0] and str(port) in lines[0], done.stderr


def test_status_without_a_service_exits_3(sqlite_url: str, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", sqlite_url, [])
    code, st = _status(cfg)
    assert code == 3 and st["health"] == "not-running"
    assert st["problems"] == ["no mailcase service is running on this database"]
