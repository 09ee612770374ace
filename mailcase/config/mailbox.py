"""Where mail comes in: the ``[[mailboxes]]`` tables and the ``[ingest]`` table."""

from __future__ import annotations

import os
import re
from datetime import datetime
from typing import Any, Literal, TypeAlias

from pydantic import Field, model_validator

from mailcase.config.base import ConfigPath, Frozen, is_loopback, tuples
from mailcase.config.credentials import OAuthConfig, Secret
from mailcase.core.errors import ConfigError
from mailcase.core.states import PostAction

_START_AT = re.compile(r"^(now|all|uid:\d+|\d{4}-\d{2}-\d{2}(T[0-9:.+\-Z]+)?)$")
#: where a mailbox's history ends (``start_at``): now, nothing, below a UID, before a time
StartKind: TypeAlias = Literal["now", "all", "uid", "date"]


class MailboxConfig(Frozen):
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
    ca_file: ConfigPath | None = None
    username: str | None = None
    #: "password", or "xoauth2" / "oauthbearer" with an oauth table
    auth: Literal["password", "xoauth2", "oauthbearer"] = "password"
    password: Secret | None = None
    oauth: OAuthConfig | None = None
    folder: str = "INBOX"
    post_action: PostAction = PostAction.LEAVE
    move_to: str | None = None
    fetch_chunk_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    fetch_chunk_count: int = Field(default=500, gt=0, le=5000)
    timeout_seconds: float = Field(default=60.0, gt=0)

    # Maildir
    path: ConfigPath | None = None

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
            needed = ("host", "username", "password") if self.auth == "password" else ("host", "username", "oauth")
            for key in needed:
                if getattr(self, key) is None:
                    raise ValueError(f"{key}: required for an imap mailbox with auth = {self.auth}")
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

    def start_point(self) -> tuple[StartKind, int | datetime | None]:
        """(kind, value): the uid for "uid", the time for "date", None for "now" and "all"."""
        if self.start_at == "now":
            return "now", None
        if self.start_at == "all":
            return "all", None
        if self.start_at.startswith("uid:"):
            return "uid", int(self.start_at[4:])
        value = datetime.fromisoformat(self.start_at.replace("Z", "+00:00"))
        if value.tzinfo is None:
            raise ConfigError(f"start_at {self.start_at!r}: give a UTC offset")
        return "date", value


class IngestConfig(Frozen):
    #: host names our own MTA writes in "Received: ... by HOST"; for files, the
    #: topmost such header gives received_at.  Empty: the topmost Received.
    receiving_hosts: tuple[str, ...] = ()
    #: worker processes for the full parse, beside the process that fetches
    #: and writes; 0 = one per core but one (at least 1)
    parse_workers: int = Field(default=0, ge=0, le=64)
    #: a received time (Received:, Date:, a file's time, INTERNALDATE) later than
    #: now plus this is not believed: the next source is used, with the reason
    max_clock_skew_minutes: int = Field(default=15, ge=0)
    #: ... nor a Received: or Date: this many days before a mailbox's start point
    #: (a new file dated 1971 is new mail, not history); the file's time is used
    max_backdate_days: int = Field(default=30, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _lists(cls, data: Any) -> Any:
        return tuples(data, ("receiving_hosts",))

    @property
    def workers(self) -> int:
        if self.parse_workers:
            return self.parse_workers
        return max(1, (os.cpu_count() or 2) - 1)
