"""``mailcase reprocess SOURCE``: import a mailbox, Maildir, mbox or .eml folder.

Idempotent (copies already stored from the same source add nothing) and
historical by default: imported mail is kept, threaded and searchable, but
never becomes a case or a reason to send mail unless the operator asks with
``create_cases``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from sqlalchemy.engine import Engine

from mailcase.config.settings import Config
from mailcase.core.errors import UsageError
from mailcase.domain.lease import Lease
from mailcase.ingest.fetch import arrival_window
from mailcase.ingest.imap_reprocess import reprocess_imap
from mailcase.ingest.ledger import Tally
from mailcase.ingest.mailbox_state import mailbox_source
from mailcase.ingest.sources import FileKind, detect, incoming_from_files
from mailcase.ingest.stream import store_stream


@dataclass(frozen=True)
class ReprocessRequest:
    source: str
    since: date | None = None
    uid_range: tuple[int, int | None] | None = None
    dry_run: bool = False
    create_cases: bool = False


def parse_uid_range(text: str) -> tuple[int, int | None]:
    lo, sep, hi = text.partition(":")
    try:
        start = int(lo)
        end = None if (sep and hi in ("", "*")) else int(hi if sep else lo)
    except ValueError:
        raise UsageError(f"--uids {text!r}: use N, N:M or N:*") from None
    if start < 1 or (end is not None and end < start):
        raise UsageError(f"--uids {text!r}: not a UID range")
    return start, end


def reprocess(
    engine: Engine,
    config: Config,
    req: ReprocessRequest,
    now: datetime,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> tuple[str, Tally]:
    """Returns (a description of the source, what happened)."""
    historical = not req.create_cases
    names = {m.name: m for m in config.mailboxes}
    if req.source in names:
        cfg = names[req.source]
        if cfg.kind == "imap":
            tally = reprocess_imap(
                engine, cfg, now, since=req.since, uid_range=req.uid_range,
                historical=historical, dry_run=req.dry_run, progress=progress, on_total=on_total,
            )
            return f"mailbox {cfg.name}", tally
        assert cfg.path is not None
        return f"mailbox {cfg.name}", _files(
            engine, config, Path(cfg.path), mailbox_source(cfg.name), req, now, progress,
            kind=FileKind.MAILDIR, mailbox_name=cfg.name,
        )
    if req.uid_range:
        raise UsageError("--uids applies to a configured IMAP mailbox only")
    path = Path(req.source)
    if not path.exists():
        known = ", ".join(sorted(names)) or "none configured"
        raise UsageError(f"{req.source}: not a configured mailbox ({known}) nor a path")
    kind = detect(path)
    source = f"{kind.value}:{path.resolve()}"
    return f"{kind.value} {path}", _files(engine, config, path, source, req, now, progress, kind=kind)


def _files(
    engine: Engine,
    config: Config,
    path: Path,
    source: str,
    req: ReprocessRequest,
    now: datetime,
    progress: Callable[[int], None] | None,
    *,
    kind: FileKind,
    mailbox_name: str | None = None,
) -> Tally:
    items = incoming_from_files(
        path, source, historical=not req.create_cases,
        receiving_hosts=config.ingest.receiving_hosts, kind=kind, mailbox_name=mailbox_name,
        window=arrival_window(config, now),
    )
    if req.since:
        since = req.since
        items = (i for i in items if i.received_at is None or i.received_at.date() >= since)
    lease_name = f"mailbox:{mailbox_name}" if mailbox_name else f"source:{source}"[:100]
    with Lease(engine, lease_name, "reprocess") as lease:
        return store_stream(engine, items, now, dry_run=req.dry_run, progress=progress, lease=lease)
