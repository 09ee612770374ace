"""The CLI as users run it: one-line errors, non-zero exits, --help everywhere, the demo."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from helpers import ImapAccount, make_mail, run_cli, run_main, write_config
from servers.dovecot import free_port

from mailcase.cli.app import cli


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {text!r}"
    return lines[0]


def _all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix]
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out += _all_commands(cmd, prefix + (name,))
        else:
            out.append(prefix + (name,))
    return out


def assert_help(returncode: int, stdout: str, stderr: str) -> None:
    assert returncode == 0, stderr
    assert "Usage: mailcase" in stdout
    # the first help line says something
    assert len(stdout.split("\n\n")[1].strip()) > 10


def test_python_m_mailcase_help() -> None:
    """The real entry point, in its own process: ``python -m mailcase --help``."""
    r = run_cli("--help")
    assert_help(r.returncode, r.stdout, r.stderr)


@pytest.mark.parametrize("path", _all_commands(cli), ids=lambda p: " ".join(p) or "mailcase")
def test_help_on_every_command(path: tuple[str, ...]) -> None:
    """In-process (one subprocess per command took a minute)."""
    r = CliRunner().invoke(cli, [*path, "--help"], prog_name="mailcase")
    assert_help(r.exit_code, r.stdout, r.stderr + repr(r.exception))


def test_unknown_option_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = run_main(capsys, "fetch", "--no-such-option")
    assert r.returncode == 2
    assert "No such option" in one_line(r.stderr)


def test_unknown_config_key_names_key_and_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[database]\nurl = "sqlite:///x.db"\nbusy_timout_seconds = 3\n')
    r = run_main(capsys, "--config", str(cfg), "fetch")
    assert r.returncode == 78
    line = one_line(r.stderr)
    assert str(cfg) in line and "database.busy_timout_seconds: unknown key" in line


def test_wrong_type_in_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[[mailboxes]]\nname = "support"\nhost = "imap.example.org"\nport = "993"\n'
                   'username = "u"\npassword = { env = "X" }\n')
    r = run_main(capsys, "--config", str(cfg), "fetch")
    assert r.returncode == 78
    assert "mailboxes[0].port: Input should be a valid integer" in one_line(r.stderr)


def test_inline_secret_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[[mailboxes]]\nname = "support"\nhost = "imap.example.org"\nusername = "u"\npassword = "hunter2"\n')
    r = run_main(capsys, "--config", str(cfg), "fetch")
    assert r.returncode == 78
    line = one_line(r.stderr)
    assert "mailboxes[0].password: inline secrets are not allowed" in line
    assert "hunter2" not in line


def test_unreachable_server(tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()  # nothing listens there
    pw = tmp_path / "pw"
    pw.write_text("x")
    cfg = write_config(tmp_path / "c.toml", sqlite_url, [{
        "name": "support", "host": "127.0.0.1", "port": port, "security": "plain",
        "username": "u", "password": {"file": str(pw)}, "timeout_seconds": 5.0,
    }])
    r = run_main(capsys, "--config", str(cfg), "fetch")
    assert r.returncode == 75
    assert f"imap support (127.0.0.1:{port}): cannot connect: Connection refused" in one_line(r.stderr)


def test_wrong_password(imap: ImapAccount, tmp_path: Path, sqlite_url: str) -> None:
    pw = tmp_path / "wrong"
    pw.write_text("not-the-password")
    cfg = write_config(tmp_path / "c.toml", sqlite_url, [imap.mailbox_config(password={"file": str(pw)})])
    r = run_cli("--config", str(cfg), "fetch")
    assert r.returncode == 77
    line = one_line(r.stderr)
    assert f"login failed for {imap.user}" in line and "not-the-password" not in line


def test_missing_secret_file(tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path / "c.toml", sqlite_url, [{
        "name": "support", "host": "127.0.0.1", "security": "plain", "username": "u",
        "password": {"file": str(tmp_path / "nope")},
    }])
    r = run_main(capsys, "--config", str(cfg), "fetch")
    assert r.returncode == 78
    assert "cannot read" in one_line(r.stderr) and "nope" in r.stderr


def test_fetch_then_show(imap: ImapAccount, tmp_path: Path, sqlite_url: str) -> None:
    imap.append(make_mail(1, subject="Printer on fire"))
    cfg = write_config(tmp_path / "c.toml", sqlite_url, [imap.mailbox_config()])
    r = run_cli("--config", str(cfg), "fetch")
    assert r.returncode == 0, r.stderr
    assert "support: seen 1, new 1" in r.stdout
    r = run_cli("--config", str(cfg), "fetch")
    assert "seen 0, new 0" in r.stdout
    r = run_cli("--config", str(cfg), "parse")
    assert "parsed 1, quarantined 0" in r.stdout
    r = run_cli("--config", str(cfg), "message", "show", "1")
    assert "Printer on fire" in r.stdout and "parsed by" in r.stdout
    r = run_cli("--config", str(cfg), "message", "show", "99")
    assert r.returncode == 2 and one_line(r.stderr) == "mailcase: no message 99"


def test_demo_runs_on_embedded_defaults(tmp_path: Path) -> None:
    r = run_cli("--demo", "run", "--once", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "sample: seen 8, new 8" in r.stdout
    assert "stored: 8 mails" in r.stdout
    assert (tmp_path / "mailcase-data" / "mailcase.db").exists()
    # the rules, the cutoffs and the outbox ran: cases, acknowledgements, notices
    assert "cases: 3" in r.stdout
    assert "#000001 acknowledged" in r.stdout and "#000003 held" in r.stdout
    written = sorted(p.name for p in (tmp_path / "mailcase-data" / "outbox").iterdir())
    assert len(written) == 4 and any("erin@acme.example" in n for n in written)
    assert "notice/not-authorized" in r.stdout and "notice/hold" in r.stdout
    again = run_cli("--demo", "run", "--once", cwd=tmp_path)
    assert "sample: seen 0, new 0" in again.stdout
    assert len(list((tmp_path / "mailcase-data" / "outbox").iterdir())) == 4  # no second mail
