"""OAuth2 against Dovecot's XOAUTH2/OAUTHBEARER with a local token endpoint, and SMTP XOAUTH2."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult
from batching import MovingClock
from conftest import need_server
from helpers import config, make_mail
from servers.dovecot import Dovecot, dovecot_binary
from servers.oauth import TokenServer
from servers.smtp import SmtpSink

from mailcase.core.errors import AuthError
from mailcase.domain.db import open_engine
from mailcase.domain.oauth import health
from mailcase.ingest.fetch import sync_imap
from mailcase.ops.status import collect

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)


@pytest.fixture
def tokens() -> Iterator[TokenServer]:
    server = TokenServer().start()
    yield server
    server.stop()


@pytest.fixture
def oauth_dovecot(tokens: TokenServer) -> Iterator[Dovecot]:
    if not dovecot_binary():
        need_server("dovecot is not installed")
    server = Dovecot(oauth_introspection=f"{tokens.url}/introspect").start()
    yield server
    server.cleanup()


def _box(server: Dovecot, tokens: TokenServer, tmp: Path, auth: str, **oauth: Any) -> tuple[dict[str, Any], str]:
    user, password = server.take_user()
    tokens.username = user
    (tmp / "secret").write_text(tokens.client_secret)
    table = {"token_url": f"{tokens.url}/token", "client_id": tokens.client_id,
             "client_secret": {"file": str(tmp / "secret")}, "scope": "imap", **oauth}
    return {"name": "support", "host": "127.0.0.1", "port": server.port, "security": "plain",
            "username": user, "auth": auth, "oauth": table, "start_at": "all"}, password


@pytest.mark.parametrize("auth", ["xoauth2", "oauthbearer"])
def test_client_credentials_login_and_fetch(oauth_dovecot: Dovecot, tokens: TokenServer, sqlite_url: str,
                                            tmp_path: Path, auth: str, caplog: pytest.LogCaptureFixture) -> None:
    box, password = _box(oauth_dovecot, tokens, tmp_path, auth)
    import imapclient

    c = imapclient.IMAPClient("127.0.0.1", port=oauth_dovecot.port, ssl=False)
    c.login(box["username"], password)
    c.append("INBOX", make_mail(1))
    c.logout()
    cfg = config(sqlite_url, tmp_path, [box])
    engine = open_engine(cfg.database_url)
    caplog.set_level(logging.DEBUG)
    assert sync_imap(engine, cfg.mailboxes[0], NOW).tally.new == 1
    assert sync_imap(engine, cfg.mailboxes[0], NOW + timedelta(minutes=10)).tally.seen == 0
    assert tokens.issued == 1  # cached, not fetched per login
    assert sync_imap(engine, cfg.mailboxes[0], NOW + timedelta(minutes=58)).tally.seen == 0
    assert tokens.issued == 2  # refreshed five minutes before expiry
    for token in tokens.access_tokens:
        assert token not in caplog.text  # tokens never logged
    assert health(engine, "imap:support", NOW + timedelta(minutes=58)).ok


def test_refresh_token_rotation_is_persisted(oauth_dovecot: Dovecot, tokens: TokenServer, sqlite_url: str,
                                             tmp_path: Path) -> None:
    first = tokens.new_refresh_token()
    (tmp_path / "refresh").write_text(first)
    box, _ = _box(oauth_dovecot, tokens, tmp_path, "xoauth2", flow="refresh_token",
                  refresh_token={"file": str(tmp_path / "refresh")})
    cfg = config(sqlite_url, tmp_path, [box])
    engine = open_engine(cfg.database_url)
    sync_imap(engine, cfg.mailboxes[0], NOW)
    assert first not in tokens.refresh_tokens  # used and rotated by the server
    # a new process (new engine) two hours later: the rotated token from the database works
    engine2 = open_engine(cfg.database_url)
    sync_imap(engine2, cfg.mailboxes[0], NOW + timedelta(hours=2))
    sync_imap(engine2, cfg.mailboxes[0], NOW + timedelta(hours=4))
    assert tokens.issued == 3


def test_failing_refresh_is_one_mailbox_warning(oauth_dovecot: Dovecot, tokens: TokenServer, sqlite_url: str,
                                                tmp_path: Path) -> None:
    box, _ = _box(oauth_dovecot, tokens, tmp_path, "xoauth2")
    other = {"name": "local", "kind": "maildir", "path": str(tmp_path / "md")}
    (tmp_path / "md" / "new").mkdir(parents=True)
    (tmp_path / "md" / "cur").mkdir()
    cfg = config(sqlite_url, tmp_path, [box, other])
    engine = open_engine(cfg.database_url)
    sync_imap(engine, cfg.mailboxes[0], NOW)
    tokens.fail_refresh = True
    with pytest.raises(AuthError, match="oauth imap:support: token endpoint refused: invalid_grant"):
        sync_imap(engine, cfg.mailboxes[0], NOW + timedelta(hours=2))
    st = collect(engine, cfg, MovingClock(NOW + timedelta(hours=2)))
    by_name = {m.name: m for m in st.mailboxes}
    assert by_name["support"].token is not None and not by_name["support"].token.ok
    assert "refresh failing" in by_name["support"].token.detail
    assert by_name["local"].token is None  # the other mailbox is untouched


class _XOAuthSink(SmtpSink):
    """The sink, also accepting AUTH XOAUTH2 with tokens the token server issued."""

    tokens: TokenServer | None = None
    logins: list[str] = []

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> AuthResult:
        blob = args[1] if len(args) > 1 else ""
        text = base64.b64decode(blob).decode()
        fields = dict(f.split("=", 1) for f in text.strip("\x01").split("\x01") if "=" in f)
        token = fields.get("auth", "").removeprefix("Bearer ")
        ok = self.tokens is not None and token in self.tokens.access_tokens
        if ok:
            self.logins.append(fields.get("user", ""))
        return AuthResult(success=ok, handled=False)


def test_smtp_xoauth2(tokens: TokenServer, sqlite_url: str, tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller
    from batching import Desk, ny

    from mailcase.outbound.deliver import deliver_due
    from mailcase.outbound.transport import transport_for

    sink = _XOAuthSink()
    sink.tokens = tokens
    sink.logins = []
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port, auth_require_tls=False,
                            authenticator=lambda *a: AuthResult(success=False))
    controller.start()
    try:
        (tmp_path / "secret").write_text(tokens.client_secret)
        desk = Desk(sqlite_url, tmp_path, outgoing={
            "from_address": "support@support.example", "transport": "smtp", "smtp_host": "127.0.0.1",
            "smtp_port": sink.port, "smtp_security": "plain", "smtp_username": "support@support.example",
            "smtp_oauth": {"token_url": f"{tokens.url}/token", "client_id": tokens.client_id,
                           "client_secret": {"file": str(tmp_path / "secret")}},
        })
        desk.directory()
        desk.mail(ny(2026, 11, 23, 8, 0), subject="Printing")
        desk.process(ny(2026, 11, 23, 9, 31))
        r = deliver_due(desk.engine, transport_for(desk.config, desk.engine, desk.clock), desk.clock.now(),
                        desk.config)
        assert r.sent == 1 and sink.logins == ["support@support.example"]
        assert len(sink.received) == 1
    finally:
        controller.stop()
