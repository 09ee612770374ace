"""mailcase db backup / db restore (issue 16): an online SQLite copy while mail is written, the restore
the README documents, each refusal as one line with its exit code, and the PostgreSQL commands."""

from __future__ import annotations

import gc
import re
import sqlite3
import stat
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from batching import Desk, ny
from helpers import ROOT, Cli, write_config

from mailcase.domain.db import make_engine, upgrade
from mailcase.domain.lease import Lease

SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def _cases(cli: Cli) -> list[str]:
    return [line.split()[0] for line in cli("cases", "list").splitlines() if line.startswith("#")]


def _db_file(desk: Desk) -> Path:
    return Path(desk.engine.url.database or "")


def _readme_commands(backup: Path) -> list[list[str]]:
    """The ``mc ...`` lines of the README's backup and restore section, the backup file replaced by ``backup``."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Backup and restore", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = []
    for line in section.splitlines():
        words = line.split("#", 1)[0].split()
        if words and words[0] == "mc":
            commands.append([re.sub(r"^/var/lib/mailcase/\S+\.db$", str(backup), w) for w in words[1:]])
    return commands


def _let_go(desk: Desk) -> None:
    """Close every connection this process has on the database (the CLI's engines included), as a
    stopped service would."""
    desk.engine.dispose()
    gc.collect()


@SQLITE
def test_a_backup_taken_while_another_connection_writes_opens_and_has_the_rows(
        desk_cli: tuple[Desk, Cli], tmp_path: Path) -> None:
    desk, cli = desk_cli
    desk.mail(ny(2026, 11, 23, 8, 0), subject="Export broken")
    desk.process(ny(2026, 11, 23, 9, 31))
    db = _db_file(desk)
    writer = sqlite3.connect(db, isolation_level=None, timeout=30, check_same_thread=False)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE scratch (n INTEGER)")
    stop, written = threading.Event(), [0]

    def write() -> None:
        while not stop.is_set():
            writer.execute("INSERT INTO scratch VALUES (?)", (written[0],))
            written[0] += 1

    thread = threading.Thread(target=write)
    thread.start()
    try:
        while written[0] < 200 and thread.is_alive():
            stop.wait(0.01)
        before = written[0]
        out = cli("db", "backup", str(tmp_path / "copy.db"))
        after = written[0]
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join()
        writer.close()
    assert "backed up" in out
    copy = tmp_path / "copy.db"
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    conn = sqlite3.connect(copy)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = conn.execute("SELECT count(*), max(n) FROM scratch").fetchone()
        assert before <= rows[0] <= after and rows[1] == rows[0] - 1   # a snapshot: every row up to one point
        assert conn.execute("SELECT count(*) FROM support_case").fetchone() == (1,)
    finally:
        conn.close()
    assert not Path(f"{copy}-wal").exists()


@SQLITE
def test_the_readme_commands_back_up_and_restore_the_cases(desk_cli: tuple[Desk, Cli], tmp_path: Path) -> None:
    desk, cli = desk_cli
    desk.mail(ny(2026, 11, 23, 8, 0), subject="Export broken")
    desk.mail(ny(2026, 11, 23, 8, 5), sender="bob@globex.example", subject="Login fails")
    desk.process(ny(2026, 11, 23, 9, 31))
    cli.at(ny(2026, 11, 23, 10, 0))
    assert _cases(cli) == ["#000001", "#000002"]
    backup = tmp_path / "mailcase-backup.db"
    backup_cmd, restore_cmd, upgrade_cmd = _readme_commands(backup)
    assert backup_cmd == ["db", "backup", str(backup)] and restore_cmd == ["db", "restore", str(backup)]
    assert upgrade_cmd == ["db", "upgrade"]
    cli(*backup_cmd)
    # work goes on after the backup: a note on case 1, which the restore takes away
    cli("case", "note", "1", "-m", "Written after the backup")
    assert "Written after the backup" in cli("cases", "show", "1")
    _let_go(desk)
    out = cli(*restore_cmd)
    db = _db_file(desk)
    assert f"restored {backup} (schema" in out and f"{db}.before-restore" in out
    assert "database already at" in cli(*upgrade_cmd)
    assert _cases(cli) == ["#000001", "#000002"]
    assert "Written after the backup" not in cli("cases", "show", "1")
    # the database it replaced is kept whole
    kept = sqlite3.connect(f"{db}.before-restore")
    try:
        assert kept.execute("SELECT count(*) FROM support_case").fetchone() == (2,)
        assert any("Written after the backup" in line for line in kept.iterdump())
    finally:
        kept.close()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


@SQLITE
def test_a_backup_of_an_older_schema_is_restored_then_upgraded(desk_cli: tuple[Desk, Cli], tmp_path: Path) -> None:
    desk, cli = desk_cli
    old = make_engine(f"sqlite:///{tmp_path}/old.db")
    upgrade(old, "0008")
    old.dispose()
    _let_go(desk)
    cli.at(ny(2026, 11, 23, 10, 0))
    out = cli("db", "restore", str(tmp_path / "old.db"))
    assert "(schema 0008)" in out and "run `mailcase db upgrade`" in out
    assert "upgraded from 0008 to" in cli("db", "upgrade")
    assert _cases(cli) == []


@SQLITE
def test_backup_refuses_to_overwrite_a_file_without_force(desk_cli: tuple[Desk, Cli], tmp_path: Path) -> None:
    _desk, cli = desk_cli
    target = tmp_path / "exists.db"
    target.write_text("keep me")
    line = _one_line(cli("db", "backup", str(target), code=2))
    assert line == f"mailcase: {target} exists: give another file or --force to overwrite it"
    assert target.read_text() == "keep me"
    cli("db", "backup", "--force", str(target))
    assert target.read_bytes().startswith(b"SQLite format 3\x00")


@SQLITE
def test_restore_refuses_a_file_that_is_not_a_mailcase_database(desk_cli: tuple[Desk, Cli], tmp_path: Path) -> None:
    desk, cli = desk_cli
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 10)
    line = _one_line(cli("db", "restore", str(text), code=2))
    assert line == f"mailcase: {text} is not a mailcase database (not an SQLite file)"
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    line = _one_line(cli("db", "restore", str(other), code=2))
    assert line.startswith(f"mailcase: {other} is not a mailcase database (no such table: alembic_version")
    line = _one_line(cli("db", "restore", str(tmp_path / "missing.db"), code=2))
    assert line == f"mailcase: no backup at {tmp_path / 'missing.db'}"
    # nothing was touched
    assert not Path(f"{_db_file(desk)}.before-restore").exists()


@SQLITE
def test_restore_refuses_while_a_daemon_holds_a_lease(desk_cli: tuple[Desk, Cli], tmp_path: Path) -> None:
    desk, cli = desk_cli
    desk.mail(ny(2026, 11, 23, 8, 0), subject="Export broken")
    desk.process(ny(2026, 11, 23, 9, 31))
    cli.at(ny(2026, 11, 23, 10, 0))
    cli("db", "backup", str(tmp_path / "b.db"))
    Lease(desk.engine, "mailbox:support", "fetch").acquire()
    _let_go(desk)
    line = _one_line(cli("db", "restore", str(tmp_path / "b.db"), code=75))
    assert re.fullmatch(r"mailcase: mailbox:support is held by fetch pid \d+ on \S+ until [\d :-]+ UTC: "
                        r"stop mailcase first \(--force if that process is gone\)", line), line
    assert not Path(f"{_db_file(desk)}.before-restore").exists()
    assert "restored" in cli("db", "restore", "--force", str(tmp_path / "b.db"))
    assert _cases(cli) == ["#000001"]


def test_postgresql_prints_the_commands_with_the_password_masked(
        pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = sa.engine.make_url(pg_url).set(drivername="postgresql+psycopg", password="s3cret-pw")
    cfg = write_config(tmp_path / "c.toml", url.render_as_string(hide_password=False), [])
    cli = Cli(cfg, tmp_path / "clock", capsys)
    target = tmp_path / "dump.pgc"
    out = cli("db", "backup", str(target))
    masked = url.set(drivername="postgresql").render_as_string(hide_password=True)
    assert "s3cret-pw" not in out and "***" in out
    assert f"pg_dump --format=custom --file={target} --dbname='{masked}'" in out
    assert not target.exists()
    out = cli("db", "restore", str(target))
    assert "s3cret-pw" not in out
    assert f"pg_restore --clean --if-exists --no-owner --dbname='{masked}' {target}" in out
    assert f"psql --single-transaction --dbname='{masked}' --file={target}" in out
