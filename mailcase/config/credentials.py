"""Credentials: where a secret lives, the ``[secrets]`` table, and OAuth2 clients.

Secrets are never inline: a secret is a table naming a file, an environment
variable, or a systemd credential (``$CREDENTIALS_DIRECTORY/<name>``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from mailcase.config.base import ConfigPath, Frozen, is_loopback
from mailcase.core.errors import ConfigError


class Secret(Frozen):
    """Where a secret lives: exactly one of ``file``, ``env``, ``credential``."""

    file: ConfigPath | None = None
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


class SecretsConfig(Frozen):
    #: the key of every keyed hash: PINs, our Message-IDs, bounce addresses
    hmac_key: Secret | None = None


class OAuthConfig(Frozen):
    """OAuth2 for XOAUTH2/OAUTHBEARER logins (Microsoft 365, Google)."""

    token_url: str
    flow: Literal["client_credentials", "refresh_token"] = "client_credentials"
    client_id: str
    client_secret: Secret | None = None
    scope: str | None = None
    #: the first refresh token (refresh_token flow); rotated ones are kept in the database
    refresh_token: Secret | None = None
    timeout_seconds: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> OAuthConfig:
        url = self.token_url.lower()
        if not url.startswith("https://"):
            host = url.removeprefix("http://").split("/", 1)[0].rsplit(":", 1)[0]
            if not (url.startswith("http://") and is_loopback(host)):
                raise ValueError("token_url: use https:// (http only to 127.0.0.1)")
        if self.flow == "client_credentials" and self.client_secret is None:
            raise ValueError("client_secret: required for the client_credentials flow")
        return self
