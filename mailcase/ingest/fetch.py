"""Syncing a configured mailbox into the ledger: the sync loop.

IMAP (docs/design.md §2.1): each mailbox is tracked by (UIDVALIDITY, UID).  A sync
reads RFC822.SIZE for UIDs above the high-water mark, fetches
``BODY.PEEK[]`` + INTERNALDATE in chunks bounded by bytes and count
(:mod:`mailcase.ingest.imap_chunks`), commits the raw bytes and the new
high-water mark in one transaction, and only then does the configured
post-action (:mod:`mailcase.ingest.post_actions`).  A UIDVALIDITY change
restarts from UID 1 and files every mail under its logical identity, so
nothing is imported twice.  Mail over the size limit keeps its headers, is
quarantined with the reason and stays on the server until an operator puts
it back (:mod:`mailcase.ingest.refetch`).

A Maildir mailbox is synced by listing new/ and cur/ and storing the files
not seen before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import imapclient
from sqlalchemy.engine import Engine

from mailcase.config.mailbox import MailboxConfig
from mailcase.config.settings import Config
from mailcase.core.states import PostAction
from mailcase.domain.db import transaction
from mailcase.domain.lease import Lease
from mailcase.domain.oauth import imap_token
from mailcase.ingest.imap import session
from mailcase.ingest.imap_chunks import fetch_chunk, message_sizes, plan_chunks
from mailcase.ingest.ledger import Tally, existing_copies, store
from mailcase.ingest.mailbox_state import load_state, mailbox_source, update_state
from mailcase.ingest.post_actions import (
    apply_post_actions,
    drop_owed_of_old_generation,
    ensure_folder,
    owed_post_actions,
    post_action_for,
)
from mailcase.ingest.refetch import refetch_released, reread_released
from mailcase.ingest.sources import FileKind, Plausible, incoming_from_files, maildir_files
from mailcase.ingest.stream import Progress, store_stream

log = logging.getLogger(__name__)


@dataclass
class SyncResult:
    mailbox: str
    tally: Tally
    post_actions_done: int = 0
    uidvalidity_changed: bool = False

    def summary(self) -> str:
        extra = f", post-actions {self.post_actions_done}" if self.post_actions_done else ""
        resync = ", UIDVALIDITY changed: resynced" if self.uidvalidity_changed else ""
        return f"{self.mailbox}: {self.tally.summary()}{extra}{resync}"


def arrival_window(config: Config, now: datetime, start: datetime | None = None) -> Plausible:
    """The received times believed for mail stored at ``now`` (``ingest`` settings)."""
    return Plausible.around(now, config.ingest.max_clock_skew_minutes, start, config.ingest.max_backdate_days)


# -- IMAP ------------------------------------------------------------------------


def sync_imap(
    engine: Engine, cfg: MailboxConfig, now: datetime, progress: Progress | None = None,
    window: Plausible | None = None,
) -> SyncResult:
    """One sync on a connection of its own, under the mailbox's lease."""
    token = imap_token(engine, cfg, lambda: now)
    with Lease(engine, f"mailbox:{cfg.name}", "sync") as lease, session(cfg, token) as client:
        return sync_with(engine, cfg, client, lease, now, progress, window)


def sync_with(
    engine: Engine, cfg: MailboxConfig, client: imapclient.IMAPClient, lease: Lease, now: datetime,
    progress: Progress | None = None, window: Plausible | None = None,
) -> SyncResult:
    """One sync on a connection the caller holds (the daemon keeps it for IDLE)."""
    result = SyncResult(cfg.name, Tally())
    post_action = post_action_for(cfg)
    if cfg.post_action is PostAction.MOVE:
        assert cfg.move_to is not None
        ensure_folder(client, cfg.move_to)
    info = client.select_folder(cfg.folder, readonly=cfg.post_action is PostAction.LEAVE)
    uidvalidity = int(info[b"UIDVALIDITY"])
    uidnext = int(info.get(b"UIDNEXT", 0) or 0)
    with transaction(engine) as conn:
        state = load_state(conn, cfg.name)
        changes: dict[str, Any] = {"last_sync_started_at": now}
        if state["uidvalidity"] is None:
            changes.update(_start_point(client, cfg, uidnext, now))
            changes["uidvalidity"] = uidvalidity
            changes["last_uid"] = 0
        elif state["uidvalidity"] != uidvalidity:
            log.warning(
                "mailbox=%s event=uidvalidity-changed old=%s new=%s action=resync-by-identity",
                cfg.name, state["uidvalidity"], uidvalidity,
            )
            result.uidvalidity_changed = True
            # UIDs of the old generation mean nothing now; post-actions owed
            # under it cannot be done (the resync owes them again)
            drop_owed_of_old_generation(conn, cfg.name, uidvalidity, now)
            changes.update(uidvalidity=uidvalidity, last_uid=0, historical_below_uid=0)
        update_state(conn, cfg.name, **changes)
        state.update(changes)
        owed = owed_post_actions(conn, cfg.name, uidvalidity)
    # repair: post-actions a crash left undone
    result.post_actions_done += apply_post_actions(engine, client, cfg, owed, now)
    refetch_released(engine, client, cfg, uidvalidity, post_action, now)

    last_uid = int(state["last_uid"])
    below = int(state["historical_below_uid"])
    before: datetime | None = state["historical_before"]

    def is_historical(uid: int, at: datetime | None) -> bool:
        if uid <= below:
            return True
        return before is not None and at is not None and at < before

    uids = sorted(int(u) for u in client.search(["UID", f"{last_uid + 1}:*"]) if int(u) > last_uid)
    sizes = message_sizes(client, uids)
    for chunk in plan_chunks(
        sizes, cfg.fetch_chunk_bytes, cfg.fetch_chunk_count, cfg.max_message_bytes
    ):
        items = fetch_chunk(
            client, cfg, chunk, sizes, uidvalidity, is_historical, post_action, window
        )
        with transaction(engine) as conn:
            results = store(conn, items, now)
            update_state(conn, cfg.name, last_uid=max(chunk))
            owed = owed_post_actions(conn, cfg.name, uidvalidity) if post_action else []
        result.tally.add(results)
        result.post_actions_done += apply_post_actions(engine, client, cfg, owed, now)
        lease.renew_if_due()
        if progress:
            progress(len(chunk))
    with transaction(engine) as conn:
        update_state(
            conn, cfg.name, last_sync_ok_at=now, last_sync_ok_started_at=now,
            last_error=None, last_error_at=None,
        )
    return result


def _start_point(
    client: imapclient.IMAPClient, cfg: MailboxConfig, uidnext: int, now: datetime
) -> dict[str, Any]:
    kind, value = cfg.start_point()
    if kind == "all":
        return {"historical_below_uid": 0, "historical_before": None}
    if kind == "uid":
        assert isinstance(value, int)
        return {"historical_below_uid": value - 1, "historical_before": None}
    if kind == "date":
        assert isinstance(value, datetime)
        return {"historical_below_uid": 0, "historical_before": value}
    # "now": everything in the mailbox at the first sync is history
    if not uidnext:
        existing = client.search(["ALL"])
        uidnext = (max(existing) + 1) if existing else 1
    return {"historical_below_uid": uidnext - 1, "historical_before": now}


# -- Maildir ---------------------------------------------------------------------


def sync_maildir(
    engine: Engine, cfg: MailboxConfig, config: Config, now: datetime,
    progress: Progress | None = None, lease: Lease | None = None,
) -> SyncResult:
    """One scan of a Maildir mailbox, under its lease (the caller's, if given)."""
    if lease is not None:
        return _sync_maildir(engine, cfg, config, now, progress, lease)
    with Lease(engine, f"mailbox:{cfg.name}", "sync") as own:
        return _sync_maildir(engine, cfg, config, now, progress, own)


def _sync_maildir(
    engine: Engine, cfg: MailboxConfig, config: Config, now: datetime, progress: Progress | None, lease: Lease,
) -> SyncResult:
    assert cfg.path is not None
    path = Path(cfg.path)
    source = mailbox_source(cfg.name)
    with transaction(engine) as conn:
        state = load_state(conn, cfg.name)
        changes: dict[str, Any] = {"last_sync_started_at": now}
        if state["uidvalidity"] is None:
            kind, value = cfg.start_point()
            before: datetime | None = None
            if kind == "now":
                before = now
            elif kind == "date":
                assert isinstance(value, datetime)
                before = value
            changes.update(uidvalidity=0, historical_before=before)
        update_state(conn, cfg.name, **changes)
        state.update(changes)
        keys = [k for k, _ in maildir_files(path)]
        known = set(existing_copies(conn, source, keys))
    reread_released(engine, cfg, path, now)
    items = incoming_from_files(
        path,
        source,
        historical=False,
        receiving_hosts=config.ingest.receiving_hosts,
        kind=FileKind.MAILDIR,
        historical_before=state["historical_before"],
        mailbox_name=cfg.name,
        skip_keys=known,
        max_message_bytes=cfg.max_message_bytes,
        window=arrival_window(config, now, state["historical_before"]),
    )
    tally = store_stream(engine, items, now, lease=lease, progress=progress)
    with transaction(engine) as conn:
        update_state(
            conn, cfg.name, last_sync_ok_at=now, last_sync_ok_started_at=now,
            last_error=None, last_error_at=None,
        )
    return SyncResult(cfg.name, tally)


def sync_mailbox(
    engine: Engine, config: Config, cfg: MailboxConfig, now: datetime,
    progress: Progress | None = None,
) -> SyncResult:
    if cfg.kind == "maildir":
        return sync_maildir(engine, cfg, config, now, progress)
    return sync_imap(engine, cfg, now, progress, arrival_window(config, now))
