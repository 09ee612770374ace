"""The benchmarks' help desk: its directory, its senders, its times, its configuration.

Pure helpers shared by scale.py (the batch: pending mail at a cutoff) and
peer.py (django-helpdesk beside mailcase on the same mails):

* ``directory_csv()``: 300 accounts, one per company domain of the corpus
  (tests/bench/corpus.py), with five representatives, an administrator and a
  user each; a few accounts on hold, a few requiring a PIN;
* ``desk_mail(seed, i, raw)``: corpus mail ``i`` with its sender moved onto
  those people (or left unknown), header block only;
* ``times()``: the desk's cutoffs and when each step of the batch happens;
* ``desk_settings(...)``: the part of mailcase's configuration both share.

Top-level imports stay light (the parse pool's forkserver preloads the
benchmark's ``__main__``, which imports this); the corpus is imported where used.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

from ingest import AUTHSERV_ID  # what the corpus's Authentication-Results carry

HMAC_KEY = "bench-key-0123456789abcdef0123456789"
ACCOUNTS = 300           # one per corpus company domain
SLOTS = ("representative",) * 5 + ("administrator", "user", None)  # None: not in the directory


def times() -> dict[str, Any]:
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    ny = ZoneInfo("America/New_York")
    prev = datetime(2026, 11, 23, 15, 30, tzinfo=ny).astimezone(UTC)   # Monday's 15:30 cutoff
    cutoff = datetime(2026, 11, 24, 9, 30, tzinfo=ny).astimezone(UTC)  # Tuesday's 09:30 cutoff
    return {
        "window": (prev + timedelta(minutes=1), cutoff - timedelta(minutes=1)),
        "cutoff": cutoff,
        "directory_at": datetime(2026, 1, 5, tzinfo=UTC),
        "stored_at": cutoff - timedelta(seconds=40),
        "classify_at": cutoff - timedelta(seconds=20),
        "batch_at": cutoff + timedelta(minutes=5),
        "deliver_at": cutoff + timedelta(minutes=6),
    }


def _slot(addr: str) -> int:
    return int(hashlib.sha256(addr.encode()).hexdigest()[:8], 16) % len(SLOTS)


def _person(k: int, s: int) -> tuple[str, str]:
    """(address local part, name) of slot ``s`` of account ``k``."""
    import corpus

    r = random.Random(f"desk:{k}:{s}")
    first, last = r.choice(corpus.FIRST_ASCII), r.choice(corpus.LAST_ASCII)
    return f"{first}.{last}{s}".lower(), f"{first} {last}"


def directory_csv() -> str:
    """300 accounts (the corpus's company domains): 5 representatives, an
    administrator and a user each; a few on hold, a few requiring a PIN."""
    import corpus

    lines = ["account,account_name,standing,pin_required,address,name,role,pin"]
    for k, domain in enumerate(corpus.DOMAINS):
        standing = "hold" if k % 40 == 7 else "good"
        pin_required = "yes" if k % 30 == 11 else "no"
        company = domain.split(".")[0].replace("-", " ").title()
        for s, role in enumerate(SLOTS):
            if role is None:
                continue
            local, name = _person(k, s)
            pin = f"{1000 + (k * 8 + s) % 9000}" if pin_required == "yes" else ""
            lines.append(f"C{k:03d},{company},{standing},{pin_required},{local}@{domain},{name},{role},{pin}")
    return "\n".join(lines) + "\n"


_DOMAIN_INDEX: dict[str, int] = {}


def desk_mail(seed: int, i: int, raw: bytes) -> tuple[bytes, str]:
    """Corpus mail ``i`` with its sender moved onto the desk's people: a sender at a
    company domain becomes one of that account's eight slots (five representatives,
    an administrator, a user, one not in the directory); free-mail senders stay
    (unknown).  Only the header block changes (From, Return-Path,
    Authentication-Results' smtp.mailfrom): DMARC stays aligned."""
    import corpus

    if not _DOMAIN_INDEX:
        _DOMAIN_INDEX.update({d: k for k, d in enumerate(corpus.DOMAINS)})
    b = corpus._base(seed, i)
    addr, domain = str(b["addr"]), str(b["domain"])
    if domain not in _DOMAIN_INDEX:
        return raw, addr
    local, _ = _person(_DOMAIN_INDEX[domain], _slot(addr))
    new = f"{local}@{domain}"
    head, sep, body = raw.partition(b"\r\n\r\n")
    return head.replace(addr.encode(), new.encode()) + sep + body, new


def received_at(seed: int, i: int) -> Any:
    """Mail i's arrival: uniform in the window between Monday's 15:30 and Tuesday's 09:30 cutoff."""
    start, end = times()["window"]
    frac = random.Random(f"{seed}:{i}:desk-arrival").random()
    return start + (end - start) * frac


def desk_settings(workdir: str, db_url: str, key_file: str, workers: int) -> dict[str, Any]:
    """mailcase's configuration of the desk (for ``parse_config``), without
    mailboxes or outgoing mail: the benchmark that uses it adds those."""
    return {
        "data_dir": str(Path(workdir) / "data"),
        "database": {"url": db_url},
        "ingest": {"parse_workers": workers},
        "rules": {"sender_authentication": "authserv-id", "authserv_id": AUTHSERV_ID},
        # the desk's cutoffs begin before its mail (else the first run starts the desk "now",
        # after the cutoff the pending mail waits for, and closes nothing)
        "batch": {"start_at": times()["directory_at"].isoformat()},
        "secrets": {"hmac_key": {"file": key_file}},
        "mailboxes": [],
    }
