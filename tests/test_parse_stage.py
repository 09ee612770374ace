"""The parse stage behind ingestion: a worker pool, one writer, storing never waits."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from helpers import ImapAccount, config, make_mail

from mailcase.core.clock import FixedClock
from mailcase.core.states import ReceivedSource
from mailcase.domain.db import open_engine, transaction
from mailcase.domain.tables import MESSAGE, PARSED_MAIL
from mailcase.ingest.ledger import Incoming, store
from mailcase.ingest.stages import BackgroundParser, _claim_parse_batch
from mailcase.ops.daemon import run_pass

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)


def _store(engine: sa.Engine, start: int, n: int) -> None:
    with transaction(engine) as conn:
        store(conn, [
            Incoming("eml:/t", f"k{i}", make_mail(i, body=f"request {i}\n" * 20), NOW,
                     ReceivedSource.DATE_HEADER, False)
            for i in range(start, start + n)
        ], NOW)


def test_background_parser_with_two_workers_parses_everything_once(db_url: str) -> None:
    engine = open_engine(db_url)
    with BackgroundParser(engine, FixedClock(NOW), workers=2, batch=25) as parser:
        for k in range(4):  # storing goes on while the pool parses
            _store(engine, k * 50, 50)
            parser.poke()
        result = parser.drain(timeout=60)
    assert (result.done, result.quarantined) == (200, 0)
    with engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(PARSED_MAIL)).scalar_one() == 200
        states = c.execute(sa.select(MESSAGE.c.state, sa.func.count()).group_by(MESSAGE.c.state)).all()
    assert [tuple(r) for r in states] == [("parsed", 200)]


def test_parse_batches_are_bounded_by_bytes(sqlite_url: str) -> None:
    engine = open_engine(sqlite_url)
    with transaction(engine) as conn:
        store(conn, [
            Incoming("eml:/t", f"k{i}", make_mail(i, body="z" * 100_000), NOW, ReceivedSource.DATE_HEADER, False)
            for i in range(30)
        ], NOW)
    batch = _claim_parse_batch(engine, limit=200, max_bytes=1_000_000)
    assert 5 <= len(batch.ids) <= 10
    assert sum(len(r) for r in batch.raws) <= 1_000_000 + 110_000  # one mail may cross the bound
    assert len(_claim_parse_batch(engine, 200, 10_000_000, exclude=set(batch.ids)).ids) == 30 - len(batch.ids)


def test_run_pass_stores_and_parses(imap: ImapAccount, db_url: str, tmp_path: Path) -> None:
    imap.append_many([make_mail(i) for i in range(40)])
    cfg = config(db_url, tmp_path, [imap.mailbox_config(fetch_chunk_count=10)])
    engine = open_engine(cfg.database_url)
    result = run_pass(engine, cfg, FixedClock(NOW))
    assert result.syncs[0].tally.new == 40
    assert result.parsed.done == 40
