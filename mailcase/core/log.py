"""Logging: one event per line, ``key=value`` pairs after a short message.

Library code logs ``event=... mailbox=... message=...``; this module only
formats.  Values with spaces are quoted; newlines never reach the log (a
sender's Subject must not forge a log line).

Under systemd (``$JOURNAL_STREAM`` names our stderr) each line starts with
its syslog priority, ``<3>`` for errors, ``<4>`` warnings, ``<6>`` info,
``<7>`` debug (sd-daemon(3)), so ``journalctl -p warning`` works.  A warning
or error that repeats is written the first time, then at most once a minute
with ``repeated=N``: a database outage is a handful of lines, not one a
second.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import TextIO

_QUIET_LIBRARIES = ("mailparser", "imapclient", "alembic")
#: sd-daemon(3) priority prefixes
_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}
#: a repeated warning or error is written again (with its count) after this long
REPEAT_WINDOW = 60.0


class KeyValueFormatter(logging.Formatter):
    def __init__(self, journal: bool = False) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        msg = record.getMessage().replace("\r", "\\r").replace("\n", "\\n")
        line = f"ts={ts} level={record.levelname.lower()} logger={record.name} {msg}"
        repeated = getattr(record, "repeated", 0)
        if repeated:
            line += f" repeated={repeated}"
        if record.exc_info:
            exc = record.exc_info[1]
            first = str(exc).splitlines()[0] if str(exc) else ""
            line += " error=" + kv(f"{type(exc).__name__}: {first}")
        if self.journal:
            level = max((lv for lv in _PRIORITY if lv <= record.levelno), default=logging.DEBUG)
            line = f"<{_PRIORITY[level]}>{line}"
        return line


class RepeatFilter(logging.Filter):
    """Writes a warning or error the first time, then (while it repeats) once per window with a count."""

    def __init__(self, window: float = REPEAT_WINDOW) -> None:
        super().__init__()
        self.window = window
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, record.getMessage())
        now = time.monotonic()
        with self._lock:
            if len(self._seen) > 1000:  # forget old lines; never grow without bound
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.window}
            seen = self._seen.get(key)
            if seen is None or now - seen[0] >= self.window:
                record.repeated = seen[1] if seen else 0
                self._seen[key] = (now, 0)
                return True
            self._seen[key] = (seen[0], seen[1] + 1)
            return False


def kv(value: object) -> str:
    """A value safe to put after ``key=`` in a log line."""
    text = str(value).replace("\r", " ").replace("\n", " ")
    if not text or any(c in text for c in ' "=\\'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _journal(stream: TextIO) -> bool:
    """Whether ``stream`` is the journal's stream systemd gave us ($JOURNAL_STREAM)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return bool(value) and f"{st.st_dev}" == dev and f"{st.st_ino}" == ino


def setup(level: int = logging.WARNING, stream: TextIO | None = None) -> None:
    out = stream or sys.stderr
    handler = logging.StreamHandler(out)
    handler.setFormatter(KeyValueFormatter(journal=_journal(out)))
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(level, logging.ERROR))


def service_level(verbose: int) -> None:
    """The service logs its life at info by default (start, ready, reload, stop,
    mailboxes up and down, cutoffs, outbox progress); mailcase's own loggers only."""
    if verbose == 0:
        logging.getLogger("mailcase").setLevel(logging.INFO)
