"""IMAP sync against a real Dovecot, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from helpers import T0, ImapAccount, config, make_mail

from mailcase.core.errors import LeaseHeld
from mailcase.core.states import MessageState
from mailcase.domain.db import open_engine
from mailcase.domain.lease import Lease
from mailcase.domain.tables import BLOB, MESSAGE, QUARANTINE, RAW_COPY
from mailcase.ingest.fetch import sync_imap
from mailcase.ingest.reprocess import ReprocessRequest, reprocess

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)


def counts(engine: sa.Engine) -> tuple[int, int]:
    with engine.connect() as c:
        m = c.execute(sa.select(sa.func.count()).select_from(MESSAGE)).scalar_one()
        r = c.execute(sa.select(sa.func.count()).select_from(RAW_COPY)).scalar_one()
    return int(m), int(r)


def test_sync_stores_each_mail_once_and_second_poll_adds_nothing(
    imap: ImapAccount, db_url: str, tmp_path: Path
) -> None:
    imap.append_many([make_mail(i) for i in range(30)])
    cfg = config(db_url, tmp_path, [imap.mailbox_config(fetch_chunk_count=7)])
    engine = open_engine(cfg.database_url)
    r1 = sync_imap(engine, cfg.mailboxes[0], NOW)
    assert (r1.tally.new, r1.tally.duplicate) == (30, 0)
    assert counts(engine) == (30, 30)
    r2 = sync_imap(engine, cfg.mailboxes[0], NOW + timedelta(minutes=1))
    assert r2.tally.seen == 0
    assert counts(engine) == (30, 30)
    imap.append(make_mail(30))
    r3 = sync_imap(engine, cfg.mailboxes[0], NOW + timedelta(minutes=2))
    assert r3.tally.new == 1
    with engine.connect() as c:
        states = set(c.execute(sa.select(MESSAGE.c.state).distinct()).scalars())
        received = c.execute(sa.select(RAW_COPY.c.received_source).distinct()).scalars().all()
    assert states == {MessageState.HEADERS_READ}
    assert received == ["internaldate"]


def test_reprocess_of_a_synced_mailbox_adds_zero_rows(imap: ImapAccount, db_url: str, tmp_path: Path) -> None:
    imap.append_many([make_mail(i) for i in range(12)])
    cfg = config(db_url, tmp_path, [imap.mailbox_config()])
    engine = open_engine(cfg.database_url)
    sync_imap(engine, cfg.mailboxes[0], NOW)
    before = counts(engine)
    _, tally = reprocess(engine, cfg, ReprocessRequest("support"), NOW)
    assert (tally.seen, tally.duplicate, tally.new) == (12, 12, 0)
    assert counts(engine) == before


def test_post_action_seen_and_move(imap: ImapAccount, sqlite_url: str, tmp_path: Path) -> None:
    imap.append_many([make_mail(i) for i in range(5)])
    cfg = config(sqlite_url, tmp_path, [imap.mailbox_config(post_action="seen")])
    engine = open_engine(cfg.database_url)
    sync_imap(engine, cfg.mailboxes[0], NOW)
    assert all(b"\\Seen" in f for f in imap.flags().values())

    imap.append_many([make_mail(i) for i in range(5, 9)])
    cfg2 = config(sqlite_url, tmp_path, [imap.mailbox_config(post_action="move", move_to="Processed")])
    r = sync_imap(engine, cfg2.mailboxes[0], NOW)
    assert r.post_actions_done == 4
    assert imap.uids("INBOX") == [1, 2, 3, 4, 5]  # the 5 already handled stay, seen
    assert len(imap.uids("Processed")) == 4
    with engine.connect() as c:
        owed = c.execute(
            sa.select(sa.func.count()).where(
                RAW_COPY.c.post_action.is_not(None), RAW_COPY.c.post_action_done_at.is_(None)
            )
        ).scalar_one()
    assert owed == 0


def test_crash_between_commit_and_post_action_is_repaired(
    imap: ImapAccount, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    imap.append_many([make_mail(i) for i in range(6)])
    cfg = config(db_url, tmp_path, [imap.mailbox_config(post_action="move", move_to="Done")])
    engine = open_engine(cfg.database_url)
    import mailcase.ingest.post_actions as post_actions

    def crash(*_a: object, **_k: object) -> list[int]:
        raise ConnectionResetError("injected: connection lost before the post-action")

    monkeypatch.setattr(post_actions, "do_post_actions", crash)
    with pytest.raises(Exception):
        sync_imap(engine, cfg.mailboxes[0], NOW)
    assert counts(engine) == (6, 6)  # committed before the action
    assert len(imap.uids("INBOX")) == 6
    monkeypatch.undo()
    r = sync_imap(engine, cfg.mailboxes[0], NOW)
    assert r.tally.seen == 0 and r.post_actions_done == 6
    assert imap.uids("INBOX") == [] and len(imap.uids("Done")) == 6
    assert counts(engine) == (6, 6)


def test_oversize_mail_keeps_headers_is_quarantined_and_stays(
    imap: ImapAccount, db_url: str, tmp_path: Path
) -> None:
    big = make_mail(1, body="x" * 200_000 + "\n")
    imap.append_many([make_mail(0), big, make_mail(2)])
    cfg = config(db_url, tmp_path, [imap.mailbox_config(max_message_bytes=50_000, post_action="move", move_to="Done")])
    engine = open_engine(cfg.database_url)
    r = sync_imap(engine, cfg.mailboxes[0], NOW)
    assert (r.tally.new, r.tally.quarantined) == (2, 1)
    assert imap.uids("INBOX") == [2]  # the big one stays on the server
    with engine.connect() as c:
        q = c.execute(sa.select(QUARANTINE.c.stage, QUARANTINE.c.error)).one()
        copy = c.execute(
            sa.select(RAW_COPY.c.size, RAW_COPY.c.truncated_from).where(RAW_COPY.c.uid == 2)
        ).one()
        subject = c.execute(sa.select(MESSAGE.c.subject).where(MESSAGE.c.state == "quarantined")).scalar_one()
    assert q.stage == "fetch" and "over max_message_bytes 50000" in q.error
    assert copy.size < 2000 and copy.truncated_from > 200_000
    assert subject == "Request number 1"  # the headers were kept
    # a second sync neither re-fetches nor moves it
    assert sync_imap(engine, cfg.mailboxes[0], NOW).tally.seen == 0
    assert imap.uids("INBOX") == [2]


def test_start_at_now_makes_1000_old_mails_historical(imap: ImapAccount, db_url: str, tmp_path: Path) -> None:
    imap.append_many([make_mail(i, date=T0 - timedelta(days=400 - i % 300)) for i in range(1000)])
    cfg = config(db_url, tmp_path, [imap.mailbox_config(start_at="now")])
    engine = open_engine(cfg.database_url)
    r = sync_imap(engine, cfg.mailboxes[0], NOW)
    assert (r.tally.new, r.tally.historical) == (1000, 1000)
    imap.append(make_mail(5000))
    r2 = sync_imap(engine, cfg.mailboxes[0], NOW + timedelta(minutes=5))
    assert (r2.tally.new, r2.tally.historical) == (1, 0)
    with engine.connect() as c:
        hist = c.execute(sa.select(sa.func.count()).where(MESSAGE.c.historical.is_(True))).scalar_one()
    assert hist == 1000
    # nothing is queued for sending: no outbox table rows exist yet for any mail
    # (the outbox arrives with cutoffs; test_outbox asserts this again then)


def test_start_at_uid(imap: ImapAccount, sqlite_url: str, tmp_path: Path) -> None:
    imap.append_many([make_mail(i) for i in range(10)])
    cfg = config(sqlite_url, tmp_path, [imap.mailbox_config(start_at="uid:8")])
    engine = open_engine(cfg.database_url)
    r = sync_imap(engine, cfg.mailboxes[0], NOW)
    assert (r.tally.new, r.tally.historical) == (10, 7)


def test_uidvalidity_change_resyncs_without_importing_twice(
    imap: ImapAccount, db_url: str, tmp_path: Path
) -> None:
    mails = [make_mail(i) for i in range(8)]
    imap.append_many(mails, folder="Support")
    cfg = config(db_url, tmp_path, [imap.mailbox_config(folder="Support")])
    engine = open_engine(cfg.database_url)
    sync_imap(engine, cfg.mailboxes[0], NOW)
    old = imap.client.select_folder("Support")[b"UIDVALIDITY"]
    imap.client.unselect_folder()
    imap.client.delete_folder("Support")
    import time

    time.sleep(1.1)  # Dovecot derives UIDVALIDITY from the clock
    imap.append_many(mails + [make_mail(99)], folder="Support")
    assert imap.client.select_folder("Support")[b"UIDVALIDITY"] != old
    r = sync_imap(engine, cfg.mailboxes[0], NOW + timedelta(hours=1))
    assert r.uidvalidity_changed
    assert (r.tally.new, r.tally.copies) == (1, 8)
    m, _ = counts(engine)
    assert m == 9


def test_lease_stops_a_second_fetcher(imap: ImapAccount, db_url: str, tmp_path: Path) -> None:
    cfg = config(db_url, tmp_path, [imap.mailbox_config()])
    engine = open_engine(cfg.database_url)
    other = Lease(engine, "mailbox:support", "daemon", pid=1, host="elsewhere.example")
    other.acquire()
    try:
        with pytest.raises(LeaseHeld, match="held by daemon pid 1 on elsewhere.example"):
            reprocess(engine, cfg, ReprocessRequest("support"), NOW)
    finally:
        if engine.dialect.name == "postgresql":
            other.release()


def test_identical_bytes_share_one_blob(imap: ImapAccount, sqlite_url: str, tmp_path: Path) -> None:
    raw = make_mail(1)
    imap.append_many([raw, raw])
    cfg = config(sqlite_url, tmp_path, [imap.mailbox_config()])
    engine = open_engine(cfg.database_url)
    r = sync_imap(engine, cfg.mailboxes[0], NOW)
    assert (r.tally.new, r.tally.copies) == (1, 1)
    with engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(BLOB)).scalar_one() == 1


def test_retry_of_oversize_mail_fetches_it_in_full_once_allowed(
    imap: ImapAccount, sqlite_url: str, tmp_path: Path
) -> None:
    from mailcase.domain.db import transaction
    from mailcase.ingest.quarantine import open_entries, retry
    from mailcase.ingest.stages import run_headers_stage, run_parse_stage

    imap.append(make_mail(1, body="y" * 80_000 + "\nend of the long request\n"))
    small = config(sqlite_url, tmp_path, [imap.mailbox_config(max_message_bytes=10_000)])
    engine = open_engine(small.database_url)
    sync_imap(engine, small.mailboxes[0], NOW)
    with engine.connect() as c:
        (entry,) = open_entries(c)
    # retried under the same limit: quarantined again, with the reason
    with transaction(engine) as conn:
        retry(conn, entry.id, NOW)
    sync_imap(engine, small.mailboxes[0], NOW)
    with engine.connect() as c:
        (again,) = open_entries(c)
    assert again.attempts == 2 and "over max_message_bytes 10000" in again.error
    # the operator raises the limit and retries: the full mail is fetched and parsed
    big = config(sqlite_url, tmp_path, [imap.mailbox_config(max_message_bytes=1_000_000)])
    with transaction(engine) as conn:
        retry(conn, again.id, NOW)
    sync_imap(engine, big.mailboxes[0], NOW)
    assert run_headers_stage(engine, NOW).done == 1
    assert run_parse_stage(engine, NOW).done == 1
    from mailcase.domain.tables import PARSED_MAIL

    with engine.connect() as c:
        body = c.execute(sa.select(PARSED_MAIL.c.text_body)).scalar_one()
        assert open_entries(c) == []
    assert body.rstrip().endswith("end of the long request")
