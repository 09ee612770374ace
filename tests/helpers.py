"""Test helpers: mail factories, IMAP accounts on the test Dovecot, configs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import IO, Any

import imapclient
import pytest
from servers.dovecot import Dovecot

from mailcase.cli.app import main
from mailcase.config.loader import parse_config
from mailcase.config.settings import Config

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)  # Monday 08:00 in New York


def make_mail(
    i: int = 0,
    *,
    sender: str = "alice@acme.example",
    subject: str | None = None,
    body: str | None = None,
    date: datetime | None = None,
    msgid: str | None = None,
    headers: dict[str, str] | None = None,
    linesep: str = "\r\n",
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "support@support.example"
    msg["Subject"] = subject if subject is not None else f"Request number {i}"
    msg["Date"] = format_datetime(date or (T0 + timedelta(minutes=i)))
    msg["Message-ID"] = msgid or f"<req{i}.{abs(hash(sender)) % 10**6}@acme.example>"
    for k, v in (headers or {}).items():
        msg[k] = v
    msg.set_content(body if body is not None else f"Hello, this is request {i}.\nThanks\n")
    return msg.as_bytes(policy=msg.policy.clone(linesep=linesep))


def body_text(msg: EmailMessage, subtype: str = "plain") -> str:
    """The text of a mail's ``text/<subtype>`` body (the part a reader is shown)."""
    part = msg.get_body((subtype,))
    assert part is not None, f"no text/{subtype} body in {msg['Subject']!r}"
    text: str = part.get_content()
    return text


class ImapAccount:
    """A user on the test Dovecot plus a second connection to append mail."""

    def __init__(self, server: Dovecot, user: str, password: str, tmp: Path) -> None:
        self.server = server
        self.user = user
        self.password = password
        self.tmp = tmp
        self.password_file = tmp / f"{user}.pw"
        self.password_file.write_text(password + "\n")
        self._client: imapclient.IMAPClient | None = None

    @property
    def client(self) -> imapclient.IMAPClient:
        if self._client is None:
            c = imapclient.IMAPClient("127.0.0.1", port=self.server.port, ssl=False, timeout=30)
            c._imap.debug = 0
            c.login(self.user, self.password)
            self._client = c
        return self._client

    def reconnect(self) -> None:
        self.close()

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.logout()
            except Exception:
                pass
            self._client = None

    def append(self, raw: bytes, folder: str = "INBOX", when: datetime | None = None,
               flags: tuple[bytes, ...] = ()) -> None:
        self.client.append(folder, raw, flags=flags, msg_time=when)

    def append_many(self, raws: list[bytes], folder: str = "INBOX", when: datetime | None = None) -> None:
        if not self.client.folder_exists(folder):
            self.client.create_folder(folder)
        for i in range(0, len(raws), 200):
            self.client.multiappend(folder, [
                {"msg": r, "date": when} if when else r for r in raws[i:i + 200]
            ])

    def uids(self, folder: str = "INBOX") -> list[int]:
        self.client.select_folder(folder, readonly=True)
        return sorted(self.client.search(["ALL"]))

    def flags(self, folder: str = "INBOX") -> dict[int, tuple[bytes, ...]]:
        self.client.select_folder(folder, readonly=True)
        uids = self.client.search(["ALL"])
        return {u: d[b"FLAGS"] for u, d in self.client.fetch(uids, ["FLAGS"]).items()} if uids else {}

    def mailbox_config(self, name: str = "support", **overrides: Any) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "name": name,
            "host": "127.0.0.1",
            "port": self.server.port,
            "security": "plain",
            "username": self.user,
            "password": {"file": str(self.password_file)},
            "start_at": "all",
            "timeout_seconds": 20.0,
        }
        cfg.update(overrides)
        return cfg


def key_file(tmp: Path) -> Path:
    path = tmp / "hmac-key"
    if not path.exists():
        path.write_text("test-key-0123456789abcdef0123456789")
    return path


#: the cutoffs of the test mail (dated 2026) close however late a test first runs the
#: cutoff stage; a fresh database otherwise starts at the next cutoff (test_time_sanity.py)
TEST_BATCH = {"start_at": "2026-01-01T00:00:00Z"}


def config(db_url: str, tmp: Path, mailboxes: list[dict[str, Any]] | None = None, **sections: Any) -> Config:
    data: dict[str, Any] = {
        "data_dir": str(tmp / "data"), "database": {"url": db_url},
        "rules": {"sender_authentication": "insecure-off"},
        "secrets": {"hmac_key": {"file": str(key_file(tmp))}},
    }
    data["mailboxes"] = mailboxes or []
    data.update(sections)
    data["batch"] = {**TEST_BATCH, **sections.get("batch", {})}
    return parse_config(data, "test")


def write_config(path: Path, db_url: str, mailboxes: list[dict[str, Any]], **sections: Any) -> Path:
    """Write a TOML file (via json-compatible values) for CLI subprocess tests."""
    sections.setdefault("rules", {"sender_authentication": "insecure-off"})
    sections.setdefault("secrets", {"hmac_key": {"file": str(key_file(path.parent))}})
    sections["batch"] = {**TEST_BATCH, **sections.get("batch", {})}
    lines = [f"data_dir = {json.dumps(str(path.parent / 'data'))}", "", "[database]", f"url = {json.dumps(db_url)}", ""]
    for name, values in sections.items():
        lines.append(f"[{name}]")
        for k, v in values.items():
            lines.append(f"{k} = {_toml(v)}")
        lines.append("")
    for box in mailboxes:
        lines.append("[[mailboxes]]")
        for k, v in box.items():
            lines.append(f"{k} = {_toml(v)}")
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return json.dumps(str(v))


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("MAILCASE_CONFIG", None) if env is None or "MAILCASE_CONFIG" not in env else None
    return subprocess.run(
        [sys.executable, "-m", "mailcase", *args],
        capture_output=True, text=True, env=full_env, timeout=timeout, cwd=cwd,
    )


class LogTail:
    """Reads a process's log (stderr) as it is written, so that a test waits for the
    event it needs ("the worker is in IDLE now") instead of sleeping."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def count(self, text: str) -> int:
        with self._changed:
            return sum(text in line for line in self.lines)

    def wait_for(self, text: str, timeout: float, more_than: int = 0) -> None:
        """Until more than ``more_than`` lines contain ``text``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while sum(text in line for line in self.lines) <= more_than:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no log line with {text!r} within {timeout} s; the last lines:\n"
                                         + "".join(self.lines[-20:]))
                self._changed.wait(left)

    def text(self, timeout: float = 10.0) -> str:
        """Everything logged, once the process has closed its end."""
        self._reader.join(timeout)
        with self._changed:
            return "".join(self.lines)


class Cli:
    """The ``mailcase`` command run in-process through its real entry point, on one config and test clock."""

    def __init__(self, cfg: Path, clock: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.cfg, self.clock, self.capsys = cfg, clock, capsys

    def __call__(self, *args: str, code: int = 0) -> str:
        with pytest.raises(SystemExit) as exit_:
            main(["--config", str(self.cfg), *args])
        out, err = self.capsys.readouterr()
        assert exit_.value.code == code, f"{args}: exit {exit_.value.code}\n{out}\n{err}"
        return out if code == 0 else err + out

    def at(self, when: datetime) -> None:
        self.clock.write_text(f"{when.isoformat()}\n")


def terminate(proc: subprocess.Popen[Any], timeout: float = 20) -> int:
    """A clean stop of a service that must still be running: SIGTERM, then its exit status."""
    assert proc.poll() is None, "the service died"
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=timeout)


def reap(proc: subprocess.Popen[Any]) -> None:
    """Whatever a test did: no service of its left running."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess[str]:
    """``mailcase ARGS`` in-process through its real entry point (a subprocess costs two seconds of
    imports): its exit status and output, as :func:`run_cli` gives them."""
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    out, err = capsys.readouterr()
    code = exit_.value.code
    status = code if isinstance(code, int) else 0 if code is None else 1
    return subprocess.CompletedProcess(["mailcase", *args], status, out, err)
