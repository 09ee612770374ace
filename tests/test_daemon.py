"""`mailcase run` as ops run it: IDLE within 2 s, an IMAP outage survived, systemd notify, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import need_server
from helpers import ImapAccount, LogTail, make_mail, write_config
from servers.dovecot import Dovecot, dovecot_binary
from servers.notify import NotifyListener
from servers.smtp import SmtpSink

from mailcase.domain.db import open_engine
from mailcase.domain.tables import MESSAGE


@pytest.fixture
def own_dovecot() -> Iterator[Dovecot]:
    if not dovecot_binary():
        need_server("dovecot is not installed")
    server = Dovecot().start()
    yield server
    server.cleanup()


def _wait(cond: Any, timeout: float, step: float = 0.05) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if cond():
            return time.monotonic() - start
        time.sleep(step)
    raise AssertionError(f"not within {timeout} s")


def test_run_idle_outage_notify_and_sigterm(own_dovecot: Dovecot, pg_url: str, tmp_path: Path) -> None:
    user, password = own_dovecot.take_user()
    imap = ImapAccount(own_dovecot, user, password, tmp_path)
    sink = SmtpSink().start()
    cfg = write_config(
        tmp_path / "c.toml", pg_url, [imap.mailbox_config(start_at="all")],
        daemon={"reconnect_max_seconds": 2.0, "stage_seconds": 1.0, "batch_seconds": 2.0, "deliver_seconds": 2.0,
                "idle_silence_seconds": 20.0},
        outgoing={"from_address": "support@support.example", "transport": "smtp", "smtp_host": "127.0.0.1",
                  "smtp_port": sink.port, "smtp_security": "plain"},
    )
    notify = NotifyListener(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "2000000"}
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen([sys.executable, "-m", "mailcase", "-vv", "--config", str(cfg), "run"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    tail = LogTail(proc.stderr)
    engine = open_engine(pg_url)

    def stored() -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(MESSAGE)).scalar_one())

    try:
        _wait(lambda: notify.count("READY=1") == 1, 30)
        _wait(lambda: notify.count("WATCHDOG=1") >= 2, 10)
        tail.wait_for("event=idle", 20)
        imap.append(make_mail(1, subject="Under IDLE"))
        took = _wait(lambda: stored() == 1, 10)
        assert took < 2.0, f"stored {took:.2f} s after arriving"
        # IMAP outage: the daemon stays up (degraded), the watchdog keeps being fed
        imap.close()
        own_dovecot.stop()
        outage = time.monotonic()
        time.sleep(5)
        assert proc.poll() is None
        assert notify.count("WATCHDOG=1", since=outage) >= 2
        own_dovecot.start()
        imap.append(make_mail(2, subject="After the outage"))
        _wait(lambda: stored() == 2, 30)
        assert proc.poll() is None, "the daemon restarted or died"
        # SIGTERM: out within 10 s, exit 0
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
        assert code == 0 and time.monotonic() - t0 < 10
        assert notify.count("STOPPING=1") == 1
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        err = tail.text()
        notify.close()
        sink.stop()
        imap.close()

    assert "event=mailbox-state" in err and "state=down" in err and "state=connected" in err
    # logged once per state change, not once per retry
    assert err.count("state=down") <= 2, err
