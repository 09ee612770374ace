"""An SMTP sink (aiosmtpd) that records every envelope, and can misbehave on purpose.

``sink.refuse()`` stops listening (connection refused), ``sink.tempfail = True``
answers 451 to every recipient, ``sink.reject = {"addr"}`` answers 550 for
those recipients; ``sink.accept()`` brings it back.  ``SmtpSink(smtputf8=False)``
is a server that does not offer SMTPUTF8.
"""

from __future__ import annotations

import email
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default
from typing import Any

from aiosmtpd.controller import Controller

from servers.dovecot import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=default)


@dataclass
class SmtpSink:
    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    tempfail: bool = False
    reject: set[str] = field(default_factory=set)
    #: offer SMTPUTF8 (RFC 6531); False: a server that cannot take internationalised addresses
    smtputf8: bool = True
    _controller: Controller | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # aiosmtpd handler hooks
    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        if self.tempfail:
            return "451 4.3.0 try again later"
        if address.lower() in self.reject:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content or envelope.content)))
        return "250 Message accepted for delivery"

    def start(self) -> SmtpSink:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, enable_SMTPUTF8=self.smtputf8)
        self._controller.start()
        return self

    def refuse(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def accept(self) -> None:
        self.tempfail = False
        if self._controller is None:
            self.start()

    def stop(self) -> None:
        self.refuse()

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address in r.rcpt_tos]
