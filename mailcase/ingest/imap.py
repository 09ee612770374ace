"""Connecting to an IMAP server: TLS, STARTTLS or loopback-only plain.

Certificates are verified against the system store (or ``ca_file``) with the
host name checked; a bad certificate fails closed.  Every failure becomes one
of mailcase's errors with a one-line message naming the mailbox and cause.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import imapclient
from imapclient.exceptions import IMAPClientError, LoginError

from mailcase.config.mailbox import MailboxConfig
from mailcase.core.errors import AuthError, ConfigError, TransientError


class TlsError(TransientError):
    """The server's certificate (or the TLS handshake) was refused."""


def ssl_context(cfg: MailboxConfig) -> ssl.SSLContext:
    try:
        ctx = ssl.create_default_context(cafile=cfg.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"mailbox {cfg.name}: ca_file {cfg.ca_file}: {exc}") from None
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _where(cfg: MailboxConfig) -> str:
    return f"imap {cfg.name} ({cfg.host}:{cfg.imap_port})"


def connect(cfg: MailboxConfig, token: Callable[[], str] | None = None) -> imapclient.IMAPClient:
    """A logged-in client; raises TransientError, TlsError or AuthError.

    With ``auth`` xoauth2/oauthbearer, ``token`` gives the access token.
    """
    assert cfg.host is not None and cfg.username is not None
    if cfg.auth == "password":
        assert cfg.password is not None
        password = cfg.password.read()
    elif token is None:
        raise ConfigError(f"mailbox {cfg.name}: auth = {cfg.auth} needs an OAuth token source")
    where = _where(cfg)
    client: imapclient.IMAPClient | None = None
    try:
        if cfg.security == "tls":
            client = imapclient.IMAPClient(
                cfg.host, port=cfg.imap_port, ssl=True, ssl_context=ssl_context(cfg),
                timeout=cfg.timeout_seconds,
            )
        else:
            client = imapclient.IMAPClient(
                cfg.host, port=cfg.imap_port, ssl=False, timeout=cfg.timeout_seconds
            )
        # imapclient sets imaplib's debug level so that imaplib formats a copy
        # of every fetched message even when nothing logs it (docs/design.md §6)
        client._imap.debug = 0
        # aware datetimes for INTERNALDATE, not naive local time
        client.normalise_times = False
        if cfg.security == "starttls":
            client.starttls(ssl_context(cfg))
        if cfg.auth == "password":
            client.login(cfg.username, password)
        elif cfg.auth == "xoauth2":
            assert token is not None
            client.oauth2_login(cfg.username, token())
        else:
            assert token is not None
            client.oauthbearer_login(cfg.username, token())
        return client
    except ssl.SSLCertVerificationError as exc:
        _close(client)
        raise TlsError(f"{where}: TLS certificate refused: {exc.verify_message}") from None
    except ssl.SSLError as exc:
        _close(client)
        raise TlsError(f"{where}: TLS failed: {exc.reason or exc}") from None
    except LoginError as exc:
        _close(client)
        detail = exc.args[0] if exc.args else ""
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise AuthError(f"{where}: login failed for {cfg.username}: {detail}") from None
    except (TimeoutError, socket.timeout):
        _close(client)
        raise TransientError(f"{where}: timed out after {cfg.timeout_seconds:g} s") from None
    except socket.gaierror as exc:
        _close(client)
        raise TransientError(f"{where}: cannot resolve host: {exc.strerror}") from None
    except OSError as exc:
        _close(client)
        raise TransientError(f"{where}: cannot connect: {exc.strerror or exc}") from None
    except IMAPClientError as exc:
        _close(client)
        raise TransientError(f"{where}: {exc}") from None


def _close(client: imapclient.IMAPClient | None) -> None:
    if client is None:
        return
    try:
        client.logout()
    except Exception:
        try:
            client.shutdown()
        except Exception:
            pass


@contextmanager
def session(cfg: MailboxConfig, token: Callable[[], str] | None = None) -> Iterator[imapclient.IMAPClient]:
    """A logged-in client, logged out at the end; server errors become TransientError."""
    client = connect(cfg, token)
    try:
        yield client
    except (TimeoutError, socket.timeout):
        raise TransientError(f"{_where(cfg)}: timed out") from None
    except (OSError, IMAPClientError) as exc:
        raise TransientError(f"{_where(cfg)}: {type(exc).__name__}: {exc}") from None
    finally:
        _close(client)
