"""The whole configuration: every section under one typed, frozen :class:`Config`.

Unknown keys and wrong types are errors that name the file and the key
(:mod:`mailcase.config.loader` reads the file); each section is defined in
the module of its stage.  ``config/mailcase.example.toml`` documents every key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import model_validator

from mailcase.config.base import ConfigPath, Frozen, tuples, unwritable
from mailcase.config.calendar import CalendarConfig
from mailcase.config.credentials import SecretsConfig
from mailcase.config.cutoff import BatchConfig
from mailcase.config.daemon import DaemonConfig, DatabaseConfig, RetentionConfig
from mailcase.config.mailbox import IngestConfig, MailboxConfig
from mailcase.config.outgoing import KbConfig, OutgoingConfig, SurveyConfig
from mailcase.config.rules import DirectoryConfig, RulesConfig, StaffConfig
from mailcase.core.errors import ConfigError


class Config(Frozen):
    #: where the source file was (None for embedded defaults); for messages
    source: str | None = None
    data_dir: ConfigPath = "mailcase-data"
    database: DatabaseConfig = DatabaseConfig()
    ingest: IngestConfig = IngestConfig()
    daemon: DaemonConfig = DaemonConfig()
    rules: RulesConfig = RulesConfig()
    staff: StaffConfig = StaffConfig()
    secrets: SecretsConfig = SecretsConfig()
    directory: DirectoryConfig = DirectoryConfig()
    surveys: SurveyConfig = SurveyConfig()
    retention: RetentionConfig = RetentionConfig()
    kb: KbConfig = KbConfig()
    outgoing: OutgoingConfig = OutgoingConfig()
    calendar: CalendarConfig = CalendarConfig()
    batch: BatchConfig = BatchConfig()
    mailboxes: tuple[MailboxConfig, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _lists(cls, data: Any) -> Any:
        return tuples(data, ("mailboxes",))

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        names = [m.name for m in self.mailboxes]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"mailboxes: duplicate name {sorted(dup)[0]!r}")
        if self.rules.sender_authentication is None:
            raise ValueError(
                "rules.sender_authentication: required: choose \"authserv-id\" (with authserv_id, "
                "the id your receiving server writes in Authentication-Results) or \"insecure-off\""
            )
        return self

    def hmac_key(self) -> bytes:
        """The key of mailcase's keyed hashes; required once mail is classified or sent."""
        if self.secrets.hmac_key is None:
            if self.source is None:
                return _demo_key(self.data_dir)
            raise ConfigError(
                f"{self.source}: secrets.hmac_key: required: "
                '{ file = "/etc/mailcase/hmac-key" } holding 32+ random bytes'
            )
        value = self.secrets.hmac_key.read().encode("utf-8")
        if len(value) < 16:
            raise ConfigError(f"{self.source}: secrets.hmac_key: shorter than 16 bytes")
        return value

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


def _demo_key(data_dir: str) -> bytes:
    """The embedded demo's key: random, kept in the data folder (never in the repo)."""
    path = Path(data_dir) / "demo-hmac-key"
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(os.urandom(32).hex())
        return path.read_text().strip().encode()
    except OSError as exc:
        raise unwritable(Path(exc.filename or path), exc) from None
