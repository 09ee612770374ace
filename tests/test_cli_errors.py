"""The documented install runs as written: each mistake is one line on stderr with the fix, and a
documented exit status (2 usage, 75 temporary, 77 refused, 78 configuration)."""

from __future__ import annotations

import errno
import io
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from batching import Desk, ny
from helpers import Cli, key_file, run_main, write_config

from mailcase.cli.service import once_exit_code
from mailcase.config.loader import embedded_defaults
from mailcase.core.errors import ConfigError


class Tty(io.StringIO):
    """Standard input that says it is a terminal (answers read from the string)."""

    def isatty(self) -> bool:
        return True


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``mailcase ARGS`` in-process: (exit status, stdout, stderr)."""
    done = run_main(capsys, *args)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def cfg(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    return write_config(tmp_path / "c.toml", sqlite_url, [])


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# -- 1. tiers: one spelling, any case in, canonical out -----------------------------------------

def test_tiers_are_accepted_in_any_case_and_shown_canonically(desk_cli: tuple[Desk, Cli]) -> None:
    desk, cli = desk_cli
    cli.at(ny(2026, 11, 23, 7, 0))
    assert "specialist Sam (SSI) active" in cli("specialists", "add", "Sam", "--tier", "ssi")
    assert "specialist Ann (SSII) active" in cli("specialists", "add", "Ann", "--tier", "SsIi")
    assert "Ann                  SSII" in cli("specialists", "list")
    desk.mail(ny(2026, 11, 23, 8, 0), subject="Claims stuck in queue", body="Severity: 2\nPlease help\n")
    desk.process(ny(2026, 11, 23, 7, 0))
    cli.at(ny(2026, 11, 23, 9, 31))
    cli("batch", "--now")
    assert "SSI -> SSIII, owner unchanged" in cli("case", "escalate", "1", "--to", "ssiii")
    assert "tier SSIII" in cli("cases", "show", "1")
    assert " SSIII " in cli("cases", "list", "--status", "ESCALATED")
    err = cli("specialists", "add", "Bo", "--tier", "ss4", code=2)
    assert "Invalid value for '--tier': 'ss4' is not one of 'SSI', 'SSII', 'SSIII', 'DEV'" in err


# -- 2. a filter value outside its fixed set is a usage error naming the option and the values ---

@pytest.mark.parametrize(("args", "option", "allowed"), [
    (("cases", "list", "--status", "bogus"), "--status", "'new', 'acknowledged', 'in-progress'"),
    (("messages", "list", "--state", "bogus"), "--state", "'stored'"),
    (("outbox", "list", "--status", "bogus"), "--status", "'queued'"),
    (("report", "--format", "xml"), "--format", "'text', 'csv', 'json'"),
    (("render", "notice", "--case", "1", "--notice", "bogus"), "--notice", "'unknown-sender'"),
])
def test_a_bad_filter_value_is_a_usage_error(cfg: Path, capsys: pytest.CaptureFixture[str],
                                             args: tuple[str, ...], option: str, allowed: str) -> None:
    code, _out, err = run(capsys, "--config", str(cfg), *args)
    assert code == 2
    line = one_line(err)
    assert line.startswith(f"mailcase: Invalid value for '{option}': '{args[-1]}' is not one of ")
    assert allowed in line


def test_filter_values_are_case_insensitive(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--config", str(cfg), "cases", "list", "--status", "NEW")[:2] == (0, "no cases\n")
    assert run(capsys, "--config", str(cfg), "messages", "list", "--state", "Stored")[0] == 0
    assert run(capsys, "--config", str(cfg), "report", "--format", "JSON")[0] == 0


# -- 3. erase confirms on a terminal and needs --yes elsewhere -----------------------------------

def test_erase_without_a_terminal_needs_yes(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--config", str(cfg), "erase", "--address", "alice@acme.example")
    assert code == 2 and out == ""
    assert one_line(err).startswith("mailcase: erase needs --yes when not run on a terminal")
    code, out, _err = run(capsys, "--config", str(cfg), "erase", "--address", "alice@acme.example", "--yes")
    assert code == 0 and out.startswith("erased ") and "alice@acme.example" in out


def test_erase_on_a_terminal_asks(cfg: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", Tty("n\n"))
    code, out, err = run(capsys, "--config", str(cfg), "erase", "--address", "alice@acme.example")
    assert "erase everything about alice@acme.example?" in out
    assert code == 130 and "mailcase: aborted" in err and "erased" not in out
    monkeypatch.setattr(sys, "stdin", Tty("y\n"))
    code, out, _err = run(capsys, "--config", str(cfg), "erase", "--address", "alice@acme.example")
    assert code == 0 and "erased " in out


# -- 4. --config after the command ----------------------------------------------------------------

@pytest.mark.parametrize("option", [["--config", "x.toml"], ["--config=x.toml"]])
def test_config_after_the_command_says_where_it_goes(capsys: pytest.CaptureFixture[str],
                                                     option: list[str]) -> None:
    code, _out, err = run(capsys, "cases", "list", *option)
    assert code == 2
    assert one_line(err) == "mailcase: --config goes before the command: mailcase --config FILE cases list ..."


# -- 5. postgres:// ---------------------------------------------------------------------------------

def test_a_postgres_url_gets_the_sqlalchemy_spelling(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path / "c.toml", "postgres://mc:secret@db.example/mailcase", [])
    code, _out, err = run(capsys, "--config", str(cfg), "cases", "list")
    assert code == 78
    line = one_line(err)
    assert line == (f"mailcase: {cfg}: database.url: postgres:// is not a SQLAlchemy URL: "
                    "write postgresql+psycopg://mc:***@db.example/mailcase")
    assert "secret" not in line


# -- 6. a data folder mailcase cannot write ----------------------------------------------------------

def test_a_data_folder_under_a_file_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "plain-file").write_text("")
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/plain-file/data/mailcase.db", [])
    code, _out, err = run(capsys, "--config", str(cfg), "cases", "list")
    assert code == 78
    assert one_line(err) == (f"mailcase: cannot write {tmp_path}/plain-file/data: not a directory; "
                             "set data_dir or database.url")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes any folder")
def test_an_unwritable_data_folder_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        cfg = write_config(tmp_path / "c.toml", f"sqlite:///{locked}/data/mailcase.db", [])
        code, _out, err = run(capsys, "--config", str(cfg), "cases", "list")
        assert code == 78
        assert one_line(err) == (f"mailcase: cannot write {locked}/data: permission denied; "
                                 "set data_dir or database.url")
    finally:
        locked.chmod(0o700)


def test_a_refused_data_folder_is_a_config_error_as_root_too(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """What an unprivileged service user meets, simulated where the tests run as root."""
    def refuse(self: Path, *_args: object, **_kwargs: object) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))

    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/srv/data/mailcase.db", [])
    monkeypatch.setattr(Path, "mkdir", refuse)
    code, _out, err = run(capsys, "--config", str(cfg), "cases", "list")
    assert code == 78
    assert one_line(err) == (f"mailcase: cannot write {tmp_path}/srv/data: permission denied; "
                             "set data_dir or database.url")


@pytest.mark.parametrize(("make", "why"), [
    (lambda path: path.mkdir(), "unable to open database file"),
    (lambda path: path.write_text("not sqlite at all " * 64), "file is not a database"),
])
def test_a_database_path_sqlite_cannot_use_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             make: Callable[[Path], object], why: str) -> None:
    path = tmp_path / "mailcase.db"
    make(path)
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{path}", [])
    code, _out, err = run(capsys, "--config", str(cfg), "cases", "list")
    assert code == 78
    assert one_line(err) == f"mailcase: cannot use {path}: {why}; set data_dir or database.url"


def test_the_demo_key_in_an_unusable_data_folder_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("")
    with pytest.raises(ConfigError, match=r"^cannot write .*plain-file/data: not a directory; set data_dir"):
        embedded_defaults(str(tmp_path / "plain-file" / "data")).hmac_key()


# -- 7. run --once exits with the documented statuses -------------------------------------------------

def test_run_once_with_a_server_down_exits_75(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MC_TEST_PW", "x")
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/m.db", [{
        "name": "down", "host": "127.0.0.1", "port": 1, "security": "plain", "username": "u",
        "password": {"env": "MC_TEST_PW"}, "timeout_seconds": 5,
    }])
    code, out, err = run(capsys, "--config", str(cfg), "run", "--once")
    assert code == 75, err
    assert "down: failed: imap down (127.0.0.1:1): cannot connect" in err and "stored: 0 mails" in out


def test_run_once_with_a_missing_secret_exits_78(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MC_TEST_PW", raising=False)
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/m.db", [{
        "name": "box", "host": "127.0.0.1", "port": 1, "security": "plain", "username": "u",
        "password": {"env": "MC_TEST_PW"},
    }])
    key_file(tmp_path)
    code, _out, err = run(capsys, "--config", str(cfg), "run", "--once")
    assert code == 78
    assert "box: failed: secret: environment variable MC_TEST_PW is not set" in err


def test_run_once_reports_the_gravest_documented_status() -> None:
    assert once_exit_code([75]) == 75
    assert once_exit_code([75, 77]) == 77
    assert once_exit_code([77, 78, 75]) == 78
    assert once_exit_code([1]) == 75  # an undocumented status becomes "temporary"
    assert once_exit_code([65, 77]) == 77


# -- 8. every path the configuration names: the key, the path, exit 78 ---------------------------------

@pytest.mark.parametrize(("section", "make", "key", "problem"), [
    ("directory", lambda t: {"csv": str(t / "missing.csv")}, "directory.csv", "does not exist"),
    ("kb", lambda t: {"path": str(t / "no-kb")}, "kb.path", "does not exist"),
    ("outgoing", lambda t: {"file_dir": str(t / "plain-file" / "outbox")}, "outgoing.file_dir",
     "cannot be created ({t}/plain-file is not a folder)"),
    ("mailboxes", lambda t: {"name": "box", "kind": "maildir", "path": str(t / "plain-file")}, "mailboxes[0].path",
     "not a folder"),
    ("mailboxes", lambda t: {"name": "box", "kind": "maildir", "path": str(t / "no-such" / "Maildir")},
     "mailboxes[0].path", "does not exist, nor does {t}/no-such"),
    ("directory", lambda t: {"csv": str(t)}, "directory.csv", "not a file"),
    ("outgoing", lambda t: {"templates_dir": str(t / "my-templates")}, "outgoing.templates_dir", "does not exist"),
])
def test_a_path_the_service_cannot_use_stops_it_with_78(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        section: str, make: Callable[[Path], dict[str, str]],
                                                        key: str, problem: str) -> None:
    (tmp_path / "plain-file").write_text("")
    values = make(tmp_path)
    boxes = [values] if section == "mailboxes" else []
    sections = {} if section == "mailboxes" else {section: values}
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/m.db", boxes, **sections)
    path = values.get("csv") or values.get("path") or values.get("file_dir") or values.get("templates_dir")
    code, _out, err = run(capsys, "--config", str(cfg), "run", "--once")
    assert code == 78
    assert one_line(err) == f"mailcase: {cfg}: {key}: {path}: {problem.format(t=tmp_path)}"
    # check names the same problem, and exits with the same status
    code, out, _err = run(capsys, "--config", str(cfg), "check")
    assert code == 78
    assert f"FAIL {key}: {path}: {problem.format(t=tmp_path)} -- fix: fix the path in {key}" in out


def test_check_exits_with_the_gravest_documented_status(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MC_TEST_PW", raising=False)
    down = {"name": "down", "host": "127.0.0.1", "port": 1, "security": "plain", "username": "u",
            "password": {"env": "MC_TEST_PW"}, "timeout_seconds": 5}
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/m.db", [down])
    code, out, _err = run(capsys, "--config", str(cfg), "check")
    assert code == 78, out  # the password cannot be read: configuration, as `run` says
    assert "FAIL mailboxes[0].password: secret: environment variable MC_TEST_PW is not set" in out
    monkeypatch.setenv("MC_TEST_PW", "x")
    code, out, _err = run(capsys, "--config", str(cfg), "check")
    assert code == 75, out  # only the server is away: temporary
    assert "FAIL imap down: " in out


# -- 9. no configuration: staff and stage commands refuse, unless --demo --------------------------------

@pytest.mark.parametrize("command", [["cases", "list"], ["run", "--once"], ["fetch"], ["status"], ["check"]])
def test_without_a_configuration_commands_refuse_and_create_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        command: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAILCASE_CONFIG", raising=False)
    monkeypatch.setattr("mailcase.config.loader.DEFAULT_CONFIG_PATHS", (tmp_path / "etc" / "mailcase.toml",))
    code, out, err = run(capsys, *command)
    assert code == 78 and out == ""
    assert one_line(err) == (f"mailcase: no configuration file (looked for --config FILE, $MAILCASE_CONFIG, "
                             f"{tmp_path}/etc/mailcase.toml); `mailcase --demo COMMAND` runs on the embedded demo")
    assert list(tmp_path.iterdir()) == []  # no ./mailcase-data


def test_demo_and_config_exclude_each_other(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "--demo", "--config", str(cfg), "cases", "list")
    assert code == 2
    assert one_line(err) == "mailcase: --demo and --config exclude each other (see: mailcase --help)"


def test_a_maildir_the_mail_server_has_not_made_yet_is_no_error(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Dovecot or Postfix make a Maildir at its first delivery: until then it reads as empty."""
    box = {"name": "box", "kind": "maildir", "path": str(tmp_path / "Maildir")}
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/m.db", [box])
    code, out, err = run(capsys, "--config", str(cfg), "run", "--once")
    assert code == 0, err
    assert "stored: 0 mails" in out


def test_a_template_that_does_not_compile_stops_the_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "ack.txt.j2").write_text("Subject: {{ case.subject\n\nbroken\n")
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/m.db", [], outgoing={"templates_dir": str(folder)})
    code, _out, err = run(capsys, "--config", str(cfg), "run", "--once")
    assert code == 78
    assert one_line(err).startswith("mailcase: templates: ack.txt.j2: TemplateSyntaxError: ")
