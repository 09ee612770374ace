"""Configuration: one TOML file -> typed, frozen values.

Unknown keys and wrong types are errors that name the file and the key.
Secrets are never inline: a secret is a table naming a file, an environment
variable, or a systemd credential (``$CREDENTIALS_DIRECTORY/<name>``).

With no configuration file at all, :func:`embedded_defaults` gives a working
demo setup: SQLite under ``./mailcase-data`` and the sample Maildir shipped in
the package.  ``config/mailcase.example.toml`` documents every key.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mailcase.errors import ConfigError
from mailcase.states import PostAction

DEMO_MAILDIR = Path(__file__).parent / "demo" / "maildir"
CONFIG_ENV = "MAILCASE_CONFIG"
DEFAULT_CONFIG_PATHS = (Path("/etc/mailcase/mailcase.toml"),)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Secret(_Frozen):
    """Where a secret lives: exactly one of ``file``, ``env``, ``credential``."""

    file: str | None = None
    env: str | None = None
    credential: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Secret:
        given = [k for k in ("file", "env", "credential") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of file, env, credential")
        return self

    def describe(self) -> str:
        if self.file:
            return f"file {self.file}"
        if self.env:
            return f"environment variable {self.env}"
        return f"systemd credential {self.credential}"

    def read(self) -> str:
        """The secret's value, stripped of a trailing newline."""
        if self.env:
            value = os.environ.get(self.env)
            if value is None:
                raise ConfigError(f"secret: environment variable {self.env} is not set")
            return value.rstrip("\r\n")
        if self.credential:
            creds = os.environ.get("CREDENTIALS_DIRECTORY")
            if not creds:
                raise ConfigError(
                    f"secret: credential {self.credential} asked for, but CREDENTIALS_DIRECTORY "
                    "is not set (run under systemd with LoadCredential=, or use file=)"
                )
            path = Path(creds) / self.credential
        else:
            assert self.file is not None
            path = Path(self.file)
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"secret: cannot read {path}: {exc.strerror}") from exc


_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_START_AT = re.compile(r"^(now|all|uid:\d+|\d{4}-\d{2}-\d{2}(T[0-9:.+\-Z]+)?)$")


class MailboxConfig(_Frozen):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    kind: Literal["imap", "maildir"] = "imap"
    enabled: bool = True
    #: where to start: "now" (everything already there is historical), "all"
    #: (nothing is historical), "uid:N" (UIDs below N are historical) or an
    #: ISO date/time (mail received before it is historical)
    start_at: str = "now"
    max_message_bytes: int = Field(default=25 * 1024 * 1024, gt=0)

    # IMAP
    host: str | None = None
    port: int | None = Field(default=None, gt=0, lt=65536)
    security: Literal["tls", "starttls", "plain"] = "tls"
    ca_file: str | None = None
    username: str | None = None
    password: Secret | None = None
    folder: str = "INBOX"
    post_action: PostAction = PostAction.LEAVE
    move_to: str | None = None
    fetch_chunk_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    fetch_chunk_count: int = Field(default=500, gt=0, le=5000)
    timeout_seconds: float = Field(default=60.0, gt=0)

    # Maildir
    path: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _coerce_enums(cls, data: Any) -> Any:
        # strict mode refuses a plain string for an enum; TOML only has strings
        if isinstance(data, dict) and isinstance(data.get("post_action"), str):
            data = dict(data)
            try:
                data["post_action"] = PostAction(data["post_action"])
            except ValueError:
                pass  # left as a string: strict validation names the key
        return data

    @model_validator(mode="after")
    def _check(self) -> MailboxConfig:
        if not _START_AT.match(self.start_at):
            raise ValueError("start_at: use now, all, uid:N or an ISO date")
        if self.kind == "imap":
            for key in ("host", "username", "password"):
                if getattr(self, key) is None:
                    raise ValueError(f"{key}: required for an imap mailbox")
            assert self.host is not None
            if self.security == "plain" and not is_loopback(self.host):
                raise ValueError(
                    "security: plain IMAP is allowed to 127.0.0.1 only; use tls or starttls"
                )
            if self.post_action is PostAction.MOVE and not self.move_to:
                raise ValueError("move_to: required when post_action = move")
        else:
            if self.path is None:
                raise ValueError("path: required for a maildir mailbox")
            if self.post_action is not PostAction.LEAVE:
                raise ValueError("post_action: a maildir mailbox supports leave only")
        return self

    @property
    def imap_port(self) -> int:
        if self.port:
            return self.port
        return 993 if self.security == "tls" else 143

    def start_point(self) -> tuple[str, int | datetime | None]:
        """("now"|"all"|"uid"|"date", value)."""
        if self.start_at in ("now", "all"):
            return self.start_at, None
        if self.start_at.startswith("uid:"):
            return "uid", int(self.start_at[4:])
        value = datetime.fromisoformat(self.start_at.replace("Z", "+00:00"))
        if value.tzinfo is None:
            raise ConfigError(f"start_at {self.start_at!r}: give a UTC offset")
        return "date", value


class DatabaseConfig(_Frozen):
    #: SQLAlchemy URL; default: SQLite file mailcase.db in data_dir
    url: str | None = None
    #: for SQLite: seconds a writer waits for the write lock
    busy_timeout_seconds: float = Field(default=30.0, gt=0)


class IngestConfig(_Frozen):
    #: host names our own MTA writes in "Received: ... by HOST"; for files, the
    #: topmost such header gives received_at.  Empty: the topmost Received.
    receiving_hosts: tuple[str, ...] = ()
    #: worker processes for the full parse (1 = in the fetching process)
    parse_workers: int = Field(default=1, ge=1, le=64)


class DaemonConfig(_Frozen):
    #: seconds between polls of a mailbox (without IDLE) and between stage runs
    poll_seconds: float = Field(default=60.0, gt=0)


class Config(_Frozen):
    #: where the source file was (None for embedded defaults); for messages
    source: str | None = None
    data_dir: str = "mailcase-data"
    database: DatabaseConfig = DatabaseConfig()
    ingest: IngestConfig = IngestConfig()
    daemon: DaemonConfig = DaemonConfig()
    mailboxes: tuple[MailboxConfig, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _lists_to_tuples(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if isinstance(data.get("mailboxes"), list):
                data["mailboxes"] = tuple(data["mailboxes"])
            ingest = data.get("ingest")
            if isinstance(ingest, dict) and isinstance(ingest.get("receiving_hosts"), list):
                data["ingest"] = {**ingest, "receiving_hosts": tuple(ingest["receiving_hosts"])}
        return data

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        names = [m.name for m in self.mailboxes]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"mailboxes: duplicate name {sorted(dup)[0]!r}")
        return self

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{Path(self.data_dir) / 'mailcase.db'}"

    def mailbox(self, name: str) -> MailboxConfig:
        for m in self.mailboxes:
            if m.name == name:
                return m
        raise KeyError(name)


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or part.startswith("function-"):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _describe(exc: ValidationError, where: str) -> str:
    errors = exc.errors()
    first = errors[0]
    key = _dotted(tuple(first["loc"]))
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "missing":
        msg = "required key is missing"
    # a model-level check reports "key: message": move the key to the front
    m = re.match(r"^([a-z_]+): (.*)$", msg)
    if m and first["type"] == "value_error":
        key = f"{key}.{m.group(1)}" if key != "(top level)" else m.group(1)
        msg = m.group(2)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {key}: {msg}{more}"


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Relative paths in the file are relative to the file's folder."""

    def fix(value: Any) -> Any:
        if isinstance(value, str) and value and not os.path.isabs(value):
            return str(base / value)
        return value

    data = dict(data)
    if "data_dir" in data:
        data["data_dir"] = fix(data["data_dir"])
    boxes = data.get("mailboxes")
    if isinstance(boxes, list):
        new = []
        for box in boxes:
            if isinstance(box, dict):
                box = dict(box)
                for key in ("path", "ca_file"):
                    if key in box:
                        box[key] = fix(box[key])
                pw = box.get("password")
                if isinstance(pw, dict) and "file" in pw:
                    box["password"] = {**pw, "file": fix(pw["file"])}
            new.append(box)
        data["mailboxes"] = new
    return data


def parse_config(data: dict[str, Any], where: str, base: Path | None = None) -> Config:
    # inline secrets get their own message: it is the mistake most worth explaining
    for i, box in enumerate(data.get("mailboxes") or []):
        if isinstance(box, dict) and isinstance(box.get("password"), str):
            raise ConfigError(
                f"{where}: mailboxes[{i}].password: inline secrets are not allowed; "
                'use password = { file = "..." } or { env = "..." } or { credential = "..." }'
            )
    if "source" in data:
        raise ConfigError(f"{where}: source: unknown key")
    if base is not None:
        data = _resolve_paths(data, base)
    try:
        return Config.model_validate({**data, "source": where})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, where)) from None


def load_config(path: Path) -> Config:
    where = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read configuration: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: invalid TOML: {exc}") from None
    return parse_config(data, where, base=path.resolve().parent)


def embedded_defaults(data_dir: str | None = None) -> Config:
    """The demo setup: SQLite in ./mailcase-data, the sample Maildir, no servers."""
    return Config(
        source=None,
        data_dir=data_dir or os.environ.get("STATE_DIRECTORY") or "mailcase-data",
        mailboxes=(
            MailboxConfig(name="sample", kind="maildir", path=str(DEMO_MAILDIR), start_at="all"),
        ),
    )


def find_config(explicit: str | None) -> Config:
    """The configuration the CLI runs with: --config, $MAILCASE_CONFIG, /etc, or the demo."""
    if explicit:
        return load_config(Path(explicit))
    env = os.environ.get(CONFIG_ENV)
    if env:
        return load_config(Path(env))
    for path in DEFAULT_CONFIG_PATHS:
        if path.exists():
            return load_config(path)
    return embedded_defaults()

