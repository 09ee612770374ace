"""STARTTLS and implicit TLS against a Dovecot with a throwaway CA; bad certificates fail closed."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import config, make_mail
from servers.dovecot import Dovecot
from test_fetch_imap import NOW

from mailcase.domain.db import open_engine
from mailcase.ingest.fetch import sync_imap
from mailcase.ingest.imap import TlsError, connect


def _box(server: Dovecot, tmp_path: Path, **kw: object) -> dict[str, object]:
    user, password = server.take_user()
    pw = tmp_path / "pw"
    pw.write_text(password)
    box: dict[str, object] = {
        "name": "support", "host": "127.0.0.1", "username": user,
        "password": {"file": str(pw)}, "start_at": "all", "timeout_seconds": 10.0,
    }
    box.update(kw)
    return box


def test_starttls_fetches(tls_dovecot: Dovecot, ca_file: Path, sqlite_url: str, tmp_path: Path) -> None:
    box = _box(tls_dovecot, tmp_path, security="starttls", port=tls_dovecot.port, ca_file=str(ca_file))
    cfg = config(sqlite_url, tmp_path, [box])
    client = connect(cfg.mailboxes[0])
    client.append("INBOX", make_mail(1))
    client.logout()
    r = sync_imap(open_engine(cfg.database_url), cfg.mailboxes[0], NOW)
    assert r.tally.new == 1


def test_implicit_tls_fetches(tls_dovecot: Dovecot, ca_file: Path, sqlite_url: str, tmp_path: Path) -> None:
    box = _box(tls_dovecot, tmp_path, security="tls", port=tls_dovecot.tls_port, ca_file=str(ca_file))
    cfg = config(sqlite_url, tmp_path, [box])
    client = connect(cfg.mailboxes[0])
    assert client._imap.sock.version() in ("TLSv1.2", "TLSv1.3")
    client.append("INBOX", make_mail(2))
    client.logout()
    assert sync_imap(open_engine(cfg.database_url), cfg.mailboxes[0], NOW).tally.new == 1


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_certificate_for_another_host_is_refused(
    tls_dovecot: Dovecot, ca_file: Path, sqlite_url: str, tmp_path: Path, security: str
) -> None:
    # the certificate names 127.0.0.1; we connect by the name "localhost"
    port = tls_dovecot.tls_port if security == "tls" else tls_dovecot.port
    box = _box(tls_dovecot, tmp_path, host="localhost", security=security, port=port, ca_file=str(ca_file))
    cfg = config(sqlite_url, tmp_path, [box])
    with pytest.raises(TlsError, match="certificate refused: Hostname mismatch"):
        connect(cfg.mailboxes[0])


def test_unknown_ca_is_refused(tls_dovecot: Dovecot, sqlite_url: str, tmp_path: Path) -> None:
    box = _box(tls_dovecot, tmp_path, security="tls", port=tls_dovecot.tls_port)
    cfg = config(sqlite_url, tmp_path, [box])
    with pytest.raises(TlsError, match="certificate refused: unable to get local issuer certificate"):
        connect(cfg.mailboxes[0])
