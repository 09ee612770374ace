"""Re-fetching over-size mail an operator put back for retry, under the current size limit.

``quarantine retry`` of a fetch-stage entry returns the message to
``stored``; the next sync fetches its bytes again (IMAP) or reads the file
again (Maildir).  Still too large, or gone: quarantined again with the reason.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import imapclient
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mailcase.config.mailbox import MailboxConfig
from mailcase.core.errors import MessageError
from mailcase.core.states import MessageState, Stage
from mailcase.domain.db import insert_ignore, transaction
from mailcase.domain.tables import BLOB, MESSAGE, RAW_COPY
from mailcase.ingest.mailbox_state import mailbox_source
from mailcase.ingest.quarantine import quarantine
from mailcase.ingest.sources import maildir_files

log = logging.getLogger(__name__)


def _released(engine: Engine, source: str, uidvalidity: int | None = None) -> list[Any]:
    """Truncated (over-size) copies an operator put back for retry: (copy id, uid, key, message)."""
    with engine.connect() as conn:
        q = (
            sa.select(RAW_COPY.c.id, RAW_COPY.c.uid, RAW_COPY.c.source_key, RAW_COPY.c.message_pk)
            .join(MESSAGE, MESSAGE.c.id == RAW_COPY.c.message_pk)
            .where(RAW_COPY.c.source == source, RAW_COPY.c.truncated_from.is_not(None),
                   MESSAGE.c.state == MessageState.STORED.value)
        )
        if uidvalidity is not None:
            q = q.where(RAW_COPY.c.uidvalidity == uidvalidity)
        return list(conn.execute(q).all())


def _store_full(
    engine: Engine, cfg: MailboxConfig, copy_id: int, pk: int, size: int, raw: bytes | None,
    post_action: str | None, now: datetime, gone: str,
) -> bool:
    """Store a released mail's full bytes, or quarantine it again with the reason."""
    with transaction(engine) as conn:
        if raw is None and size < 0:
            quarantine(conn, pk, Stage.FETCH, MessageError(gone), now)
            return False
        if size > cfg.max_message_bytes or raw is None:
            quarantine(conn, pk, Stage.FETCH, MessageError(
                f"message is {size} bytes, over max_message_bytes {cfg.max_message_bytes}:"
                " headers kept, mail left where it is"), now)
            return False
        sha = hashlib.sha256(raw).hexdigest()
        insert_ignore(conn, BLOB, [{"sha256": sha, "size": len(raw), "data": raw}], ["sha256"])
        conn.execute(sa.update(RAW_COPY).where(RAW_COPY.c.id == copy_id).values(
            sha256=sha, size=len(raw), truncated_from=None, post_action=post_action))
        conn.execute(sa.update(MESSAGE).where(MESSAGE.c.id == pk).values(primary_sha256=sha))
    log.info("event=refetched mailbox=%s message=%s bytes=%d", cfg.name, pk, len(raw))
    return True


def refetch_released(
    engine: Engine,
    client: imapclient.IMAPClient,
    cfg: MailboxConfig,
    uidvalidity: int,
    post_action: str | None,
    now: datetime,
) -> None:
    """Fetch in full the over-size mails of an IMAP mailbox an operator put back for retry."""
    for copy_id, uid, _key, pk in _released(engine, mailbox_source(cfg.name), uidvalidity):
        data = client.fetch([uid], ["RFC822.SIZE", "BODY.PEEK[]"]).get(uid)
        size = int(data.get(b"RFC822.SIZE", 0)) if data else -1
        raw = data.get(b"BODY[]") if data else None
        _store_full(engine, cfg, copy_id, pk, size, raw if isinstance(raw, bytes) else None, post_action, now,
                    f"UID {uid} is no longer on the server; headers kept")


def reread_released(engine: Engine, cfg: MailboxConfig, path: Path, now: datetime) -> None:
    """The same for a Maildir mailbox: read the file again under the current limit."""
    released = _released(engine, mailbox_source(cfg.name))
    if not released:
        return
    files = dict(maildir_files(path))
    for copy_id, _uid, key, pk in released:
        file = files.get(key)
        try:
            size = file.stat().st_size if file else -1
            raw = file.read_bytes() if file and size <= cfg.max_message_bytes else None
        except OSError:
            size, raw = -1, None
        _store_full(engine, cfg, copy_id, pk, size, raw, None, now, f"{key} is no longer in {path}; headers kept")
