"""Operations: status, check, retention and erasure, reload, metrics, the systemd unit."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa
from batching import Desk, ny
from helpers import ROOT, ImapAccount, LogTail, make_mail, reap, run_cli, terminate, write_config
from servers.dovecot import free_port
from test_daemon import _wait

from mailcase.domain.db import open_engine, transaction
from mailcase.domain.tables import BLOB, CASE, MESSAGE, OUTBOX, PARSED_MAIL
from mailcase.ops.retention import erase, purge, purgeable


def test_status_and_check_name_each_problem(imap: ImapAccount, tmp_path: Path, sqlite_url: str) -> None:
    good = imap.mailbox_config(name="good")
    bad_pw = tmp_path / "bad"
    bad_pw.write_text("nope")
    bad = imap.mailbox_config(name="badpass", password={"file": str(bad_pw)})
    gone = imap.mailbox_config(name="gone", port=free_port(), timeout_seconds=3.0)
    cfg = write_config(tmp_path / "c.toml", sqlite_url, [good, bad, gone])
    r = run_cli("--config", str(cfg), "check")
    assert r.returncode == 77  # the gravest: a login refused (the unreachable one is 75)
    lines = r.stdout.splitlines()
    assert any(line.startswith("ok   imap good: logged in as") and "IDLE" in line for line in lines)
    assert any(line.startswith("FAIL imap badpass: ") and "login failed" in line and "-- fix:" in line for line in lines)
    assert any(line.startswith("FAIL imap gone: ") and "Connection refused" in line for line in lines)
    assert any(line.startswith("ok   sender authentication: OFF (insecure-off)") for line in lines)
    r = run_cli("--config", str(cfg), "fetch")
    st = run_cli("--config", str(cfg), "status")
    # no service runs on this database: status says so, with exit 3 (LSB "not running")
    assert st.returncode == 3
    assert st.stdout.startswith("health: not-running\n  - no mailcase service is running on this database")
    assert "sender authentication: insecure-off: sender authentication is OFF" in st.stdout
    assert "mailbox good (imap)" in st.stdout and "next cutoff:" in st.stdout
    assert "outbox: 0 queued (0 deferred), 0 failed" in st.stdout


def test_purge_keeps_open_cases_and_counts(db_url: str, tmp_path: Path) -> None:
    desk = Desk(db_url, tmp_path)
    desk.directory()
    old_open = desk.mail(ny(2026, 1, 5, 8, 0), subject="Still open")
    old_closed = desk.mail(ny(2026, 1, 5, 8, 10), sender="bob@globex.example", subject="Closed long ago")
    desk.mail(ny(2026, 1, 5, 8, 20), sender="x@stranger.example", subject="Unknown")
    recent = desk.mail(ny(2026, 11, 2, 8, 0), subject="Recent")
    desk.process(ny(2026, 1, 5, 9, 31))
    desk.process(ny(2026, 11, 2, 9, 31))
    with transaction(desk.engine) as conn:
        conn.execute(sa.update(CASE).where(CASE.c.requester == "bob@globex.example").values(
            status="closed", closed_at=ny(2026, 2, 1, 10, 0)))
        before = ny(2026, 6, 1, 0, 0)
        ids = set(purgeable(conn, before))
        result = purge(conn, before)
    with desk.engine.connect() as conn:
        rows = {r.message_id: r.id for r in conn.execute(sa.select(MESSAGE.c.message_id, MESSAGE.c.id))}
        data = dict(conn.execute(sa.select(MESSAGE.c.message_id, BLOB.c.data).join(
            BLOB, BLOB.c.sha256 == MESSAGE.c.primary_sha256)).all())
        total = conn.execute(sa.select(sa.func.count()).select_from(MESSAGE)).scalar_one()
    assert rows[old_open] not in ids and rows[recent] not in ids and rows[old_closed] in ids
    assert result.messages == 2 and result.raw_bytes > 0  # the closed case's mail and the unknown sender's
    assert data[old_open] is not None and data[old_closed] is None
    assert total == 4  # counts stay


def test_erase_a_person(db_url: str, tmp_path: Path) -> None:
    desk = Desk(db_url, tmp_path)
    desk.directory()
    desk.mail(ny(2026, 11, 23, 8, 0), subject="My name is Alice and my phone is 555-0100",
              body="Call me at 555-0100\n")
    desk.mail(ny(2026, 11, 23, 8, 5), sender="bob@globex.example", subject="Bob's request")
    desk.process(ny(2026, 11, 23, 9, 31))
    with transaction(desk.engine) as conn:
        r = erase(conn, "alice@acme.example", ny(2026, 11, 24, 9, 0))
    assert (r.messages, r.cases, r.outbox) == (1, 1, 1)
    with desk.engine.connect() as conn:
        text = "\n".join(str(v) for row in conn.execute(
            sa.select(MESSAGE.c.from_addr, MESSAGE.c.subject, PARSED_MAIL.c.text_body)
            .join(PARSED_MAIL, PARSED_MAIL.c.message_pk == MESSAGE.c.id)) for v in row)
        outbox = conn.execute(sa.select(OUTBOX.c.to_addr, OUTBOX.c.raw)).all()
        cases = conn.execute(sa.select(sa.func.count()).select_from(CASE)).scalar_one()
    assert "alice" not in text.lower() and "555-0100" not in text and "bob@globex.example" in text
    assert all(b"alice" not in raw.lower() for _, raw in outbox)
    assert cases == 2


def _count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_sighup_reload_refuses_a_bad_config_and_metrics_answer(imap: ImapAccount, sqlite_url: str,
                                                               tmp_path: Path) -> None:
    port = free_port()
    cfg = write_config(tmp_path / "c.toml", sqlite_url, [imap.mailbox_config()],
                       daemon={"metrics_listen": f"127.0.0.1:{port}", "housekeeping_seconds": 2.0})
    proc = subprocess.Popen([sys.executable, "-m", "mailcase", "-v", "--config", str(cfg), "run"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    tail = LogTail(proc.stderr)
    try:
        body = ""
        for _ in range(100):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
                break
            except OSError:
                time.sleep(0.2)
        assert "mailcase_pending_mail" in body and 'mailcase_mailbox_up{mailbox="support"' in body
        good = cfg.read_text()
        cfg.write_text(good + "\n[bogus]\nx = 1\n")
        proc.send_signal(signal.SIGHUP)
        tail.wait_for("event=reload-refused", 20)
        cfg.write_text(good)
        imap.append(make_mail(1))
        engine = open_engine(sqlite_url)  # the running configuration still works: the mail is stored
        _wait(lambda: _count(engine, MESSAGE) == 1, 20)
        assert terminate(proc, 15) == 0
    finally:
        reap(proc)
        err = tail.text()
    refused = [line for line in err.splitlines() if "event=reload-refused" in line]
    assert len(refused) == 1 and "bogus: unknown key" in refused[0] and "keeping the running configuration" in refused[0]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None and not os.environ.get("CI"),
                    reason="systemd-analyze is not installed")
def test_systemd_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    unit = (ROOT / "systemd" / "mailcase.service").read_text()
    for forbidden in ("PrivateNetwork=yes", "IPAddressDeny=any"):
        assert forbidden not in unit  # IMAP, SMTP and PostgreSQL stay reachable
    for needed in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "RestartPreventExitStatus=78",
                   "User=mailcase", "StateDirectory=mailcase", "LoadCredential="):
        assert needed in unit
    security = subprocess.run(["systemd-analyze", "security", "--offline=yes",
                               str(ROOT / "systemd" / "mailcase.service")], capture_output=True, text=True)
    m = re.search(r"Overall exposure level for mailcase.service: ([0-9.]+)", security.stdout)
    assert m and float(m.group(1)) <= 2.0, security.stdout[-500:]
    # verify with ExecStart pointing at this checkout's installed command
    local = tmp_path / "mailcase.service"
    exe = Path(sys.executable).with_name("mailcase")
    local.write_text(unit.replace("/opt/mailcase/bin/mailcase", str(exe)))
    verify = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True)
    problems = [line for line in (verify.stdout + verify.stderr).splitlines()
                if "mailcase.service" in line and "Documentation" not in line]
    assert verify.returncode == 0 and not problems, verify.stderr
