"""The directory CSV as spreadsheets save it: UTF-8 (BOM or not), Windows-1252, commas, semicolons, tabs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import sqlalchemy as sa
from batching import Desk, ny
from helpers import Cli

from mailcase.domain.db import transaction
from mailcase.domain.directory import DbDirectory, set_standing
from mailcase.domain.tables import ACCOUNT
from mailcase.ops.daemon import import_directory

HEADER = ("account", "account_name", "address", "name", "role")
ROWS = (("EURO", "Euro AG", "anna@euro.example", "Anna Müller", "representative"),
        ("EURO", "Euro AG", "bob@euro.example", "Bob € Kasse", "administrator"))


def csv_bytes(delimiter: str = ",", encoding: str = "utf-8") -> bytes:
    lines = [delimiter.join(HEADER), *(delimiter.join(row) for row in ROWS)]
    return ("\r\n".join(lines) + "\r\n").encode(encoding)


def people(cli: Cli) -> str:
    return cli("accounts", "list", "EURO")


@pytest.mark.parametrize(("data", "note"), [
    (csv_bytes(), None),
    (b"\xef\xbb\xbf" + csv_bytes(), None),
    (csv_bytes(encoding="cp1252"), "read as Windows-1252 (not UTF-8 at line 2)"),
    (csv_bytes(";"), "columns separated by semicolons"),
    (csv_bytes("\t"), "columns separated by tabs"),
    (csv_bytes(";", "cp1252"), "read as Windows-1252 (not UTF-8 at line 2); columns separated by semicolons"),
], ids=["utf-8", "utf-8-bom", "windows-1252", "semicolons", "tabs", "excel-de"])
def test_spreadsheet_csvs_import(desk_cli: tuple[Desk, Cli], tmp_path: Path, data: bytes, note: str | None) -> None:
    _, cli = desk_cli
    cli.at(ny(2026, 11, 23, 7, 0))
    path = tmp_path / "people.csv"
    path.write_bytes(data)
    out = cli("accounts", "import", str(path))
    assert "people: 2 added" in out
    lines = [line for line in out.splitlines() if line.startswith(f"{path}: ")]
    assert lines == ([f"{path}: {n}" for n in note.split("; ")] if note else [])
    listed = people(cli)
    assert "Euro AG" in listed
    assert "anna@euro.example  Anna Müller" in listed and "bob@euro.example  Bob € Kasse" in listed
    assert "people: 0 added, 0 changed, 0 removed, 2 unchanged" in cli("accounts", "import", str(path))


def test_utf16_is_refused_with_a_hint(desk_cli: tuple[Desk, Cli], tmp_path: Path) -> None:
    _, cli = desk_cli
    cli.at(ny(2026, 11, 23, 7, 0))
    path = tmp_path / "people.csv"
    path.write_bytes(csv_bytes(encoding="utf-16"))
    err = cli("accounts", "import", str(path), code=2)
    assert err.strip() == (f"mailcase: {path}: not UTF-8 or Windows-1252 text (UTF-16?); "
                           "save it as UTF-8 (Excel: 'CSV UTF-8')")
    assert "no account 'EURO'" in cli("accounts", "list", "EURO", code=2)


def test_undecodable_bytes_name_the_line(desk_cli: tuple[Desk, Cli], tmp_path: Path) -> None:
    _, cli = desk_cli
    cli.at(ny(2026, 11, 23, 7, 0))
    path = tmp_path / "people.csv"
    path.write_bytes(csv_bytes() + b"EURO,Euro AG,c@euro.example,\x81\xff,user\r\n")
    err = cli("accounts", "import", str(path), code=2)
    assert err.strip() == f"mailcase: {path}: line 4: not UTF-8 or Windows-1252 text; save it as UTF-8 (Excel: 'CSV UTF-8')"


def test_wrong_columns_name_what_was_found_and_hint_the_delimiter(desk_cli: tuple[Desk, Cli], tmp_path: Path) -> None:
    _, cli = desk_cli
    cli.at(ny(2026, 11, 23, 7, 0))
    path = tmp_path / "people.csv"
    path.write_text("account|address|role\nEURO|anna@euro.example|representative\n", encoding="utf-8")
    err = cli("accounts", "import", str(path), code=2)
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"mailcase: {path}: header lacks column(s) account, address, role; expected: account, ")
    assert "found: account|address|role (read as comma-separated;" in err
    assert "separate columns by commas, or by semicolons or tabs throughout" in err
    path.write_text("Konto;Adresse;Rolle\nEURO;anna@euro.example;representative\n", encoding="utf-8")
    err = cli("accounts", "import", str(path), code=2)
    assert "header lacks column(s) account, address, role" in err
    assert "found: Konto | Adresse | Rolle (read as semicolon-separated;" in err


def test_daemon_logs_an_unreadable_csv_and_keeps_the_directory(
    desk_cli: tuple[Desk, Cli], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    desk, cli = desk_cli
    cli.at(ny(2026, 11, 23, 9, 0))
    path = tmp_path / "people.csv"
    path.write_bytes(csv_bytes(";", "cp1252"))
    config = desk.config.model_copy(
        update={"directory": desk.config.directory.model_copy(update={"csv": str(path)})})
    caplog.set_level(logging.INFO, logger="mailcase")
    assert "people: 2 added" in (import_directory(desk.engine, config, ny(2026, 11, 23, 7, 0)) or "")
    assert "note=\"read as Windows-1252" in caplog.text and "columns separated by semicolons" in caplog.text
    path.write_bytes(csv_bytes(encoding="utf-16") + b"\x00")  # another size: changed
    assert import_directory(desk.engine, config, ny(2026, 11, 23, 8, 0)) is None
    assert "event=directory-import-failed" in caplog.text and "UTF-16?" in caplog.text
    assert "Anna Müller" in people(cli)


def test_accounts_read_together_are_read_as_one_by_one(db_url: str, tmp_path: Path) -> None:
    """prefetch_accounts (a cutoff reads its senders' accounts in three queries) gives the
    same accounts as reading each alone, standing and representatives as of the instant."""
    desk = Desk(db_url, tmp_path)
    desk.directory(at=ny(2026, 11, 2, 8, 0))
    with transaction(desk.engine) as conn:
        set_standing(conn, "ACME", "hold", ny(2026, 11, 3, 8, 0), "test")
        set_standing(conn, "ACME", "good", ny(2026, 11, 5, 8, 0), "test")
        ids = [int(r.id) for r in conn.execute(sa.select(ACCOUNT.c.id))] + [99999]
    for at in (ny(2026, 11, 1, 8, 0), ny(2026, 11, 4, 8, 0), ny(2026, 11, 6, 8, 0)):
        with desk.engine.connect() as conn:
            alone = DbDirectory(conn, at, desk.config.staff)
            together = DbDirectory(conn, at, desk.config.staff)
            together.prefetch_accounts(ids)
            assert [together.account(i) for i in ids] == [alone.account(i) for i in ids]
    with desk.engine.connect() as conn:
        held = DbDirectory(conn, ny(2026, 11, 4, 8, 0), desk.config.staff)
        held.prefetch_accounts(ids)
        assert [a.standing for i in ids if (a := held.account(i)) and a.code == "ACME"] == ["hold"]
