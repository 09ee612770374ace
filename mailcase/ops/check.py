"""`mailcase check`: try everything the service needs, one line per check, with the fix."""

from __future__ import annotations

import os
import smtplib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mailcase.config.mailbox import MailboxConfig
from mailcase.config.paths import configured_paths, nearest_existing, problem_with
from mailcase.config.settings import Config
from mailcase.core.clock import Clock
from mailcase.core.errors import AuthError, ConfigError, MailcaseError, TransientError
from mailcase.domain.db import current_revision, head_revision, pending_revisions, read_only_engine
from mailcase.domain.oauth import imap_token
from mailcase.ingest.imap import session
from mailcase.ingest.sources import is_maildir
from mailcase.ops.secretcheck import SERVICE_USER, check_secret, configured_secrets
from mailcase.outbound.render import templates
from mailcase.outbound.smtp import SmtpTransport

#: the exit status of a failed check, by what is wrong (as `run` would exit: a secret that cannot
#: be read is configuration, 78; a login the server refuses is 77)
CONFIG, UNREACHABLE = ConfigError.exit_code, TransientError.exit_code


@dataclass(frozen=True)
class Check:
    ok: bool
    what: str
    detail: str
    fix: str = ""
    #: for a failed check: 78 configuration (a key, a path, a secret), 77 a login refused, 75 unreachable
    code: int = CONFIG


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


def _database(config: Config) -> tuple[list[Check], Engine | None]:
    """The database as it is, opened read-only: `check` creates no file, folder or schema."""
    url = config.database_url
    try:
        engine = read_only_engine(url)
    except MailcaseError as exc:
        return [Check(False, "database", str(exc), "fix database.url", exc.exit_code)], None
    if engine is None:
        path = Path(sa.engine.make_url(url).database or "").absolute()
        folder = nearest_existing(path.parent)
        if folder.is_dir() and os.access(folder, os.W_OK | os.X_OK):
            return [Check(True, "database", f"no database yet at {path}: `mailcase run` or `mailcase db upgrade` "
                                            "creates it")], None
        fix = (f"install -d -o {SERVICE_USER} -g {SERVICE_USER} -m 0750 {path.parent}" if os.geteuid() == 0
               else "under systemd the unit's StateDirectory= makes it; otherwise set data_dir (or database.url) "
                    "to a folder you can write")
        return [Check(False, "database", f"no database yet at {path}, and {folder} is not writable", fix)], None
    try:
        current = current_revision(engine)
        with engine.connect() as conn:
            tables = sa.inspect(conn).get_table_names()
    except (MailcaseError, sa.exc.DBAPIError) as exc:
        code = exc.exit_code if isinstance(exc, MailcaseError) else UNREACHABLE
        return [Check(False, "database", str(exc).splitlines()[0],
                      "check database.url, that the server runs and that the file is a mailcase database", code)], None
    head = head_revision()
    if current == head:
        return [Check(True, "database", f"schema {current}")], engine
    if current is None and not tables:
        return [Check(True, "database", "empty: `mailcase run` or `mailcase db upgrade` creates the schema")], None
    if current is None:
        return [Check(False, "database", "has tables but no mailcase schema version",
                      "is it another application's database? fix database.url")], None
    try:
        steps = pending_revisions(current)
    except KeyError:
        return [Check(False, "database", f"schema {current} is unknown to this mailcase (which knows up to {head})",
                      "install the newer mailcase that wrote it")], None
    return [Check(False, "database", f"schema {current}, this mailcase needs {head}; `mailcase db upgrade` would "
                                     f"apply {'; '.join(steps)}", "run `mailcase db upgrade`")], engine


def _hmac_key(config: Config) -> Check:
    """The key, without creating the demo's (``mailcase run`` does that)."""
    what, secret = "secrets.hmac_key", config.secrets.hmac_key
    if secret is None and config.source is None:
        path = Path(config.data_dir).absolute() / "demo-hmac-key"
        return Check(True, what, f"demo key {path}" if path.is_file() else f"demo key: `mailcase run` creates {path}")
    if secret is None:
        try:
            config.hmac_key()
        except MailcaseError as exc:
            return Check(False, what, str(exc), "create the key file: head -c 32 /dev/urandom | base64 > FILE, "
                                                "and name it in [secrets]")
    assert secret is not None
    ok, detail, fix = check_secret(what, secret)
    if not ok:
        return Check(False, what, detail, fix)
    try:
        config.hmac_key()
    except MailcaseError as exc:
        return Check(False, what, str(exc), "write a new key: head -c 32 /dev/urandom | base64")
    return Check(True, what, detail)


def _imap(engine: Engine | None, box: MailboxConfig, clock: Clock) -> Check:
    what = f"imap {box.name}"
    if box.kind == "maildir":
        path = Path(box.path or "")
        ok = is_maildir(path)
        return Check(ok, f"maildir {box.name}", str(path) if ok else f"{path} is not a Maildir (no new/ or cur/)",
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
        return Check(False, what, str(exc), _fix_for(exc, what), exc.exit_code)
    except Exception as exc:
        return Check(False, what, f"{type(exc).__name__}: {exc}", f"does folder {box.folder!r} exist?", UNREACHABLE)


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
        return Check(False, "smtp", str(exc), _fix_for(exc, "smtp"), exc.exit_code)
    except (OSError, smtplib.SMTPException) as exc:
        return Check(False, "smtp", f"{t.where}: {exc}", "check smtp_host, smtp_port and smtp_security", UNREACHABLE)


def _templates(config: Config) -> Check:
    """Where the templates come from, every one compiled; the fix names the key only when it is set."""
    override = config.outgoing.templates_dir
    try:
        source = templates(override)
    except MailcaseError as exc:  # only a configured override folder can be missing
        return Check(False, "templates", str(exc),
                     "create that folder, or remove outgoing.templates_dir to use the packaged templates")
    try:
        overridden = source.compile_all()
    except MailcaseError as exc:
        fix = "reinstall mailcase: its packaged templates are damaged"
        if override:
            fix = f"fix the template named above in {override} (or {fix})"
        return Check(False, "templates", str(exc), fix)
    if "ack.txt.j2" not in source.env.list_templates():
        return Check(False, "templates", f"no ack.txt.j2 in {source.where()}",
                     "reinstall mailcase: the wheel it came from lacks its packaged templates")
    detail = source.where()
    if override:
        detail += f"; the override replaces {', '.join(overridden) or 'nothing (no .j2 files in it)'}"
    return Check(True, "templates", detail)


def run_checks(config: Config, clock: Clock) -> Iterator[Check]:
    """Every check, read-only: nothing is created (no database, schema, data folder or Maildir folder)."""
    yield Check(True, "configuration", config.source or "embedded demo defaults")
    checks, engine = _database(config)
    yield from checks
    yield _hmac_key(config)
    for key, secret in configured_secrets(config):
        if key != "secrets.hmac_key":
            ok, detail, fix = check_secret(key, secret)
            yield Check(ok, key, detail, fix)
    if config.rules.sender_authentication == "insecure-off":
        yield Check(True, "sender authentication", "OFF (insecure-off): anyone can claim a representative's address")
    else:
        yield Check(True, "sender authentication", f"trusting Authentication-Results from {config.rules.authserv_id}")
    for box in config.mailboxes:
        if box.enabled:
            yield _imap(engine, box, clock)
    yield _smtp(engine, config, clock)
    yield _templates(config)
    for key, path, kind in configured_paths(config):
        problem = problem_with(path, kind)
        yield Check(problem is None, key, path if problem is None else f"{path}: {problem}",
                    "" if problem is None else f"fix the path in {key} (the service will not start: exit 78)")
