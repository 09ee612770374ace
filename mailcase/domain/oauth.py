"""OAuth2 access tokens for IMAP and SMTP (XOAUTH2 / OAUTHBEARER).

Microsoft 365 and Google: the client-credentials flow (an app registration
with a secret) or the refresh-token flow (a token issued once by an admin
consent).  A plain call to the token endpoint (RFC 6749 §4.4 and §6), no
SDK.  Tokens are cached in the database and refreshed five minutes before
they expire; a refresh token the server rotates is persisted at once, so a
restart uses the new one.  Tokens never appear in logs or messages.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mailcase.config.credentials import OAuthConfig
from mailcase.core.errors import AuthError, TransientError
from mailcase.domain.db import insert_ignore, transaction
from mailcase.domain.tables import OAUTH_TOKEN

log = logging.getLogger(__name__)
REFRESH_AHEAD = timedelta(minutes=5)


@dataclass(frozen=True)
class TokenHealth:
    ok: bool
    detail: str


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _request(cfg: OAuthConfig, refresh_token: str | None) -> dict[str, Any]:
    form = {"client_id": cfg.client_id}
    if cfg.scope:
        form["scope"] = cfg.scope
    if cfg.client_secret is not None:
        form["client_secret"] = cfg.client_secret.read()
    if cfg.flow == "client_credentials":
        form["grant_type"] = "client_credentials"
    else:
        if not refresh_token:
            raise AuthError("oauth: no refresh token (set oauth.refresh_token for the first start)")
        form["grant_type"] = "refresh_token"
        form["refresh_token"] = refresh_token
    body = urllib.parse.urlencode(form).encode()
    req = urllib.request.Request(cfg.token_url, data=body, method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded",
                                          "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=cfg.timeout_seconds) as resp:
            data = json.loads(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        try:
            err = json.loads(exc.read().decode("utf-8"))
            why = f"{err.get('error', exc.code)}: {err.get('error_description', '')}".strip(": ")
        except Exception:
            why = f"HTTP {exc.code}"
        if exc.code in (400, 401, 403):
            raise AuthError(f"token endpoint refused: {why}") from None
        raise TransientError(f"token endpoint: {why}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TransientError(f"token endpoint unreachable: {reason}") from None
    except ValueError:
        raise TransientError("token endpoint answered something that is not JSON") from None
    if not isinstance(data, dict) or "access_token" not in data:
        raise AuthError("token endpoint gave no access_token")
    return data


def access_token(engine: Engine, name: str, cfg: OAuthConfig, now: datetime) -> str:
    """A valid access token for ``name`` ("imap:support", "smtp"), refreshed when due."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(OAUTH_TOKEN).where(OAUTH_TOKEN.c.name == name)).first()
    expires = _aware(row.expires_at) if row else None
    if row is not None and row.access_token and expires is not None and expires - now > REFRESH_AHEAD:
        return str(row.access_token)
    refresh = (row.refresh_token if row is not None and row.refresh_token else None) or (
        cfg.refresh_token.read() if cfg.refresh_token is not None else None)
    try:
        data = _request(cfg, refresh)
    except (AuthError, TransientError) as exc:
        with transaction(engine) as conn:
            insert_ignore(conn, OAUTH_TOKEN, [{"name": name}], ["name"])
            conn.execute(sa.update(OAUTH_TOKEN).where(OAUTH_TOKEN.c.name == name).values(
                last_error=str(exc)[:500], last_error_at=now))
        log.warning("event=token-refresh-failed name=%s error=%s", name, str(exc).replace(" ", "_")[:200])
        raise type(exc)(f"oauth {name}: {exc}") from None
    expires_in = int(data.get("expires_in", 3600) or 3600)
    values = {
        "access_token": str(data["access_token"]),
        "expires_at": now + timedelta(seconds=expires_in),
        "refresh_token": str(data.get("refresh_token") or refresh or "") or None,
        "updated_at": now, "last_error": None, "last_error_at": None,
    }
    with transaction(engine) as conn:
        insert_ignore(conn, OAUTH_TOKEN, [{"name": name}], ["name"])
        conn.execute(sa.update(OAUTH_TOKEN).where(OAUTH_TOKEN.c.name == name).values(**values))
    rotated = bool(data.get("refresh_token")) and data.get("refresh_token") != refresh
    log.info("event=token-refreshed name=%s expires_in=%d rotated=%s", name, expires_in, rotated)
    return values["access_token"]  # type: ignore[return-value]


def health(engine: Engine, name: str, now: datetime) -> TokenHealth:
    with engine.connect() as conn:
        row = conn.execute(sa.select(OAUTH_TOKEN).where(OAUTH_TOKEN.c.name == name)).first()
    if row is None:
        return TokenHealth(True, "no token yet")
    if row.last_error:
        return TokenHealth(False, f"refresh failing since {_aware(row.last_error_at):%Y-%m-%d %H:%M} UTC: {row.last_error}")
    expires = _aware(row.expires_at)
    if expires is None:
        return TokenHealth(False, "token without expiry")
    left = expires - now
    if left <= timedelta(0):
        return TokenHealth(False, f"token expired at {expires:%Y-%m-%d %H:%M} UTC")
    if left < REFRESH_AHEAD:
        return TokenHealth(False, f"token expires in {int(left.total_seconds() // 60)} min and is not refreshed yet")
    return TokenHealth(True, f"token valid until {expires:%Y-%m-%d %H:%M} UTC")


def imap_token(engine: Engine, cfg: Any, now_fn: Any) -> Any:
    """The token source a mailbox's IMAP login uses, or None for password logins."""
    if getattr(cfg, "auth", "password") == "password" or cfg.oauth is None:
        return None
    oauth = cfg.oauth
    return lambda: access_token(engine, f"imap:{cfg.name}", oauth, now_fn())
