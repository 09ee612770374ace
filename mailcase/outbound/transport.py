"""How a mail leaves: a transport takes the exact bytes of one outbox row.

Two transports: SMTP (smtp.py) and a folder of ``.eml`` files (the demo's
default, and a dry run of SMTP); :func:`transport_for` picks the configured one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.engine import Engine

from mailcase.config.settings import Config
from mailcase.domain.oauth import access_token
from mailcase.outbound.smtp import SmtpTransport


class Transport(Protocol):
    name: str

    def send(self, row_id: int, envelope_from: str, to_addr: str, raw: bytes,
             settle: Callable[[], None] | None = None) -> None:
        """Deliver or raise: TransientError to retry later, anything else fails the row.

        ``settle``, if given, is called at most once, before the mail can be
        accepted (the caller records the previous mail there); the caller calls
        it itself if ``send`` returns or raises without having called it."""
        ...


@dataclass
class FileTransport:
    """Writes each mail as ``<id>-<to>.eml`` (the demo's default, and a dry run of SMTP).

    Idempotent: a file already there means that row was delivered.
    """

    folder: Path
    name: str = "file"

    def send(self, row_id: int, envelope_from: str, to_addr: str, raw: bytes,
             settle: Callable[[], None] | None = None) -> None:
        if settle is not None:
            settle()
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "@.-_" else "_" for c in to_addr)[:80]
        path = self.folder / f"{row_id:08d}-{safe}.eml"
        if path.exists():
            return
        tmp = path.with_suffix(".tmp")
        # a customer's mail: readable by the service's user only
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
            fh.write(f"X-Envelope-From: <{envelope_from}>\r\nX-Envelope-To: <{to_addr}>\r\n".encode())
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


def transport_for(config: Config, engine: Engine | None = None, clock: Any = None) -> Transport:
    if config.outgoing.transport == "smtp":

        token = None
        oauth = config.outgoing.smtp_oauth
        if oauth is not None and engine is not None and clock is not None:

            token = lambda: access_token(engine, "smtp", oauth, clock.now())  # noqa: E731
        return SmtpTransport(config.outgoing, token=token)
    folder = config.outgoing.file_dir or str(Path(config.data_dir) / "outbox")
    return FileTransport(Path(folder))
