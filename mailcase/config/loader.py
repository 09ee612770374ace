"""Reading the configuration: a TOML file (or the embedded demo) -> :class:`Config`, or an error naming the key.

Relative paths in a file are relative to the state directory under systemd
(``$STATE_DIRECTORY``), else to the file's folder: :func:`parse_config`
validates with that folder in the validation context and every
:data:`~mailcase.config.base.ConfigPath` resolves itself.

``--demo`` asks for :func:`embedded_defaults`, a working demo setup: SQLite
under ``./mailcase-data`` and the sample Maildir shipped in the package.
Without it, no configuration file is an error.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mailcase.config.cutoff import BatchConfig
from mailcase.config.mailbox import MailboxConfig
from mailcase.config.outgoing import KbConfig, OutgoingConfig
from mailcase.config.rules import DirectoryConfig, RulesConfig, StaffConfig
from mailcase.config.settings import Config
from mailcase.core.errors import ConfigError

DEMO_MAILDIR = Path(__file__).parent.parent / "demo" / "maildir"
DEMO_ACCOUNTS = Path(__file__).parent.parent / "demo" / "accounts.csv"
DEMO_KB = Path(__file__).parent.parent / "demo" / "kb"
CONFIG_ENV = "MAILCASE_CONFIG"
DEFAULT_CONFIG_PATHS = (Path("/etc/mailcase/mailcase.toml"),)


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
    m = re.match(r"^([a-z_.]+): (.*)$", msg)
    if m and first["type"] == "value_error":
        key = f"{key}.{m.group(1)}" if key != "(top level)" else m.group(1)
        msg = m.group(2)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {key}: {msg}{more}"


def state_directory() -> Path | None:
    """The unit's state directory when systemd runs us (``StateDirectory=``: the first of
    ``$STATE_DIRECTORY``, a colon-separated list), else None."""
    value = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(value) if value else None


def parse_config(data: dict[str, Any], where: str, base: Path | None = None) -> Config:
    """Validate a parsed TOML document; relative paths resolve against ``base``, if given.
    Without a ``data_dir`` key the data lives in the state directory under systemd, else in
    ``mailcase-data`` (beside the file, when ``base`` is the file's folder)."""
    # inline secrets get their own message: it is the mistake most worth explaining
    inline = [
        f"mailboxes[{i}].password"
        for i, box in enumerate(data.get("mailboxes") or [])
        if isinstance(box, dict) and isinstance(box.get("password"), str)
    ]
    outgoing = data.get("outgoing")
    if isinstance(outgoing, dict) and isinstance(outgoing.get("smtp_password"), str):
        inline.append("outgoing.smtp_password")
    secrets = data.get("secrets")
    if isinstance(secrets, dict):
        inline += [f"secrets.{k}" for k, v in secrets.items() if isinstance(v, str)]
    if inline:
        raise ConfigError(
            f"{where}: {inline[0]}: inline secrets are not allowed; "
            'use { file = "..." } or { env = "..." } or { credential = "..." }'
        )
    if "source" in data:
        raise ConfigError(f"{where}: source: unknown key")
    if "data_dir" not in data:
        state = state_directory()
        data = {**data, "data_dir": str(state) if state else "mailcase-data"}
    try:
        return Config.model_validate({**data, "source": where}, context={"base": base})
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
    # under systemd relative paths are the state directory's (the unit's WorkingDirectory= too);
    # by hand, the file's folder's
    return parse_config(data, where, base=state_directory() or path.resolve().parent)


def embedded_defaults(data_dir: str | None = None) -> Config:
    """The demo setup: SQLite in ./mailcase-data, the sample Maildir, no servers."""
    return Config(
        source=None,
        data_dir=data_dir or str(state_directory() or "mailcase-data"),
        mailboxes=(
            MailboxConfig(name="sample", kind="maildir", path=str(DEMO_MAILDIR), start_at="all"),
        ),
        # the sample mails carry Authentication-Results from this (imaginary) server
        rules=RulesConfig(sender_authentication="authserv-id", authserv_id="mx.support.example"),
        staff=StaffConfig(domains=("support.example",)),
        outgoing=OutgoingConfig(from_address="support@support.example", from_name="Example Support"),
        # the sample mail waits for cutoffs in November 2026: the demo
        # directory counts from before them
        directory=DirectoryConfig(csv=str(DEMO_ACCOUNTS), effective="2026-11-01T00:00:00Z"),
        kb=KbConfig(path=str(DEMO_KB)),
        # ... and cutoffs close from then on (a fresh database otherwise starts at the next one)
        batch=BatchConfig(start_at="2026-11-01T00:00:00Z"),
    )


def find_config(explicit: str | None, demo: bool = False) -> Config:
    """The configuration the CLI runs with: --config, $MAILCASE_CONFIG, /etc -- or, only when
    asked for (``--demo``), the embedded demo.  Nothing found is an error: a command that
    quietly ran on the demo would answer "no cases" about a desk it never looked at."""
    if demo:
        return embedded_defaults()
    if explicit:
        return load_config(Path(explicit))
    env = os.environ.get(CONFIG_ENV)
    if env:
        return load_config(Path(env))
    for path in DEFAULT_CONFIG_PATHS:
        if path.exists():
            return load_config(path)
    looked = ", ".join(str(p) for p in DEFAULT_CONFIG_PATHS)
    raise ConfigError(f"no configuration file (looked for --config FILE, ${CONFIG_ENV}, {looked}); "
                      "`mailcase --demo COMMAND` runs on the embedded demo")
