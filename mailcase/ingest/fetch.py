"""Syncing a configured mailbox into the ledger.

IMAP (DESIGN §2.1): each mailbox is tracked by (UIDVALIDITY, UID).  A sync
reads RFC822.SIZE for UIDs above the high-water mark, fetches
``BODY.PEEK[]`` + INTERNALDATE in chunks bounded by bytes and count, commits
the raw bytes and the new high-water mark in one transaction, and only then
does the configured post-action (leave, flag \\Seen, or move).  The post-action
owed is written with the raw copy, so a crash between commit and action is
repaired by the next sync.  A UIDVALIDITY change restarts from UID 1 and
files every mail under its logical identity, so nothing is imported twice.
Mail over the size limit keeps its headers, is quarantined with the reason
and stays on the server.

A Maildir mailbox is synced by listing new/ and cur/ and storing the files
not seen before.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import imapclient
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mailcase.config.settings import Config, MailboxConfig
from mailcase.core.errors import MessageError
from mailcase.core.states import MessageState, PostAction, ReceivedSource, Stage
from mailcase.domain.db import insert_ignore, transaction
from mailcase.domain.lease import Lease
from mailcase.domain.tables import BLOB, MAILBOX_STATE, MESSAGE, RAW_COPY
from mailcase.ingest.imap import session
from mailcase.ingest.ledger import Incoming, Outcome, StoreResult, Tally, existing_copies, store
from mailcase.ingest.quarantine import quarantine
from mailcase.ingest.sources import FileKind, Plausible, incoming_from_files, maildir_files

log = logging.getLogger(__name__)

SIZE_QUERY_CHUNK = 5000  # a UID list of ~20,000 gets BAD from some servers (DESIGN §6)

Progress = Callable[[int], None]


def mailbox_source(name: str) -> str:
    return f"mailbox:{name}"


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


# -- mailbox state ---------------------------------------------------------------


def load_state(conn: Connection, name: str) -> dict[str, Any]:
    insert_ignore(
        conn, MAILBOX_STATE, [{"name": name, "last_uid": 0, "historical_below_uid": 0}], ["name"]
    )
    row = conn.execute(sa.select(MAILBOX_STATE).where(MAILBOX_STATE.c.name == name)).one()
    return dict(row._mapping)


def update_state(conn: Connection, name: str, **values: Any) -> None:
    conn.execute(sa.update(MAILBOX_STATE).where(MAILBOX_STATE.c.name == name).values(**values))


def record_failure(engine: Engine, name: str, error: str, now: datetime) -> None:
    with transaction(engine) as conn:
        load_state(conn, name)
        update_state(conn, name, last_error=error, last_error_at=now)


# -- IMAP ------------------------------------------------------------------------


def _post_action_for(cfg: MailboxConfig) -> str | None:
    if cfg.post_action is PostAction.SEEN:
        return "seen"
    if cfg.post_action is PostAction.MOVE:
        return f"move:{cfg.move_to}"
    return None


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


def _sizes(client: imapclient.IMAPClient, uids: Sequence[int]) -> dict[int, int]:
    sizes: dict[int, int] = {}
    for i in range(0, len(uids), SIZE_QUERY_CHUNK):
        part = list(uids[i : i + SIZE_QUERY_CHUNK])
        for uid, data in client.fetch(part, ["RFC822.SIZE"]).items():
            sizes[int(uid)] = int(data.get(b"RFC822.SIZE", 0))
    return sizes


def _fetch_chunk(
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


def _do_post_actions(
    client: imapclient.IMAPClient, cfg: MailboxConfig, owed: Sequence[tuple[int, int, str]]
) -> list[int]:
    """Perform (raw copy id, uid, action) on the server; returns the ids done."""
    done: list[int] = []
    seen = [(cid, uid) for cid, uid, action in owed if action == "seen"]
    if seen:
        client.add_flags([uid for _, uid in seen], [imapclient.SEEN], silent=True)
        done.extend(cid for cid, _ in seen)
    moves: dict[str, list[tuple[int, int]]] = {}
    for cid, uid, action in owed:
        if action.startswith("move:"):
            moves.setdefault(action[5:], []).append((cid, uid))
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


def _owed_post_actions(conn: Connection, name: str, uidvalidity: int) -> list[tuple[int, int, str]]:
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


def _apply_post_actions(
    engine: Engine,
    client: imapclient.IMAPClient,
    cfg: MailboxConfig,
    owed: Sequence[tuple[int, int, str]],
    now: datetime,
) -> int:
    if not owed:
        return 0
    done = _do_post_actions(client, cfg, owed)
    _mark_done(engine, done, now)
    return len(done)


def _ensure_folder(client: imapclient.IMAPClient, folder: str) -> None:
    if not client.folder_exists(folder):
        client.create_folder(folder)


def sync_imap(
    engine: Engine, cfg: MailboxConfig, now: datetime, progress: Progress | None = None,
    window: Plausible | None = None,
) -> SyncResult:
    """One sync on a connection of its own, under the mailbox's lease."""
    from mailcase.domain.oauth import imap_token

    token = imap_token(engine, cfg, lambda: now)
    with Lease(engine, f"mailbox:{cfg.name}", "sync") as lease, session(cfg, token) as client:
        return sync_with(engine, cfg, client, lease, now, progress, window)


def arrival_window(config: Config, now: datetime, start: datetime | None = None) -> Plausible:
    """The received times believed for mail stored at ``now`` (``ingest`` settings)."""
    return Plausible.around(now, config.ingest.max_clock_skew_minutes, start, config.ingest.max_backdate_days)


def sync_with(
    engine: Engine, cfg: MailboxConfig, client: imapclient.IMAPClient, lease: Lease, now: datetime,
    progress: Progress | None = None, window: Plausible | None = None,
) -> SyncResult:
    """One sync on a connection the caller holds (the daemon keeps it for IDLE)."""
    result = SyncResult(cfg.name, Tally())
    post_action = _post_action_for(cfg)
    if cfg.post_action is PostAction.MOVE:
        assert cfg.move_to is not None
        _ensure_folder(client, cfg.move_to)
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
            conn.execute(
                sa.update(RAW_COPY)
                .where(
                    RAW_COPY.c.source == mailbox_source(cfg.name),
                    RAW_COPY.c.uidvalidity != uidvalidity,
                    RAW_COPY.c.post_action.is_not(None),
                    RAW_COPY.c.post_action_done_at.is_(None),
                )
                .values(post_action_done_at=now)
            )
            changes.update(uidvalidity=uidvalidity, last_uid=0, historical_below_uid=0)
        update_state(conn, cfg.name, **changes)
        state.update(changes)
        owed = _owed_post_actions(conn, cfg.name, uidvalidity)
    # repair: post-actions a crash left undone
    result.post_actions_done += _apply_post_actions(engine, client, cfg, owed, now)
    _refetch_released(engine, client, cfg, uidvalidity, post_action, now)
    
    last_uid = int(state["last_uid"])
    below = int(state["historical_below_uid"])
    before: datetime | None = state["historical_before"]
    
    def is_historical(uid: int, at: datetime | None) -> bool:
        if uid <= below:
            return True
        return before is not None and at is not None and at < before
    
    uids = sorted(int(u) for u in client.search(["UID", f"{last_uid + 1}:*"]) if int(u) > last_uid)
    sizes = _sizes(client, uids)
    for chunk in plan_chunks(
        sizes, cfg.fetch_chunk_bytes, cfg.fetch_chunk_count, cfg.max_message_bytes
    ):
        items = _fetch_chunk(
            client, cfg, chunk, sizes, uidvalidity, is_historical, post_action, window
        )
        with transaction(engine) as conn:
            results = store(conn, items, now)
            update_state(conn, cfg.name, last_uid=max(chunk))
            owed = _owed_post_actions(conn, cfg.name, uidvalidity) if post_action else []
        result.tally.add(results)
        result.post_actions_done += _apply_post_actions(engine, client, cfg, owed, now)
        lease.renew_if_due()
        if progress:
            progress(len(chunk))
    with transaction(engine) as conn:
        update_state(
            conn, cfg.name, last_sync_ok_at=now, last_sync_ok_started_at=now,
            last_error=None, last_error_at=None,
        )
    return result


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


def _refetch_released(
    engine: Engine,
    client: imapclient.IMAPClient,
    cfg: MailboxConfig,
    uidvalidity: int,
    post_action: str | None,
    now: datetime,
) -> None:
    """Fetch in full the over-size mails an operator put back for retry.

    ``quarantine retry`` of a fetch-stage entry returns the message to
    ``stored``; here its bytes are fetched again under the current size
    limit.  Still too large: quarantined again with the reason.
    """
    for copy_id, uid, _key, pk in _released(engine, mailbox_source(cfg.name), uidvalidity):
        data = client.fetch([uid], ["RFC822.SIZE", "BODY.PEEK[]"]).get(uid)
        size = int(data.get(b"RFC822.SIZE", 0)) if data else -1
        raw = data.get(b"BODY[]") if data else None
        _store_full(engine, cfg, copy_id, pk, size, raw if isinstance(raw, bytes) else None, post_action, now,
                    f"UID {uid} is no longer on the server; headers kept")


def _reread_released(engine: Engine, cfg: MailboxConfig, path: Path, now: datetime) -> None:
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
    from mailcase.domain.oauth import imap_token

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
            tally.add([StoreResult(Outcome.DUPLICATE, pk, hist)])
        todo = [u for u in uids if f"{uidvalidity}:{u}" not in known]
        if progress and known:
            progress(len(known))
        sizes = _sizes(client, todo)
        for chunk in plan_chunks(
            sizes, cfg.fetch_chunk_bytes, cfg.fetch_chunk_count, cfg.max_message_bytes
        ):
            items = _fetch_chunk(
                client, cfg, chunk, sizes, uidvalidity, lambda _u, _a: historical, None
            )
            tally.add(_store_chunk(engine, items, now, dry_run))
            lease.renew_if_due()
            if progress:
                progress(len(chunk))
    return tally


def _store_chunk(
    engine: Engine, items: Sequence[Incoming], now: datetime, dry_run: bool
) -> list[StoreResult]:
    if not dry_run:
        with transaction(engine) as conn:
            return store(conn, items, now)
    from mailcase.domain.db import WRITE

    with engine.connect() as conn:
        conn = conn.execution_options(**{WRITE: True})
        trans = conn.begin()
        try:
            return store(conn, items, now)
        finally:
            trans.rollback()


# -- Maildir mailboxes and local sources -------------------------------------------


def _chunks(items: Iterator[Incoming], count: int, max_bytes: int) -> Iterator[list[Incoming]]:
    chunk: list[Incoming] = []
    total = 0
    for item in items:
        chunk.append(item)
        total += len(item.raw)
        if len(chunk) >= count or total >= max_bytes:
            yield chunk
            chunk, total = [], 0
    if chunk:
        yield chunk


def store_stream(
    engine: Engine,
    items: Iterator[Incoming],
    now: datetime,
    *,
    dry_run: bool = False,
    chunk_count: int = 500,
    chunk_bytes: int = 16 * 1024 * 1024,
    progress: Progress | None = None,
    lease: Lease | None = None,
) -> Tally:
    tally = Tally()
    for chunk in _chunks(items, chunk_count, chunk_bytes):
        tally.add(_store_chunk(engine, chunk, now, dry_run))
        if lease:
            lease.renew_if_due()
        if progress:
            progress(len(chunk))
    return tally


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
    _reread_released(engine, cfg, path, now)
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
