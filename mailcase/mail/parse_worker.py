"""What a parse worker process runs: raw bytes in, parsed_mail columns out.

Kept free of database imports so a worker process stays small (SQLAlchemy,
SQLModel and pydantic would cost each worker about 50 MB) and starts fast;
the forkserver preloads this module.  Workers never touch the database: the
parent writes what they return (stages.py).

A worker exits when the process that owns its pool dies, even by SIGKILL
(:func:`worker_init`): otherwise it would wait for work forever, and keep the
forkserver and the resource tracker alive with it.
"""

from __future__ import annotations

import os
import select
import threading
import time
import traceback
from typing import Any

from mailcase.core import log as logsetup
from mailcase.mail.feedparser_eol import install as install_feedparser_eol
from mailcase.mail.fingerprints import fingerprint, loose_fingerprint
from mailcase.mail.headers import split_headers
from mailcase.mail.parse.message import parse_email
from mailcase.mail.pins import find_pins, pin_hmac, redact
from mailcase.mail.quoting import cut_quoted, maybe_quoted


class Failure:
    """A parse that raised: picklable, with what the quarantine records."""

    def __init__(self, exc: BaseException) -> None:
        self.exc_type = type(exc).__name__
        self.message = str(exc) or self.exc_type
        self.traceback = traceback.format_exc()


def parse_one(raw: bytes, pin_key: bytes | None = None) -> dict[str, Any] | Failure:
    """PINs are hashed here and redacted from the text before anything is stored."""
    try:
        p = parse_email(raw, identity=False)  # the ledger stored it
    except Exception as exc:
        return Failure(exc)
    # the newest part is worked out here, on a worker core, once: every pass of
    # the rules (at ingest, at each cutoff) reads it, and it costs ~3 ms a mail
    quoted = maybe_quoted(p.text_body)
    reply = cut_quoted(p.text_body) if quoted else p.text_body
    # the PIN may be in the subject, which the stored header fields hold redacted
    pins = find_pins(p.text_body, reply, subject=split_headers(raw).text("subject") or "")
    return {
        "parser": p.parser,
        "to_addrs": list(p.to),
        "cc_addrs": list(p.cc),
        "reply_to": list(p.reply_to),
        "text_body": redact(p.text_body),
        "text_sha256": fingerprint(p.text_body),
        "body_from_html": p.body_from_html,
        "attachments": [a.as_dict() for a in p.attachments],
        "defects": list(p.defects),
        "pin_hmacs": sorted({pin_hmac(pin_key, pin) for pin in pins}) if pin_key else [],
        "reply_text": redact(reply) if quoted else None,
        "loose_sha256": loose_fingerprint(redact(reply)),
    }


def parse_many(raws: list[bytes], pin_key: bytes | None = None) -> list[dict[str, Any] | Failure]:
    """One pipe round-trip per batch, not per mail."""
    return [parse_one(raw, pin_key) for raw in raws]


def prepare_process() -> None:
    """Once per process, before it parses: the standard library's MIME parser
    without its needless scan of every part (feedparser_eol.py), where that
    is safe.  The pool's workers run it from :func:`worker_init`; the parse
    stage runs it where it parses in its own process."""
    install_feedparser_eol()


def worker_init(level: int, owner: int) -> None:
    """``owner`` is the pid of the process that made the pool (the daemon)."""
    logsetup.setup(level)
    prepare_process()  # after the log is set up: a refusal is logged
    threading.Thread(target=_exit_with, args=(owner,), name="owner-watch", daemon=True).start()


def _exit_with(owner: int) -> None:
    """Exit when ``owner`` is gone.

    The worker's parent is the forkserver, not the owner, and the worker holds
    both ends of its task pipe, so nothing else tells it that the owner was
    killed.  The forkserver exits once its last worker has (each worker holds
    its "alive" pipe), and the resource tracker after them.  A pidfd turns
    readable the moment the owner exits; without one (not Linux, or an old
    kernel) the owner is looked for every second.
    """
    try:
        fd = os.pidfd_open(owner)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):
        while True:
            time.sleep(1.0)
            try:
                os.kill(owner, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass  # it exists (another user's process would be a reused pid: rare)
    select.select([fd], [], [])
    os._exit(1)
