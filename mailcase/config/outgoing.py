"""What goes out: the ``[outgoing]`` mail server and sender, ``[surveys]`` and the ``[kb]`` articles."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from mailcase.config.base import ConfigPath, Frozen, is_loopback
from mailcase.config.credentials import OAuthConfig, Secret


class OutgoingConfig(Frozen):
    #: the address acknowledgements and notices come from (replies come back here)
    from_address: str = "support@example.org"
    from_name: str = "Support"
    #: the domain in our Message-IDs; default: the from_address domain
    message_id_domain: str | None = None
    #: the envelope sender base: bounces+<row>-<mac>@domain (VERP); never an
    #: intake address.  Default: bounces@<from_address domain>
    bounce_address: str | None = None
    #: "file" writes each mail as an .eml into file_dir (the demo's default);
    #: "smtp" delivers through the smtp_* server (the default once smtp_host is set)
    transport: Literal["file", "smtp"] = "file"
    #: for transport = "file"; default: <data_dir>/outbox
    file_dir: ConfigPath | None = None
    smtp_host: str | None = None
    #: default: 465 for tls, 587 for starttls, 25 for plain
    smtp_port: int | None = Field(default=None, gt=0, lt=65536)
    #: "tls" (implicit), "starttls" or "plain" (127.0.0.1 only); certificates verified
    smtp_security: Literal["tls", "starttls", "plain"] = "starttls"
    smtp_ca_file: ConfigPath | None = None
    smtp_username: str | None = None
    smtp_password: Secret | None = None
    #: log in with XOAUTH2 and this OAuth2 client instead of smtp_password
    smtp_oauth: OAuthConfig | None = None
    smtp_timeout_seconds: float = Field(default=60.0, gt=0)
    #: automatic mail (notices, resolutions, surveys) to one address per 24 h;
    #: acknowledgements of an eligible requester's cases are never capped
    daily_cap_per_address: int = Field(default=10, ge=1)
    #: more matched hard bounces than this within an hour pause suppression
    #: (our own relay failing looks like every customer bouncing) and alert
    bounce_spike_per_hour: int = Field(default=20, ge=1)
    #: override folder in front of the packaged templates: a file there replaces the
    #: packaged one of the same name (outbound/render.py); it must exist when set
    templates_dir: ConfigPath | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_transport(cls, data: Any) -> Any:
        """A configured SMTP server is used unless the file transport is asked for."""
        if isinstance(data, dict) and "transport" not in data and data.get("smtp_host"):
            return {**data, "transport": "smtp"}
        return data

    @model_validator(mode="after")
    def _check(self) -> OutgoingConfig:
        if self.transport == "smtp":
            if not self.smtp_host:
                raise ValueError("smtp_host: required when transport = smtp")
            if self.smtp_security == "plain" and not is_loopback(self.smtp_host):
                raise ValueError("smtp_security: plain SMTP is allowed to 127.0.0.1 only; use tls or starttls")
            if self.smtp_username and self.smtp_password is None and self.smtp_oauth is None:
                raise ValueError("smtp_password: required with smtp_username (or smtp_oauth)")
        return self

    @property
    def domain(self) -> str:
        return self.message_id_domain or self.from_address.rpartition("@")[2].lower()

    @property
    def bounce_base(self) -> str:
        return (self.bounce_address or f"bounces@{self.from_address.rpartition('@')[2]}").lower()

    @property
    def smtp_port_number(self) -> int:
        if self.smtp_port:
            return self.smtp_port
        return {"tls": 465, "starttls": 587, "plain": 25}[self.smtp_security]


class SurveyConfig(Frozen):
    #: hours after a resolution before its satisfaction survey goes out
    delay_hours: float = Field(default=24.0, ge=0)
    #: no survey to a person surveyed within this many days (across all cases)
    quiet_days: int = Field(default=14, ge=0)


class KbConfig(Frozen):
    #: a folder of Markdown articles (front matter title: and url:) or a CSV
    #: (title, url, body); reindexed at start and whenever it changes
    path: ConfigPath | None = None
    #: articles listed in an acknowledgement
    suggestions: int = Field(default=3, ge=0, le=10)
    #: how much of a request an article must cover to be suggested (0-1)
    min_score: float = Field(default=0.3, gt=0, le=1)
    #: an article covering this much of a request flags it "kb-answer"
    answer_score: float = Field(default=0.9, gt=0, le=1)
