"""Time sanity (issue 12): implausible dates, a fresh database, long gaps, floods in one second.

A received time from a file's Date or Received header, or from an IMAP
INTERNALDATE, outside a plausible window is passed over for the next source,
with the reason kept.  A fresh database starts at the next cutoff, not at
the oldest mail; the list of due cutoffs is worked out once, and a long gap
closes as one catch-up batch with an alert.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from batching import AUTH, Desk, ny
from helpers import ImapAccount, config, make_mail

from mailcase.core.states import ReceivedSource
from mailcase.domain.calendar import BusinessCalendar
from mailcase.domain.db import open_engine, transaction
from mailcase.domain.tables import BATCH, CASE, MESSAGE, RAW_COPY
from mailcase.ingest.fetch import arrival_window, sync_imap, sync_maildir
from mailcase.ingest.sources import FLOOR, Plausible, received_at

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # Monday 10:00 in New York


def _file(folder: Path, name: str, raw: bytes, mtime: datetime) -> None:
    (folder / "new").mkdir(parents=True, exist_ok=True)
    (folder / "cur").mkdir(exist_ok=True)
    (folder / "tmp").mkdir(exist_ok=True)
    path = folder / "new" / name
    path.write_bytes(raw)
    os.utime(path, (mtime.timestamp(), mtime.timestamp()))


def test_the_window() -> None:
    w = Plausible.around(NOW, 15, start=NOW - timedelta(days=2), backdate_days=30)
    assert w.problem(NOW + timedelta(minutes=14)) is None
    assert "future" in (w.problem(NOW + timedelta(minutes=16)) or "")
    assert "early" in (w.problem(NOW - timedelta(days=33)) or "")
    assert w.problem(NOW - timedelta(days=33), file_time=True) is None  # the filesystem saw it arrive
    assert "early" in (Plausible.around(NOW, 15).problem(datetime(1971, 1, 1, tzinfo=UTC)) or "")
    assert Plausible.around(NOW, 15).earliest == FLOOR


@pytest.mark.parametrize("date, expected, how, note", [
    ("Fri, 01 Jan 1971 00:00:00 +0000", "mtime", ReceivedSource.FILE_TIME, "implausibly early"),
    ("Mon, 01 Jan 2150 00:00:00 +0000", "mtime", ReceivedSource.FILE_TIME, "in the future"),
    ("Mon, 23 Nov 2026 09:00:00 -0500", "date", ReceivedSource.DATE_HEADER, None),
])
def test_received_time_from_a_file(date: str, expected: str, how: ReceivedSource, note: str | None) -> None:
    raw = make_mail(1).replace(b"Date: ", b"X-Old-Date: ", 1).replace(b"\r\n\r\n", f"\r\nDate: {date}\r\n\r\n".encode(), 1)
    mtime = NOW - timedelta(minutes=5)
    at, source, why = received_at(raw, mtime.timestamp(), (), Plausible.around(NOW, 15))
    assert source is how
    assert at == (mtime if expected == "mtime" else datetime(2026, 11, 23, 14, 0, tzinfo=UTC))
    assert (why is None) if note is None else (note in (why or ""))


def test_a_file_whose_every_time_is_implausible_is_dated_when_stored() -> None:
    raw = make_mail(1).replace(b"Date: ", b"Date: Mon, 01 Jan 2150 00:00:00 +0000\r\nX-Was: ", 1)
    at, source, why = received_at(raw, (NOW + timedelta(days=3)).timestamp(), (), Plausible.around(NOW, 15))
    assert (at, source) == (NOW, ReceivedSource.STORED_AT)
    assert why is not None and "date-header 2150" in why and "file-time" in why


def test_maildir_mail_dated_1971_and_2150_joins_todays_cutoff(sqlite_url: str, tmp_path: Path) -> None:
    """The mails of issue 12: without the window the 1971 one made the desk walk
    fifty years of cutoffs and the 2150 one stayed pending for ever."""
    desk = Desk(sqlite_url, tmp_path, batch={"start_at": None})
    desk.directory()
    box = tmp_path / "box"
    for i, date in enumerate(["Fri, 01 Jan 1971 00:00:00 +0000", "Mon, 01 Jan 2150 00:00:00 +0000"]):
        raw = make_mail(i, subject=f"Odd date {i}", headers={AUTH[0]: AUTH[1].format(d="acme.example")})
        raw = raw.replace(b"Date: ", f"Date: {date}\r\nX-Was: ".encode(), 1)
        _file(box, f"m{i}", raw, NOW - timedelta(minutes=30))
    cfg = config(sqlite_url, tmp_path, [{"name": "box", "kind": "maildir", "path": str(box), "start_at": "all"}],
                 rules=desk.config.rules.model_dump(exclude_none=True), batch={"start_at": None})
    desk.process(NOW)  # the service's first pass: a fresh database starts at the next cutoff
    sync_maildir(desk.engine, cfg.mailboxes[0], cfg, NOW)
    rows = desk.rows(sa.select(MESSAGE.c.subject, MESSAGE.c.received_at, MESSAGE.c.received_source,
                               MESSAGE.c.received_note).order_by(MESSAGE.c.subject))
    assert [(r.received_at, r.received_source) for r in rows] == [(NOW - timedelta(minutes=30), "file-time")] * 2
    assert "1971" in rows[0].received_note and "2150" in rows[1].received_note
    started = time.perf_counter()
    run = desk.process(ny(2026, 11, 23, 15, 31))
    assert time.perf_counter() - started < 10
    # a fresh database: its first cutoff is the next one after it first ran, not 1971's
    assert [r.cutoff for r in run.results] == [ny(2026, 11, 23, 15, 30)]
    assert len(run.results[0].cases) == 2
    assert desk.scalar(sa.select(sa.func.count()).select_from(MESSAGE).where(MESSAGE.c.state == "pending")) == 0


def test_imap_internaldate_in_the_future_is_not_believed(imap: ImapAccount, sqlite_url: str, tmp_path: Path) -> None:
    cfg = config(sqlite_url, tmp_path, [imap.mailbox_config()])
    imap.append(make_mail(1), when=datetime(2150, 1, 1, tzinfo=UTC))
    imap.append(make_mail(2), when=NOW - timedelta(minutes=3))
    engine = open_engine(sqlite_url)
    sync_imap(engine, cfg.mailboxes[0], NOW, window=arrival_window(cfg, NOW))
    with engine.connect() as conn:
        rows = conn.execute(sa.select(RAW_COPY.c.uid, RAW_COPY.c.received_at, RAW_COPY.c.received_source,
                                      RAW_COPY.c.received_note).order_by(RAW_COPY.c.uid)).all()
    assert [(r.received_at, r.received_source) for r in rows] == [
        (NOW, "stored-at"), (NOW - timedelta(minutes=3), "internaldate")]
    # (Dovecot stores an APPEND date in the far future as the time of the APPEND: still after the clock)
    assert "is in the future" in rows[0].received_note


def test_a_fresh_database_starts_at_the_next_cutoff(db_url: str, tmp_path: Path) -> None:
    desk = Desk(db_url, tmp_path, batch={"start_at": None})
    desk.directory()
    desk.mail(ny(2026, 11, 9, 8, 0), subject="Two weeks old, first seen today")
    assert desk.process(ny(2026, 11, 23, 8, 0)).results == []  # first run: the start is recorded
    run = desk.process(ny(2026, 11, 23, 9, 31))
    assert [r.cutoff for r in run.results] == [ny(2026, 11, 23, 9, 30)]
    assert run.results[0].mails == 1


def test_a_long_gap_closes_as_one_catch_up_batch_with_an_alert(db_url: str, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    desk = Desk(db_url, tmp_path)
    desk.directory()
    with transaction(desk.engine) as conn:  # the last cutoff closed two years ago
        conn.execute(sa.insert(BATCH).values(cutoff_at=ny(2024, 11, 22, 15, 30), ran_at=ny(2024, 11, 22, 15, 30),
                                             late_mailboxes=[]))
    ids = [desk.mail(ny(2026, 11, 20, 8, 0), subject="Last Friday"),
           desk.mail(ny(2026, 11, 23, 8, 0), sender="bob@globex.example", subject="This morning")]
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="mailcase"):
        run = desk.process(ny(2026, 11, 23, 9, 31))
    took = time.perf_counter() - started
    assert took < 10, f"{took:.1f} s"  # one batch, not the ~1,000 cutoffs of two years
    assert [r.cutoff for r in run.results] == [ny(2026, 11, 23, 9, 30)]
    assert run.results[0].caught_up > 10
    assert all(desk.case_of(i) is not None for i in ids)
    assert any("catch-up batch" in r.getMessage() for r in caplog.records)
    assert desk.scalar(sa.select(sa.func.count()).select_from(BATCH)) == 2


def test_a_gap_within_the_limit_closes_cutoff_by_cutoff(db_url: str, tmp_path: Path) -> None:
    desk = Desk(db_url, tmp_path)
    desk.directory()
    desk.mail(ny(2026, 11, 16, 8, 0))
    desk.process(ny(2026, 11, 16, 9, 31))
    desk.mail(ny(2026, 11, 17, 8, 0), subject="Tuesday")
    run = desk.process(ny(2026, 11, 20, 16, 0))  # down Monday afternoon to Friday evening
    assert len(run.results) == 9 and all(r.caught_up == 0 for r in run.results)


def test_cutoffs_between_stops_at_its_limit() -> None:
    from mailcase.domain.calendar import CalendarConfig

    cal = BusinessCalendar(CalendarConfig())
    started = time.perf_counter()
    few = cal.cutoffs_between(datetime(1971, 1, 1, tzinfo=UTC), NOW, limit=22)
    assert len(few) == 22 and few[0].year == 1971 and time.perf_counter() - started < 1


# -- floods in one second, repeats across cutoffs ----------------------------------------------


def test_eighteen_identical_mails_in_one_second(db_url: str, tmp_path: Path) -> None:
    desk = Desk(db_url, tmp_path)
    desk.directory()
    at = ny(2026, 11, 23, 8, 0)
    for _ in range(18):
        desk.mail(at, subject="Same", body="Same text\n")
    desk.process(ny(2026, 11, 23, 9, 0))
    states = desk.rows(sa.select(MESSAGE.c.state).order_by(MESSAGE.c.id))
    assert [s[0] for s in states] == ["pending"] * 15 + ["held"] * 3


def test_an_autoresponder_that_does_not_thread_is_stopped_after_three(db_url: str, tmp_path: Path) -> None:
    """A representative's address sends the same request to every cutoff, its own
    number changing (a script that does not thread, whose text says nothing of being
    automatic): cases for three cutoffs, then review.  (Another help desk's receipt,
    "Thank you for your message ... received as ticket 1000", is an auto-reply and
    never a case at all: tests/autoreply_corpus.)"""
    desk = Desk(db_url, tmp_path)
    desk.directory()
    cutoffs = [ny(2026, 11, 23, 9, 30), ny(2026, 11, 23, 15, 30), ny(2026, 11, 24, 9, 30),
               ny(2026, 11, 24, 15, 30), ny(2026, 11, 25, 9, 30)]
    for i, cutoff in enumerate(cutoffs):
        desk.mail(cutoff - timedelta(minutes=40), sender="monitor@acme.example", subject="Claims export interface",
                  body=f"The claims export to the clearinghouse stopped with code {1000 + i}.\n"
                       "Please check the interface settings on claims01.\n")
        desk.process(cutoff + timedelta(minutes=1))
    cases = desk.scalar(sa.select(sa.func.count()).select_from(CASE))
    held = desk.rows(sa.select(MESSAGE.c.id).where(MESSAGE.c.state == "held"))
    assert cases == 3 and len(held) == 2
    from mailcase.domain.tables import CLASSIFICATION

    flags = desk.scalar(sa.select(CLASSIFICATION.c.flags).where(CLASSIFICATION.c.message_pk == held[0][0]))
    assert "repeated-request" in flags
