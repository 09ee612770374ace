"""Delivering over SMTP: implicit TLS, STARTTLS (certificate verified), or plain to 127.0.0.1.

One connection serves a whole delivery run (and the next, while mail keeps
coming); one the server closed meanwhile is opened again.  A 4xx reply or a connection
problem is a :class:`TransientError` (the row is retried with backoff); a
5xx reply is a :class:`PermanentDeliveryError` (the row fails).
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from mailcase.config.outgoing import OutgoingConfig
from mailcase.core.errors import AuthError, ConfigError, MailcaseError, TransientError
from mailcase.mail.addresses import AddressError, addr_spec


class PermanentDeliveryError(MailcaseError):
    """The server refused this mail for good (5xx)."""


class _Closed(Exception):
    """A connection kept from earlier mails was closed by the server before this
    mail's MAIL FROM was answered: nothing of the mail went out."""


def _classify(code: int, text: str, where: str) -> MailcaseError:
    msg = f"{where}: {code} {text}".strip()
    return PermanentDeliveryError(msg) if 500 <= code < 600 else TransientError(msg)


#: a line of the data starting with a dot gets another (RFC 5321 §4.5.2)
_LEADING_DOT = re.compile(rb"(?m)^\.")


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


@dataclass
class SmtpTransport:
    config: OutgoingConfig
    name: str = "smtp"
    #: gives the XOAUTH2 access token when smtp_oauth is configured
    token: Callable[[], str] | None = None
    _conn: smtplib.SMTP | None = field(default=None, repr=False)

    @property
    def where(self) -> str:
        return f"smtp {self.config.smtp_host}:{self.config.smtp_port_number}"

    def _context(self) -> ssl.SSLContext:
        try:
            ctx = ssl.create_default_context(cafile=self.config.smtp_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"outgoing.smtp_ca_file {self.config.smtp_ca_file}: {exc}") from None
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        assert c.smtp_host is not None
        try:
            if c.smtp_security == "tls":
                conn: smtplib.SMTP = smtplib.SMTP_SSL(
                    c.smtp_host, c.smtp_port_number, timeout=c.smtp_timeout_seconds, context=self._context())
            else:
                conn = smtplib.SMTP(c.smtp_host, c.smtp_port_number, timeout=c.smtp_timeout_seconds)
                if c.smtp_security == "starttls":
                    conn.starttls(context=self._context())
            if conn.sock is not None:
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if c.smtp_username and c.smtp_oauth is not None and self.token is not None:
                bearer = self.token()
                user = c.smtp_username
                conn.ehlo_or_helo_if_needed()
                conn.auth("XOAUTH2", lambda challenge=None: f"user={user}\x01auth=Bearer {bearer}\x01\x01",
                          initial_response_ok=True)
            elif c.smtp_username:
                assert c.smtp_password is not None
                conn.login(c.smtp_username, c.smtp_password.read())
            return conn
        except ssl.SSLCertVerificationError as exc:
            raise TransientError(f"{self.where}: TLS certificate refused: {exc.verify_message}") from None
        except smtplib.SMTPAuthenticationError as exc:
            raise AuthError(f"{self.where}: login refused: {exc.smtp_code} {_text(exc.smtp_error)}") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise TransientError(f"{self.where}: {exc}") from None
        except smtplib.SMTPResponseException as exc:
            raise TransientError(f"{self.where}: {exc.smtp_code} {_text(exc.smtp_error)}") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientError(f"{self.where}: cannot connect: {getattr(exc, 'strerror', None) or exc}") from None

    def send(self, row_id: int, envelope_from: str, to_addr: str, raw: bytes,
             settle: Callable[[], None] | None = None) -> None:
        """One SMTP transaction; after any failure the session is reset (RSET)
        or dropped, so the next mail starts clean (RFC 5321 §4.1.1.5).

        ``settle`` is called once the data is written, before its end: the
        caller waits there until the previous mail is recorded, so that this
        one cannot be accepted before.  A connection kept from earlier mails
        that the server has closed meanwhile (an idle timeout, a limit of
        mails per session) is opened again and the mail sent on it: nothing
        of it had gone out.
        """
        try:
            rcpt, rcpt_utf8 = addr_spec(to_addr)
            sender, sender_utf8 = addr_spec(envelope_from)
        except AddressError as exc:
            raise PermanentDeliveryError(f"{self.where}: {exc}") from None
        utf8 = rcpt_utf8 or sender_utf8 or not raw.isascii()
        waiting = [settle] if settle is not None else []

        def once() -> None:
            if waiting:
                waiting.pop()()

        try:
            self._send(sender, rcpt, raw, utf8, once)
        except _Closed:
            self.close()
            self._send(sender, rcpt, raw, utf8, once)

    def _send(self, sender: str, rcpt: str, raw: bytes, utf8: bool, settle: Callable[[], None]) -> None:
        reused = self._conn is not None
        if self._conn is None:
            self._conn = self._connect()
        conn = self._conn
        try:
            self._transaction(conn, sender, rcpt, raw, utf8, settle, reused)
        except _Closed:
            raise
        except (smtplib.SMTPServerDisconnected, OSError, socket.timeout) as exc:
            self.close()
            raise TransientError(f"{self.where}: connection lost: {exc}") from None
        except MailcaseError:
            self._reset()
            raise
        except smtplib.SMTPResponseException as exc:
            self._reset()
            raise _classify(exc.smtp_code, _text(exc.smtp_error), self.where) from None
        except Exception:
            self._reset()
            raise

    def _transaction(self, conn: smtplib.SMTP, sender: str, rcpt: str, raw: bytes, utf8: bool,
                     settle: Callable[[], None], reused: bool) -> None:
        conn.ehlo_or_helo_if_needed()
        options = ""
        if utf8:
            if not conn.has_extn("smtputf8"):
                raise PermanentDeliveryError(
                    f"{self.where}: the server does not offer SMTPUTF8, which mail to {rcpt} needs "
                    "(an internationalised address, RFC 6531)")
            options = " SMTPUTF8" + (" BODY=8BITMIME" if conn.has_extn("8bitmime") else "")
            conn.command_encoding = "utf-8"
        else:
            conn.command_encoding = "ascii"
        # the addresses are written here, quoted as composed: smtplib's
        # quoteaddr re-parses them with parseaddr, which splits "x<y"@z.org
        try:
            code, resp = conn.docmd("MAIL", f"FROM:<{sender}>{options}")
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            if reused:
                raise _Closed() from exc
            raise
        if code == 421 and reused:
            raise _Closed()
        if code != 250:
            raise _classify(code, _text(resp), f"{self.where}: sender {sender}")
        code, resp = conn.docmd("RCPT", f"TO:<{rcpt}>")
        if code not in (250, 251):
            raise _classify(code, _text(resp), f"{self.where}: recipient {rcpt}")
        code, resp = conn.docmd("DATA")
        if code != 354:
            raise _classify(code, _text(resp), f"{self.where}: data")
        # the data as smtplib's data() sends it (lines starting with a dot doubled), its
        # end apart: the server can accept the mail only once it has that (two writes
        # before a read: the connection is made with TCP_NODELAY, else Nagle holds the
        # second until the server's delayed acknowledgement of the first, 40 ms)
        body = _LEADING_DOT.sub(b"..", raw)
        conn.send(body if body.endswith(b"\r\n") else body + b"\r\n")
        try:
            settle()
        except BaseException:
            self._drop()  # mid-data: the session cannot go on
            raise
        conn.send(b".\r\n")
        code, resp = conn.getreply()
        if code != 250:
            raise _classify(code, _text(resp), f"{self.where}: data")

    def _drop(self) -> None:
        """Close the socket without QUIT (the session is out of step)."""
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    def _reset(self) -> None:
        """Back to a clean session after a failed transaction; drop it if that fails."""
        if self._conn is None:
            return
        try:
            code, _ = self._conn.rset()
            if code == 250:
                return
        except Exception:
            pass
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.quit()
            except Exception:
                try:
                    self._conn.close()
                except Exception:
                    pass
            self._conn = None

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
