"""The service running for real on a test clock: Dovecot in, an SMTP sink out, time moved by the test.

The week at the desk and the staff mail end to end both drive the daemon the
same way: start it with a directory and the sink, append mail to the IMAP
account, move the clock to a moment (and, at a cutoff, wait for it to close),
then wait until everything stored is classified and everything due is sent.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from helpers import ImapAccount, reap, terminate, write_config
from servers.notify import NotifyListener
from servers.smtp import SmtpSink
from test_daemon import _wait

from mailcase.domain.db import open_engine
from mailcase.domain.tables import BATCH, MESSAGE, OUTBOX

#: classified mail is at rest; these states mean the service has work left
UNFINISHED = ["stored", "headers-read", "parsed"]


class RunningDesk:
    """``mailcase run`` against ``imap``, delivering into its own SMTP sink, on a clock file."""

    def __init__(self, imap: ImapAccount, db_url: str, tmp: Path, start: datetime, directory_csv: str,
                 **sections: Any) -> None:
        self.imap = imap
        csv = tmp / "accounts.csv"
        csv.write_text(directory_csv)
        self.sink = SmtpSink().start()
        self.cfg = write_config(
            tmp / "c.toml", db_url, [imap.mailbox_config(start_at="all")],
            rules={"sender_authentication": "authserv-id", "authserv_id": "mx.support.example"},
            directory={"csv": str(csv), "effective": "2025-01-01T00:00:00+00:00"},
            daemon={"stage_seconds": 1.0, "batch_seconds": 1.0, "deliver_seconds": 1.0, "housekeeping_seconds": 1.0},
            outgoing={"from_address": "support@support.example", "transport": "smtp", "smtp_host": "127.0.0.1",
                      "smtp_port": self.sink.port, "smtp_security": "plain"},
            **sections,
        )
        self.clock = tmp / "clock"
        self.clock.write_text(start.isoformat())
        #: what the test clock says, as :meth:`at` moved it
        self.now = start
        #: for CLI commands run beside the service: the same clock
        self.cli_env = {"MAILCASE_TEST_CLOCK": str(self.clock)}
        self.notify = NotifyListener(tmp / "notify.sock")
        env = {**os.environ, **self.cli_env, "NOTIFY_SOCKET": str(self.notify.path)}
        self.log = (tmp / "daemon.log").open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "mailcase", "--config", str(self.cfg), "run"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        self.engine = open_engine(db_url)
        #: mails appended to the mailbox so far
        self.appended = 0

    def __enter__(self) -> RunningDesk:
        _wait(lambda: self.notify.count("READY=1") == 1, 60)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        reap(self.proc)
        self.sink.stop()
        self.notify.close()
        self.log.close()

    def append(self, raw: bytes, when: datetime) -> None:
        self.imap.append(raw, when=when)
        self.appended += 1

    def count(self, query: Any) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def closed(self, cutoff: datetime) -> bool:
        return self.count(sa.select(sa.func.count()).select_from(BATCH).where(BATCH.c.cutoff_at == cutoff)) == 1

    def settled(self) -> bool:
        """Every appended mail stored and classified, nothing due left unsent."""
        unfinished = self.count(sa.select(sa.func.count()).select_from(MESSAGE).where(
            MESSAGE.c.state.in_(UNFINISHED)))
        unsent = self.count(sa.select(sa.func.count()).select_from(OUTBOX).where(
            OUTBOX.c.status.in_(["queued", "sending"]), OUTBOX.c.next_attempt_at <= self.now))
        stored = self.count(sa.select(sa.func.count()).select_from(MESSAGE))
        return stored == self.appended and unfinished == 0 and unsent == 0

    def at(self, moment: datetime, cutoff: datetime | None = None) -> None:
        """Move the clock to ``moment``; wait for ``cutoff`` to close, if given, and for the desk to settle."""
        self.now = moment
        self.clock.write_text(moment.isoformat())
        if cutoff is not None:
            _wait(lambda: self.closed(cutoff), 60, 0.2)
        _wait(self.settled, 60, 0.2)

    def stop(self) -> int:
        """A clean stop: the service must still be running; its exit status."""
        return terminate(self.proc)
