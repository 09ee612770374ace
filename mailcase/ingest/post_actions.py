"""What a sync does on the server after the commit: flag \\Seen or move the mail it stored.

The post-action owed is written with the raw copy, so a crash between the
commit and the action is repaired by the next sync (:func:`owed_post_actions`).
A move without the MOVE extension is COPY, flag \\Deleted and UID EXPUNGE --
never a plain EXPUNGE, which would remove other clients' \\Deleted mail too.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

import imapclient
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mailcase.config.mailbox import MailboxConfig
from mailcase.core.states import PostAction
from mailcase.domain.db import transaction
from mailcase.domain.tables import RAW_COPY
from mailcase.ingest.mailbox_state import mailbox_source

log = logging.getLogger(__name__)

#: how a stored move starts: ``move:<folder>``
MOVE_PREFIX = f"{PostAction.MOVE.value}:"


def post_action_for(cfg: MailboxConfig) -> str | None:
    """The action a raw copy owes the server, as stored: ``seen`` or ``move:<folder>``."""
    if cfg.post_action is PostAction.SEEN:
        return PostAction.SEEN.value
    if cfg.post_action is PostAction.MOVE:
        return f"{MOVE_PREFIX}{cfg.move_to}"
    return None


def ensure_folder(client: imapclient.IMAPClient, folder: str) -> None:
    if not client.folder_exists(folder):
        client.create_folder(folder)


def do_post_actions(
    client: imapclient.IMAPClient, cfg: MailboxConfig, owed: Sequence[tuple[int, int, str]]
) -> list[int]:
    """Perform (raw copy id, uid, action) on the server; returns the ids done."""
    done: list[int] = []
    seen = [(cid, uid) for cid, uid, action in owed if action == PostAction.SEEN]
    if seen:
        client.add_flags([uid for _, uid in seen], [imapclient.SEEN], silent=True)
        done.extend(cid for cid, _ in seen)
    moves: dict[str, list[tuple[int, int]]] = {}
    for cid, uid, action in owed:
        if action.startswith(MOVE_PREFIX):
            moves.setdefault(action[len(MOVE_PREFIX):], []).append((cid, uid))
    for folder, pairs in moves.items():
        uids = [uid for _, uid in pairs]
        if client.has_capability("MOVE"):
            client.move(uids, folder)
        else:
            client.copy(uids, folder)
            client.add_flags(uids, [imapclient.DELETED], silent=True)
            if client.has_capability("UIDPLUS"):
                client.uid_expunge(uids)
            else:
                # never a plain EXPUNGE: it would remove other clients' \Deleted mail too
                log.warning(
                    "mailbox=%s event=no-uidplus detail=moved mail left flagged \\Deleted", cfg.name
                )
        done.extend(cid for cid, _ in pairs)
    return done


def owed_post_actions(conn: Connection, name: str, uidvalidity: int) -> list[tuple[int, int, str]]:
    rows = conn.execute(
        sa.select(RAW_COPY.c.id, RAW_COPY.c.uid, RAW_COPY.c.post_action).where(
            RAW_COPY.c.mailbox == name,
            RAW_COPY.c.source == mailbox_source(name),
            RAW_COPY.c.uidvalidity == uidvalidity,
            RAW_COPY.c.post_action.is_not(None),
            RAW_COPY.c.post_action_done_at.is_(None),
        )
    ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def _mark_done(engine: Engine, ids: Sequence[int], now: datetime) -> None:
    if not ids:
        return
    with transaction(engine) as conn:
        for i in range(0, len(ids), 500):
            conn.execute(
                sa.update(RAW_COPY)
                .where(RAW_COPY.c.id.in_(list(ids[i : i + 500])))
                .values(post_action_done_at=now)
            )


def apply_post_actions(
    engine: Engine,
    client: imapclient.IMAPClient,
    cfg: MailboxConfig,
    owed: Sequence[tuple[int, int, str]],
    now: datetime,
) -> int:
    if not owed:
        return 0
    done = do_post_actions(client, cfg, owed)
    _mark_done(engine, done, now)
    return len(done)


def drop_owed_of_old_generation(conn: Connection, name: str, uidvalidity: int, now: datetime) -> None:
    """After a UIDVALIDITY change: actions owed under the old UIDs cannot be done (the resync owes them again)."""
    conn.execute(
        sa.update(RAW_COPY)
        .where(
            RAW_COPY.c.source == mailbox_source(name),
            RAW_COPY.c.uidvalidity != uidvalidity,
            RAW_COPY.c.post_action.is_not(None),
            RAW_COPY.c.post_action_done_at.is_(None),
        )
        .values(post_action_done_at=now)
    )
