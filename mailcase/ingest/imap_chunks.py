"""Reading new mail off an IMAP folder: sizes, chunks bounded by bytes and count, one chunk into :class:`Incoming`.

Mail over the size limit keeps only its headers (``BODY.PEEK[HEADER]``) and
carries the reason it is quarantined; it stays on the server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import imapclient

from mailcase.config.mailbox import MailboxConfig
from mailcase.core.states import ReceivedSource
from mailcase.ingest.ledger import Incoming
from mailcase.ingest.mailbox_state import mailbox_source
from mailcase.ingest.sources import Plausible

log = logging.getLogger(__name__)

SIZE_QUERY_CHUNK = 5000  # a UID list of ~20,000 gets BAD from some servers (docs/design.md §6)


def plan_chunks(
    sizes: dict[int, int], max_bytes: int, max_count: int, limit: int
) -> Iterator[list[int]]:
    """UIDs in ascending order, grouped so a chunk stays under both bounds."""
    chunk: list[int] = []
    total = 0
    for uid in sorted(sizes):
        size = min(sizes[uid], limit)
        if chunk and (total + size > max_bytes or len(chunk) >= max_count):
            yield chunk
            chunk, total = [], 0
        chunk.append(uid)
        total += size
    if chunk:
        yield chunk


def message_sizes(client: imapclient.IMAPClient, uids: Sequence[int]) -> dict[int, int]:
    sizes: dict[int, int] = {}
    for i in range(0, len(uids), SIZE_QUERY_CHUNK):
        part = list(uids[i : i + SIZE_QUERY_CHUNK])
        for uid, data in client.fetch(part, ["RFC822.SIZE"]).items():
            sizes[int(uid)] = int(data.get(b"RFC822.SIZE", 0))
    return sizes


def fetch_chunk(
    client: imapclient.IMAPClient,
    cfg: MailboxConfig,
    chunk: list[int],
    sizes: dict[int, int],
    uidvalidity: int,
    is_historical: Callable[[int, datetime | None], bool],
    post_action: str | None,
    window: Plausible | None = None,
) -> list[Incoming]:
    limit = cfg.max_message_bytes
    normal = [u for u in chunk if sizes[u] <= limit]
    big = {u for u in chunk if sizes[u] > limit}
    items: list[Incoming] = []
    fetched: dict[int, dict[bytes, Any]] = {}
    if normal:
        fetched.update(client.fetch(normal, ["BODY.PEEK[]", "INTERNALDATE"]))
    if big:
        for uid, data in client.fetch(sorted(big), ["BODY.PEEK[HEADER]", "INTERNALDATE"]).items():
            fetched[uid] = {
                b"BODY[]": data.get(b"BODY[HEADER]", b""),
                b"INTERNALDATE": data.get(b"INTERNALDATE"),
            }
    for uid in chunk:
        data = fetched.get(uid)
        if data is None:
            log.info("mailbox=%s uid=%s event=vanished-before-fetch", cfg.name, uid)
            continue
        raw = data.get(b"BODY[]")
        if not isinstance(raw, bytes):
            log.warning("mailbox=%s uid=%s event=no-body-in-fetch", cfg.name, uid)
            continue
        internal = data.get(b"INTERNALDATE")
        at = internal if isinstance(internal, datetime) and internal.tzinfo else None
        how, note = ReceivedSource.INTERNALDATE, None
        why = window.problem(at) if window is not None and at is not None else None
        if why is not None and window is not None and at is not None:
            # an APPEND can set any INTERNALDATE: 1971 or 2150 is not when it arrived
            how, note = ReceivedSource.STORED_AT, f"internaldate {at:%Y-%m-%d %H:%M} UTC {why}"
            at = window.now
        big_one = uid in big
        items.append(
            Incoming(
                source=mailbox_source(cfg.name),
                source_key=f"{uidvalidity}:{uid}",
                raw=raw,
                received_at=at,
                received_source=how,
                received_note=note,
                historical=is_historical(uid, at),
                mailbox=cfg.name,
                uidvalidity=uidvalidity,
                uid=uid,
                post_action=None if big_one else post_action,
                truncated_from=sizes[uid] if big_one else None,
                quarantine_reason=(
                    f"message is {sizes[uid]} bytes, over max_message_bytes {limit}:"
                    " headers kept, mail left on the server"
                    if big_one
                    else None
                ),
            )
        )
    return items
