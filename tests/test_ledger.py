"""The ledger: logical identity, raw copies, sources, quarantine and retry."""

from __future__ import annotations

import mailbox
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from helpers import make_mail

from mailcase.config.loader import parse_config
from mailcase.core.states import MessageState, ReceivedSource
from mailcase.domain.db import open_engine, transaction
from mailcase.domain.tables import MESSAGE, QUARANTINE, RAW_COPY
from mailcase.ingest.ledger import Incoming, Stored, store
from mailcase.ingest.quarantine import open_entries, retry, retry_all
from mailcase.ingest.reprocess import ReprocessRequest, reprocess
from mailcase.ingest.stages import run_headers_stage, run_parse_stage
from mailcase.mail.header_info import read_headers, received_header_time
from mailcase.mail.headers import split_headers

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)


def incoming(raw: bytes, key: str, source: str = "eml:/x", historical: bool = False) -> Incoming:
    return Incoming(source, key, raw, NOW, ReceivedSource.DATE_HEADER, historical)


# -- identity -----------------------------------------------------------------------


def test_crlf_and_lf_copies_are_one_logical_mail() -> None:
    crlf = make_mail(1, linesep="\r\n")
    lf = make_mail(1, linesep="\n")
    assert crlf != lf
    assert read_headers(crlf).identity == read_headers(lf).identity


def test_copy_at_second_address_is_the_same_mail() -> None:
    a = b"Received: from x by mx1.support.example; Mon, 23 Nov 2026 08:00:00 -0500\r\nDelivered-To: support@a.example\r\n" + make_mail(1)
    b = b"Received: from x by mx2.support.example; Mon, 23 Nov 2026 08:00:02 -0500\r\nDelivered-To: help@b.example\r\n" + make_mail(1)
    assert read_headers(a).identity == read_headers(b).identity


def test_forged_mail_with_a_real_message_id_is_another_mail() -> None:
    real = make_mail(1, msgid="<real@acme.example>")
    forged_from = make_mail(1, msgid="<real@acme.example>", sender="mallory@evil.example")
    forged_body = make_mail(1, msgid="<real@acme.example>", body="Please wire money\n")
    ids = {read_headers(m).identity for m in (real, forged_from, forged_body)}
    assert len(ids) == 3


def test_missing_message_id_is_derived_and_stable() -> None:
    raw = b"From: a@b.example\r\nSubject: hi\r\nDate: Mon, 23 Nov 2026 08:00:00 -0500\r\n\r\nbody\r\n"
    one, two = read_headers(raw), read_headers(raw.replace(b"\r\n", b"\n"))
    assert one.message_id_derived and one.message_id == two.message_id
    assert one.message_id.endswith("@derived.mailcase.invalid>")


def test_received_at_prefers_our_servers_received_header() -> None:
    raw = (
        b"Received: from relay by mx.support.example; Mon, 23 Nov 2026 08:00:05 -0500\r\n"
        b"Received: from evil by forged.example; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
        b"From: a@b.example\r\nDate: Sun, 22 Nov 2026 23:00:00 +0000\r\n\r\nx\r\n"
    )
    block = split_headers(raw)
    assert received_header_time(block) == datetime(2026, 11, 23, 13, 0, 5, tzinfo=UTC)
    assert received_header_time(block, ("mx.support.example",)) == datetime(2026, 11, 23, 13, 0, 5, tzinfo=UTC)
    assert received_header_time(block, ("other.example",)) is None


def test_mbox_from_line_and_junk_before_headers() -> None:
    raw = b"From alice@acme.example Mon Nov 23 08:00:00 2026\nFrom: Alice <alice@acme.example>\nSubject: x\n\nbody\n"
    info = read_headers(raw)
    assert info.from_addr == "alice@acme.example" and info.subject == "x"


@pytest.mark.parametrize(
    ("value", "strict", "addr"),
    [
        ("Alice <Alice@ACME.example>", True, "alice@acme.example"),
        ("alice@example.org)<bob@example.org>", False, "alice@example.org"),
        ("a@b.example, c@d.example", False, "a@b.example"),
        ("=?utf-8?q?Doe=2C_John?= <j@x.example>", True, "j@x.example"),
        ("undisclosed-recipients:;", False, None),
    ],
)
def test_from_is_parsed_strictly(value: str, strict: bool, addr: str | None) -> None:
    info = read_headers(f"From: {value}\r\nSubject: s\r\n\r\nb\r\n".encode())
    assert info.from_strict is strict
    assert info.from_addr == addr


# -- storing ------------------------------------------------------------------------


def test_store_is_idempotent_and_keeps_copies(db_url: str) -> None:
    engine = open_engine(db_url)
    with transaction(engine) as conn:
        r = store(conn, [incoming(make_mail(1), "k1"), incoming(make_mail(1), "k1"), incoming(make_mail(2), "k2")], NOW)
    assert [x.outcome for x in r] == [Stored.NEW, Stored.DUPLICATE, Stored.NEW]
    assert r[0].message_pk == r[1].message_pk
    with transaction(engine) as conn:
        r = store(conn, [incoming(make_mail(1, linesep="\n"), "file:1", source="maildir:/m")], NOW)
    assert r[0].outcome is Stored.COPY
    with engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(MESSAGE)).scalar_one() == 2
        assert c.execute(sa.select(sa.func.count()).select_from(RAW_COPY)).scalar_one() == 3


def test_header_failure_quarantines_keeps_bytes_and_retries(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mailcase.ingest.ledger as ledger

    engine = open_engine(db_url)

    def broken(raw: bytes, block: object = None) -> object:
        raise RuntimeError("injected header bug")

    monkeypatch.setattr(ledger, "read_headers", broken)
    with transaction(engine) as conn:
        r = store(conn, [incoming(make_mail(7), "k7")], NOW)
    assert r[0].outcome is Stored.QUARANTINED
    monkeypatch.undo()
    with engine.connect() as c:
        entries = open_entries(c)
    assert [(e.stage, e.error_type, e.error) for e in entries] == [("headers", "RuntimeError", "injected header bug")]
    assert "injected header bug" in (entries[0].traceback or "")
    with transaction(engine) as conn:
        assert retry(conn, entries[0].id, NOW) is MessageState.STORED
    assert run_headers_stage(engine, NOW).done == 1
    assert run_parse_stage(engine, NOW).done == 1
    with engine.connect() as c:
        row = c.execute(sa.select(MESSAGE.c.state, MESSAGE.c.subject)).one()
        assert open_entries(c) == []
    assert tuple(row) == ("parsed", "Request number 7")


def test_parse_failure_quarantines_and_retry_all(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import mailcase.mail.parse_worker as stages
    from mailcase.mail.parse.message import parse_email

    engine = open_engine(sqlite_url)
    with transaction(engine) as conn:
        store(conn, [incoming(make_mail(i), f"k{i}") for i in range(3)], NOW)
    real = parse_email  # what parse_worker calls

    def flaky(raw: bytes, info: object = None, identity: bool = True) -> object:
        if b"request 1." in raw:
            raise ValueError("injected parse failure")
        return real(raw)

    monkeypatch.setattr(stages, "parse_email", flaky)
    r = run_parse_stage(engine, NOW)
    assert (r.done, r.quarantined) == (2, 1)
    monkeypatch.undo()
    with transaction(engine) as conn:
        assert retry_all(conn, NOW) == 1
    assert run_parse_stage(engine, NOW).done == 1
    with engine.connect() as c:
        q = c.execute(sa.select(QUARANTINE.c.stage, QUARANTINE.c.resolved_at)).one()
    assert q.stage == "parse" and q.resolved_at is not None


# -- reprocess from files -------------------------------------------------------------


def _maildir(path: Path, raws: list[bytes]) -> Path:
    md = mailbox.Maildir(str(path), create=True)
    for raw in raws:
        md.add(raw)
    md.close()
    return path


def test_reprocess_maildir_mbox_and_eml_folder(db_url: str, tmp_path: Path) -> None:
    cfg = parse_config({"database": {"url": db_url}, "rules": {"sender_authentication": "insecure-off"}}, "test")
    engine = open_engine(db_url)
    md = _maildir(tmp_path / "md", [make_mail(i, linesep="\n") for i in range(5)])
    _, t = reprocess(engine, cfg, ReprocessRequest(str(md)), NOW)
    assert (t.seen, t.new, t.historical) == (5, 5, 5)
    _, t = reprocess(engine, cfg, ReprocessRequest(str(md)), NOW)
    assert (t.seen, t.new, t.duplicate) == (5, 0, 5)

    box = mailbox.mbox(str(tmp_path / "old.mbox"))
    for i in range(3, 8):  # 3 and 4 are the same mails as in the Maildir
        box.add(make_mail(i, linesep="\n"))
    box.close()
    _, t = reprocess(engine, cfg, ReprocessRequest(str(tmp_path / "old.mbox")), NOW)
    assert (t.seen, t.new, t.copies) == (5, 3, 2)

    eml = tmp_path / "eml"
    eml.mkdir()
    (eml / "a.eml").write_bytes(make_mail(100))
    _, t = reprocess(engine, cfg, ReprocessRequest(str(eml), create_cases=True), NOW)
    assert (t.new, t.historical) == (1, 0)
    with engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(MESSAGE)).scalar_one() == 9


def test_reprocess_dry_run_stores_nothing(sqlite_url: str, tmp_path: Path) -> None:
    cfg = parse_config({"database": {"url": sqlite_url}, "rules": {"sender_authentication": "insecure-off"}}, "test")
    engine = open_engine(sqlite_url)
    md = _maildir(tmp_path / "md", [make_mail(i) for i in range(4)])
    _, t = reprocess(engine, cfg, ReprocessRequest(str(md), dry_run=True), NOW)
    assert t.new == 4
    with engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(MESSAGE)).scalar_one() == 0


def test_reprocess_since_uses_received_time(sqlite_url: str, tmp_path: Path) -> None:
    cfg = parse_config({"database": {"url": sqlite_url}, "rules": {"sender_authentication": "insecure-off"}}, "test")
    engine = open_engine(sqlite_url)
    eml = tmp_path / "eml"
    eml.mkdir()
    (eml / "old.eml").write_bytes(make_mail(1, date=datetime(2025, 1, 5, tzinfo=UTC)))
    (eml / "new.eml").write_bytes(make_mail(2, date=datetime(2026, 6, 5, tzinfo=UTC)))
    from datetime import date

    _, t = reprocess(engine, cfg, ReprocessRequest(str(eml), since=date(2026, 1, 1)), NOW)
    assert t.new == 1


def test_received_at_falls_back_to_file_time(sqlite_url: str, tmp_path: Path) -> None:
    cfg = parse_config({"database": {"url": sqlite_url}, "rules": {"sender_authentication": "insecure-off"}}, "test")
    engine = open_engine(sqlite_url)
    eml = tmp_path / "eml"
    eml.mkdir()
    f = eml / "nodate.eml"
    f.write_bytes(b"From: a@b.example\r\nSubject: no date\r\n\r\nx\r\n")
    os.utime(f, (1_700_000_000, 1_700_000_000))
    reprocess(engine, cfg, ReprocessRequest(str(eml)), NOW)
    with engine.connect() as c:
        row = c.execute(sa.select(RAW_COPY.c.received_at, RAW_COPY.c.received_source)).one()
    assert row.received_source == "file-time"
    assert row.received_at == datetime.fromtimestamp(1_700_000_000, UTC)
