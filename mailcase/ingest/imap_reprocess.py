"""Re-reading an IMAP mailbox (read-only) into the ledger for ``mailcase reprocess``.

No post-actions and no change to the high-water mark: copies already stored
count as duplicates, the rest are fetched in chunks and stored (or, on a dry
run, counted).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from sqlalchemy.engine import Engine

from mailcase.config.mailbox import MailboxConfig
from mailcase.domain.lease import Lease
from mailcase.domain.oauth import imap_token
from mailcase.ingest.imap import session
from mailcase.ingest.imap_chunks import fetch_chunk, message_sizes, plan_chunks
from mailcase.ingest.ledger import Stored, StoreResult, Tally, existing_copies
from mailcase.ingest.mailbox_state import mailbox_source
from mailcase.ingest.stream import Progress, store_chunk


def reprocess_imap(
    engine: Engine,
    cfg: MailboxConfig,
    now: datetime,
    *,
    since: date | None,
    uid_range: tuple[int, int | None] | None,
    historical: bool,
    dry_run: bool,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
) -> Tally:
    """Read a mailbox (read-only) into the ledger; no post-actions, no high-water change."""
    tally = Tally()
    token = imap_token(engine, cfg, lambda: now)
    with Lease(engine, f"mailbox:{cfg.name}", "reprocess") as lease, session(cfg, token) as client:
        info = client.select_folder(cfg.folder, readonly=True)
        uidvalidity = int(info[b"UIDVALIDITY"])
        criteria: list[Any] = []
        if since:
            criteria += ["SINCE", since]
        if uid_range:
            lo, hi = uid_range
            criteria += ["UID", f"{lo}:{hi if hi is not None else '*'}"]
        uids = sorted(int(u) for u in client.search(criteria or ["ALL"]))
        if uid_range:
            lo, hi = uid_range
            uids = [u for u in uids if u >= lo and (hi is None or u <= hi)]
        if on_total:
            on_total(len(uids))
        source = mailbox_source(cfg.name)
        with engine.connect() as conn:
            known = existing_copies(conn, source, [f"{uidvalidity}:{u}" for u in uids])
        for k, (pk, hist) in known.items():
            tally.add([StoreResult(Stored.DUPLICATE, pk, hist)])
        todo = [u for u in uids if f"{uidvalidity}:{u}" not in known]
        if progress and known:
            progress(len(known))
        sizes = message_sizes(client, todo)
        for chunk in plan_chunks(
            sizes, cfg.fetch_chunk_bytes, cfg.fetch_chunk_count, cfg.max_message_bytes
        ):
            items = fetch_chunk(
                client, cfg, chunk, sizes, uidvalidity, lambda _u, _a: historical, None
            )
            tally.add(store_chunk(engine, items, now, dry_run))
            lease.renew_if_due()
            if progress:
                progress(len(chunk))
    return tally
