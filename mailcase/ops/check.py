"""`mailcase check`: try everything the service needs, one line per check, with the fix."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from mailcase.config.mailbox import MailboxConfig
from mailcase.config.settings import Config
from mailcase.core.clock import Clock
from mailcase.core.errors import AuthError, ConfigError, MailcaseError, TransientError
from mailcase.domain.db import current_revision, head_revision, make_engine
from mailcase.domain.oauth import imap_token
from mailcase.ingest.imap import session
from mailcase.outbound.render import find_templates
from mailcase.outbound.smtp import SmtpTransport


@dataclass(frozen=True)
class Check:
    ok: bool
    what: str
    detail: str
    fix: str = ""


def _fix_for(exc: MailcaseError, what: str) -> str:
    text = str(exc)
    if isinstance(exc, AuthError):
        return "check the user name and the secret it names; for OAuth the client id, secret and scope"
    if "certificate" in text:
        return "the server's certificate does not verify: set ca_file to your CA, or fix the host name"
    if isinstance(exc, TransientError):
        return "check host and port, that the server runs, and that a firewall lets this machine through"
    if isinstance(exc, ConfigError):
        return "fix the configuration key named above"
    return f"see the error; run `mailcase --debug check` for details of {what}"


def _database(engine_factory: object, config: Config) -> Iterator[Check]:
    try:
        engine = make_engine(config.database_url, config.database.busy_timeout_seconds)
        current = current_revision(engine)
    except MailcaseError as exc:
        yield Check(False, "database", str(exc), "check database.url and that the server runs")
        return
    head = head_revision()
    if current == head:
        yield Check(True, "database", f"schema {current}")
    elif current is None:
        yield Check(True, "database", "empty: created on first use (or run `mailcase db upgrade`)")
    else:
        yield Check(False, "database", f"schema {current}, this mailcase needs {head}", "run `mailcase db upgrade`")


def _imap(engine: Engine | None, box: MailboxConfig, clock: Clock) -> Check:
    what = f"imap {box.name}"
    if box.kind == "maildir":
        path = Path(box.path or "")
        ok = (path / "new").is_dir() and (path / "cur").is_dir()
        return Check(ok, f"maildir {box.name}", str(path) if ok else f"{path} is not a Maildir (new/ and cur/)",
                     "" if ok else "set path to a Maildir folder the service can read")
    token = None
    if box.auth != "password":
        if engine is None:
            return Check(False, what, "OAuth needs the database for its token cache", "fix the database first")
        token = imap_token(engine, box, clock.now)
    try:
        with session(box, token) as client:
            info = client.select_folder(box.folder, readonly=True)
            idle = "IDLE" if client.has_capability("IDLE") else "no IDLE (polling)"
            return Check(True, what, f"logged in as {box.username}, {box.folder} holds {info.get(b'EXISTS', '?')} "
                                     f"mails, {idle}")
    except MailcaseError as exc:
        return Check(False, what, str(exc), _fix_for(exc, what))
    except Exception as exc:
        return Check(False, what, f"{type(exc).__name__}: {exc}", f"does folder {box.folder!r} exist?")


def _smtp(engine: Engine | None, config: Config, clock: Clock) -> Check:
    out = config.outgoing
    if out.transport == "file":
        folder = Path(out.file_dir or Path(config.data_dir) / "outbox")
        return Check(True, "outgoing", f"file transport into {folder} (no mail leaves this machine)")
    t = SmtpTransport(out)
    try:
        conn = t._connect()
        conn.noop()
        conn.quit()
        return Check(True, "smtp", f"{t.where}: connected ({out.smtp_security})"
                                   + (f", logged in as {out.smtp_username}" if out.smtp_username else ""))
    except MailcaseError as exc:
        return Check(False, "smtp", str(exc), _fix_for(exc, "smtp"))
    except (OSError, smtplib.SMTPException) as exc:
        return Check(False, "smtp", f"{t.where}: {exc}", "check smtp_host, smtp_port and smtp_security")


def run_checks(config: Config, engine: Engine | None, clock: Clock) -> Iterator[Check]:
    yield Check(True, "configuration", config.source or "embedded demo defaults")
    yield from _database(None, config)
    try:
        config.hmac_key()
        yield Check(True, "secrets.hmac_key", "readable")
    except MailcaseError as exc:
        yield Check(False, "secrets.hmac_key", str(exc), "create the key file: head -c 32 /dev/urandom | base64")
    if config.rules.sender_authentication == "insecure-off":
        yield Check(True, "sender authentication", "OFF (insecure-off): anyone can claim a representative's address")
    else:
        yield Check(True, "sender authentication", f"trusting Authentication-Results from {config.rules.authserv_id}")
    for box in config.mailboxes:
        if box.enabled:
            yield _imap(engine, box, clock)
    yield _smtp(engine, config, clock)
    try:
        yield Check(True, "templates", str(find_templates(config.outgoing.templates_dir)))
    except MailcaseError as exc:
        yield Check(False, "templates", str(exc), "set outgoing.templates_dir or reinstall mailcase")
    for what, path in (("directory csv", config.directory.csv), ("knowledge base", config.kb.path)):
        if path:
            ok = Path(path).exists()
            yield Check(ok, what, path if ok else f"{path} does not exist", "" if ok else "fix the path or remove the key")
