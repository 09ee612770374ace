"""`mailcase check` is read-only and passes on the demo; its fixes for secrets suit who runs it; `status` shows SMTP failing."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from batching import Desk, ny
from helpers import ROOT, run_cli, write_config
from servers.smtp import SmtpSink

from mailcase.config.credentials import Secret
from mailcase.config.loader import DEMO_MAILDIR, load_config
from mailcase.core.clock import process_clock
from mailcase.domain.db import current_revision, head_revision, make_engine, transaction, upgrade
from mailcase.domain.tables import LEASE, OUTBOX
from mailcase.ingest.sources import FileKind, detect, maildir_files
from mailcase.ops import secretcheck
from mailcase.ops.check import run_checks
from mailcase.ops.secretcheck import check_secret, secret_fix
from mailcase.ops.status import EXIT_DEGRADED
from mailcase.outbound.deliver import deliver_due
from mailcase.outbound.transport import transport_for


def _tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def test_check_on_the_embedded_demo_passes_and_creates_nothing(tmp_path: Path) -> None:
    demo_before = _tree(DEMO_MAILDIR)
    r = run_cli("--demo", "check", cwd=tmp_path, env={"HOME": str(tmp_path)})
    assert r.returncode == 0, r.stdout + r.stderr
    data = tmp_path / "mailcase-data"
    assert f"ok   database: no database yet at {data / 'mailcase.db'}: `mailcase run` or `mailcase db upgrade` " \
           "creates it" in r.stdout
    assert "ok   maildir sample:" in r.stdout and "ok   secrets.hmac_key: demo key" in r.stdout
    assert "FAIL" not in r.stdout
    assert list(tmp_path.iterdir()) == []  # no data folder, no database, no key
    assert _tree(DEMO_MAILDIR) == demo_before  # no cur/ or tmp/ made in the package


def test_a_fresh_copy_of_the_demo_maildir_without_cur_and_tmp(tmp_path: Path) -> None:
    maildir = tmp_path / "demo" / "maildir"
    shutil.copytree(ROOT / "mailcase" / "demo" / "maildir" / "new", maildir / "new")
    assert not (maildir / "cur").exists() and not (maildir / "tmp").exists()  # as git has it
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/data/mailcase.db",
                       [{"name": "sample", "kind": "maildir", "path": str(maildir), "start_at": "all"}],
                       outgoing={"from_address": "support@support.example", "file_dir": str(tmp_path / "out")})
    r = run_cli("--config", str(cfg), "check", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"ok   maildir sample: {maildir}" in r.stdout
    assert not (maildir / "cur").exists() and not (maildir / "tmp").exists()
    assert not (tmp_path / "data").exists() and not (tmp_path / "out").exists()
    # the reader takes it as it is
    assert detect(maildir) is FileKind.MAILDIR and len(list(maildir_files(maildir))) == len(list((maildir / "new").iterdir()))
    assert not (maildir / "cur").exists()


def test_check_opens_an_old_database_read_only_and_says_what_upgrade_would_do(tmp_path: Path) -> None:
    db = tmp_path / "data" / "mailcase.db"
    url = f"sqlite:///{db}"
    engine = make_engine(url)
    upgrade(engine, "0007")
    engine.dispose()
    stamp = db.stat().st_mtime_ns
    cfg = write_config(tmp_path / "c.toml", url, [],
                       outgoing={"from_address": "support@support.example", "file_dir": str(tmp_path / "out")})
    r = run_cli("--config", str(cfg), "check")
    assert r.returncode == 78  # the schema is a configuration matter
    line = next(x for x in r.stdout.splitlines() if x.startswith("FAIL database:"))
    assert f"schema 0007, this mailcase needs {head_revision()}; `mailcase db upgrade` would apply 0008: " in line
    assert "-- fix: run `mailcase db upgrade`" in line
    engine = make_engine(url)
    assert current_revision(engine) == "0007" and db.stat().st_mtime_ns == stamp


def test_an_empty_database_file_is_reported_not_filled(tmp_path: Path) -> None:
    db = tmp_path / "mailcase.db"
    db.touch()
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{db}", [],
                       outgoing={"from_address": "support@support.example", "file_dir": str(tmp_path / "out")})
    r = run_cli("--config", str(cfg), "check")
    assert "ok   database: empty: `mailcase run` or `mailcase db upgrade` creates the schema" in r.stdout
    assert db.stat().st_size == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="the root case needs root")
def test_as_root_a_secret_the_service_user_cannot_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = tmp_path / "hmac-key"
    key.write_text("k" * 40)
    key.chmod(0o600)  # root's own: root reads it, the service would not
    monkeypatch.setattr(secretcheck, "SERVICE_USER", "nobody")
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/m.db", [],
                       secrets={"hmac_key": {"file": str(key)}},
                       outgoing={"from_address": "support@support.example", "file_dir": str(tmp_path / "out")})
    checks = {c.what: c for c in run_checks(load_config(cfg), process_clock())}
    hmac = checks["secrets.hmac_key"]
    assert not hmac.ok and "readable by root, not by the service user nobody" in hmac.detail
    assert f"chown nobody: {key}" in hmac.fix and f"LoadCredential=hmac-key:{key}" in hmac.fix
    assert "chmod 600" in hmac.fix
    # a credential asked for outside systemd: how the unit loads it and how to check by hand
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    ok, detail, fix = check_secret("outgoing.smtp_password", Secret(credential="smtp-password"), "nobody")
    assert not ok and "LoadCredential=smtp-password:/etc/mailcase/credentials/smtp-password" in fix
    assert "sudo -u nobody env CREDENTIALS_DIRECTORY=/etc/mailcase/credentials" in fix


def test_a_normal_user_is_told_to_chmod_their_own_file(tmp_path: Path) -> None:
    key = tmp_path / "hmac-key"
    key.write_text("k" * 40)
    owner = pwd.getpwuid(key.stat().st_uid).pw_name
    fix = secret_fix(Secret(file=str(key)), "secrets.hmac_key", 1000, owner, "mailcase")
    assert fix.startswith(f"chmod 600 {key}") and "chown" not in fix
    fix = secret_fix(Secret(file=str(key)), "secrets.hmac_key", 1000, "someone-else", "mailcase")
    assert f"chown someone-else: {key}" in fix
    gone = tmp_path / "nothing"
    fix = secret_fix(Secret(file=str(gone)), "secrets.hmac_key", 1000, owner, "mailcase")
    assert fix == f"create it: head -c 32 /dev/urandom | base64 > {gone}; chmod 600 {gone}"
    assert "chown mailcase:" in secret_fix(Secret(file=str(gone)), "secrets.hmac_key", 0, "root", "mailcase")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_secret_of_a_normal_user(tmp_path: Path) -> None:
    key = tmp_path / "hmac-key"
    key.write_text("k" * 40)
    key.chmod(0)
    ok, detail, fix = check_secret("secrets.hmac_key", Secret(file=str(key)))
    assert not ok and "Permission denied" in detail and fix.startswith(f"chmod 600 {key}")


@pytest.fixture
def sink() -> Any:
    s = SmtpSink().start()
    yield s
    s.stop()


def test_status_shows_smtp_failing(sink: SmtpSink, sqlite_url: str, tmp_path: Path) -> None:
    outgoing = {"from_address": "support@support.example", "transport": "smtp", "smtp_host": "127.0.0.1",
                "smtp_port": sink.port, "smtp_security": "plain"}
    desk = Desk(sqlite_url, tmp_path, outgoing=outgoing)
    desk.directory()
    desk.mail(ny(2026, 11, 23, 8, 0), subject="Printer on fire")
    desk.mail(ny(2026, 11, 23, 8, 5), sender="bob@globex.example", subject="Login broken")
    desk.process(ny(2026, 11, 23, 9, 31))
    sink.refuse()
    first = ny(2026, 11, 23, 9, 32)
    result = deliver_due(desk.engine, transport_for(desk.config), first, desk.config)
    assert result.retried == 2 and result.sent == 0
    sink.accept()
    sink.tempfail = True
    deliver_due(desk.engine, transport_for(desk.config), first + timedelta(hours=2), desk.config)
    # a live service on this database, so the exit code is about SMTP, not "not running"
    wall = datetime.now(UTC)
    with transaction(desk.engine) as conn:
        conn.execute(sa.insert(LEASE).values(name="daemon:test:1", holder="test:1", host=socket.gethostname(),
                                             pid=1, acquired_at=wall, expires_at=wall + timedelta(hours=1)))
    cfg = write_config(tmp_path / "c.toml", sqlite_url, [], rules=desk.config.rules.model_dump(exclude_none=True),
                       outgoing=outgoing)
    clock = tmp_path / "clock"
    clock.write_text((first + timedelta(hours=2, minutes=1)).isoformat())
    st = run_cli("--config", str(cfg), "status", env={"MAILCASE_TEST_CLOCK": str(clock)})
    line = next((x for x in st.stdout.splitlines() if x.startswith("smtp: ")), "")
    assert line.startswith("smtp: failing since 2026-11-23 14:32 UTC (2 mails waiting): "), st.stdout
    assert "451" in line
    assert st.returncode == EXIT_DEGRADED, st.stdout
    assert "health: degraded" in st.stdout
    # delivery works again: the line goes
    sink.tempfail = False
    deliver_due(desk.engine, transport_for(desk.config), first + timedelta(hours=5), desk.config)
    with desk.engine.connect() as conn:
        assert {r.status for r in conn.execute(sa.select(OUTBOX.c.status))} == {"sent"}
    clock.write_text((first + timedelta(hours=5, minutes=1)).isoformat())
    st = run_cli("--config", str(cfg), "status", env={"MAILCASE_TEST_CLOCK": str(clock)})
    assert "smtp: failing" not in st.stdout
