"""Logging: one event per line, ``key=value`` pairs after a short message.

Library code logs ``event=... mailbox=... message=...``; this module only
formats.  Values with spaces are quoted; newlines never reach the log (a
sender's Subject must not forge a log line).
"""

from __future__ import annotations

import logging
import sys
import time

_QUIET_LIBRARIES = ("mailparser", "imapclient", "alembic")


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        msg = record.getMessage().replace("\r", "\\r").replace("\n", "\\n")
        line = f"ts={ts} level={record.levelname.lower()} logger={record.name} {msg}"
        if record.exc_info:
            exc = record.exc_info[1]
            line += f' error="{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ""}"'
        return line


def kv(value: object) -> str:
    """A value safe to put after ``key=`` in a log line."""
    text = str(value).replace("\r", " ").replace("\n", " ")
    if not text or any(c in text for c in ' "='):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def setup(level: int = logging.WARNING, stream: object = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(level, logging.ERROR))
