"""The README's install, run as written, and the unit's sandbox reproduced around the service.

Run by ``tests/test_install.py`` as root inside a private mount namespace
(``unshare -m``): ``/etc``, ``/opt``, ``/usr``, ``/var/lib``, ``/run`` and
``/root`` get an overlay whose writes are thrown away with the namespace, so
the README's commands (``pip install`` into ``/opt/mailcase``,
``systemd-sysusers``, files under ``/etc/mailcase``) run unchanged without
touching the machine.

systemd itself is never booted (as PID 1 its start-up clean-up would empty
the machine's ``/tmp``).  ``systemctl`` lines are played by :class:`Unit`, which
reads the installed unit file and starts ``ExecStart=`` as systemd would:
as ``User=``, with ``StateDirectory=`` made and the only writable path, the
rest of the file system read-only (``ProtectSystem=strict``), a private
``/tmp``, ``/home`` and ``/root`` hidden, ``LoadCredential=`` files copied
into ``$CREDENTIALS_DIRECTORY``, ``$NOTIFY_SOCKET`` and ``$WATCHDOG_USEC``
set, ``UMask=``, no capabilities and no new privileges.

Its one argument is a JSON object (repo, readme, imap, smtp_port, accounts);
it prints one JSON line of what it saw, the last line of its output.
"""

from __future__ import annotations

import imaplib
import json
import os
import pwd
import re
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

WORK = Path("/run/mailcase-sandbox")  # in the overlay on /run: readable by the service user
NY = ZoneInfo("America/New_York")
MONDAY_0800 = datetime(2026, 11, 23, 8, 0, tzinfo=NY)
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def log(message: str) -> None:
    print(f"sandbox: {message}", file=sys.stderr, flush=True)


def overlay(target: str, scratch: Path) -> None:
    """Writes under ``target`` land in ``scratch`` and vanish with the namespace."""
    if not os.path.isdir(target):
        return
    name = target.strip("/").replace("/", "_") or "root"
    upper, work = scratch / name / "upper", scratch / name / "work"
    upper.mkdir(parents=True)
    work.mkdir(parents=True)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={target},upperdir={upper},workdir={work}", target], check=True)


def blocks(readme: str) -> dict[str, list[str]]:
    """The README's command blocks marked ``<!-- sandbox: NAME -->``, as logical lines."""
    found: dict[str, list[str]] = {}
    for m in re.finditer(r"<!-- sandbox: (\w+) -->\n```sh\n(.*?)```", readme, re.S):
        text = m.group(2).replace("\\\n", " ")
        found[m.group(1)] = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return found


@dataclass
class Notify:
    """The systemd end of sd_notify: what the service said, in order."""

    path: Path
    messages: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.path.chmod(0o666)
        self.sock.settimeout(0.1)

    def drain(self) -> None:
        while True:
            try:
                self.messages.extend(self.sock.recv(4096).decode().splitlines())
            except (TimeoutError, BlockingIOError):
                return

    def count(self, what: str) -> int:
        self.drain()
        return sum(1 for m in self.messages if m == what)


def wait(what: str, cond: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if cond():
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


class Unit:
    """``systemctl`` for one service unit, without systemd: its sandbox, reproduced."""

    def __init__(self, path: Path, notify: Notify, log_path: Path, clock: Path) -> None:
        self.path, self.notify, self.log_path, self.clock = path, notify, log_path, clock
        self.proc: subprocess.Popen[bytes] | None = None
        self.exits: list[int] = []
        self.starts = 0
        self.read()

    def read(self) -> None:
        """``daemon-reload``: the [Service] section, multi-valued keys as lists."""
        self.service: dict[str, list[str]] = {}
        section = ""
        for raw in self.path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line
                continue
            if section == "[Service]" and "=" in line:
                key, _, value = line.partition("=")
                self.service.setdefault(key, []).append(value)

    def one(self, key: str, default: str = "") -> str:
        return self.service.get(key, [default])[-1]

    def _credentials(self, uid: int) -> Path:
        """``LoadCredential=NAME:PATH``: copied by "systemd" (root) into a folder only the service reads."""
        folder = Path("/run/credentials") / self.path.name
        folder.mkdir(parents=True, exist_ok=True)
        for item in self.service.get("LoadCredential", []):
            name, _, source = item.partition(":")
            data = Path(source).read_bytes()  # a missing file fails the start, as under systemd
            target = folder / name
            target.write_bytes(data)
            os.chown(target, uid, -1)
            target.chmod(0o400)
        os.chown(folder, uid, -1)
        folder.chmod(0o500)
        return folder

    def _sandboxed(self, command: str, out: Any) -> subprocess.Popen[bytes]:
        """``command`` as the unit runs ExecStart=: its user, environment and file-system view."""
        user = pwd.getpwnam(self.one("User"))
        state = Path("/var/lib") / self.one("StateDirectory")
        state.mkdir(parents=True, exist_ok=True)
        os.chown(state, user.pw_uid, user.pw_gid)
        state.chmod(int(self.one("StateDirectoryMode", "0755"), 8))
        config_dir = Path("/etc") / self.one("ConfigurationDirectory")
        creds = self._credentials(user.pw_uid)
        env = {
            "PATH": PATH, "LANG": "C.UTF-8", "USER": user.pw_name, "LOGNAME": user.pw_name,
            "HOME": user.pw_dir, "SHELL": user.pw_shell, "INVOCATION_ID": uuid.uuid4().hex,
            "STATE_DIRECTORY": str(state), "CONFIGURATION_DIRECTORY": str(config_dir),
            "CREDENTIALS_DIRECTORY": str(creds), "NOTIFY_SOCKET": str(self.notify.path),
            "WATCHDOG_USEC": str(int(float(self.one("WatchdogSec", "0")) * 1_000_000)),
            # the only addition: the test clock, so a cutoff comes without waiting for 09:30
            "MAILCASE_TEST_CLOCK": str(self.clock),
        }
        keep = {str(state), "/proc", "/sys", "/dev"}
        setpriv = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups",
                   "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--"]
        script = "\n".join([
            "set -e",
            "mount --make-rprivate /",
            f"mount --bind {shlex.quote(str(state))} {shlex.quote(str(state))}",
            # ProtectSystem=strict: every mount read-only but the state directory and the API file systems
            "findmnt -rn -o TARGET | sort -r | while read -r m; do",
            f"  case \"$m\" in {'|'.join(k + '|' + k + '/*' for k in sorted(keep))}) ;;",
            "    *) mount -o remount,bind,ro \"$m\" 2>/dev/null || true ;; esac",
            "done",
            # PrivateTmp=yes, ProtectHome=yes
            "mount -t tmpfs -o mode=1777 tmpfs /tmp",
            "mount -t tmpfs -o mode=1777 tmpfs /var/tmp",
            "mount -t tmpfs -o mode=000 tmpfs /home",
            "mount -t tmpfs -o mode=000 tmpfs /root",
            f"cd {shlex.quote(self.one('WorkingDirectory', '/'))}",
            f"umask {self.one('UMask', '0022')}",
            "exec " + " ".join(shlex.quote(a) for a in setpriv) + " " + command,
        ])
        # unshare and bash exec: the command's PID is $MAINPID, as systemd would see it
        return subprocess.Popen(["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
                                env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL)

    def writable(self, paths: list[str]) -> list[str]:
        """Which of ``paths`` a process in the unit's sandbox can create a file in."""
        probe = "; ".join(f"touch {shlex.quote(p)}/.probe 2>/dev/null && echo {shlex.quote(p)}" for p in paths)
        proc = self._sandboxed(f"sh -c {shlex.quote(probe + '; true')}", subprocess.PIPE)
        out, _ = proc.communicate(timeout=30)
        return out.decode().split()

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.proc = self._sandboxed(self.one("ExecStart"), self.log_path.open("ab"))
        self.starts += 1
        ready = self.notify.count("READY=1")
        wait("READY=1 from the service", lambda: self.notify.count("READY=1") > ready or self._died(),
             float(self.one("TimeoutStartSec", "90")))
        assert not self._died(), f"the service exited with {self.proc.returncode} before READY:\n{self.log()}"

    def _died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=float(self.one("TimeoutStopSec", "90")))
        self.exits.append(code)
        return code

    def reload(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, "not running"
        command = self.one("ExecReload").replace("$MAINPID", str(self.proc.pid))
        subprocess.run(shlex.split(command), check=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def systemctl(self, args: list[str]) -> int:
        verbs = [a for a in args if not a.startswith("-")]
        verb = verbs[0]
        if verb == "daemon-reload":
            self.read()
        elif verb == "enable":
            if "--now" in args:
                self.start()
        elif verb == "start":
            self.start()
        elif verb == "stop":
            return self.stop()
        elif verb == "restart":
            self.stop()
            self.start()
        elif verb == "reload":
            self.reload()
        elif verb in ("status", "is-active"):
            running = self.proc is not None and self.proc.poll() is None
            log(f"{self.path.name}: {'active (running)' if running else 'inactive (dead)'}")
            return 0 if running else 3
        else:
            raise AssertionError(f"systemctl {verb}: not played by the sandbox")
        return 0


class Runner:
    """Runs README blocks line by line: ``systemctl`` by the :class:`Unit`, the rest by bash."""

    def __init__(self, subs: dict[str, str]) -> None:
        self.subs = subs
        self.aliases: list[str] = []
        self.unit: Unit | None = None
        self.ran: list[str] = []

    def run(self, lines: list[str]) -> None:
        for line in lines:
            for old, new in self.subs.items():
                line = line.replace(old, new)
            self.ran.append(line)
            log(f"$ {line}")
            words = shlex.split(line, comments=True)
            if words and words[0] == "systemctl":
                assert self.unit is not None, "systemctl before the unit is installed"
                code = self.unit.systemctl(words[1:])
            elif words and words[0] == "alias":
                self.aliases.append(line)
                continue
            else:
                script = "shopt -s expand_aliases\n" + "\n".join(self.aliases) + "\n" + line
                code = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=WORK,
                                      env={"PATH": PATH, "LANG": "C.UTF-8", "HOME": "/root",
                                           # the staff CLI reads the service's test clock too
                                           "MAILCASE_TEST_CLOCK": str(WORK / "clock")},
                                      stdout=sys.stderr).returncode  # stdout carries only the result
            assert code == 0, f"exit {code}: {line}; processes with the state directory open: {holders()}"
            if self.unit is None and Path("/etc/systemd/system/mailcase.service").exists():
                self.unit = Unit(Path("/etc/systemd/system/mailcase.service"), NOTIFY, WORK / "journal.log",
                                 WORK / "clock")


def holders() -> list[str]:
    """Which processes hold a file under /var/lib/mailcase open (for a failure's message)."""
    found = []
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            if os.readlink(fd).startswith("/var/lib/mailcase"):
                pid = fd.parent.parent.name
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                found.append(f"{pid} {cmdline[:200]}")
        except OSError:
            continue
    return sorted(set(found))


def edit_config(path: Path, imap: dict[str, Any], smtp_port: int) -> None:
    """What the README says to edit: the mailbox, the relay, the sender, the directory --
    and, for the test, short job intervals."""
    text = path.read_text()
    for old, new in [
        ('host = "imap.example.org"', f'host = "127.0.0.1"\nport = {imap["port"]}'),
        ('security = "tls"', 'security = "plain"'),
        ('username = "support@example.org"', f'username = "{imap["user"]}"'),
        ('smtp_host = "smtp.example.org"', f'smtp_host = "127.0.0.1"\nsmtp_port = {smtp_port}'),
        ('smtp_security = "starttls"', 'smtp_security = "plain"'),
        ('from_address = "support@example.org"', 'from_address = "support@support.example"'),
        ('# csv = "/etc/mailcase/accounts.csv"', 'csv = "/etc/mailcase/accounts.csv"'),
        ("batch_seconds = 10.0", "batch_seconds = 1.0"),
        ("deliver_seconds = 10.0", "deliver_seconds = 1.0"),
    ]:
        # whole lines only: "username = ..." must not hit "# smtp_username = ..."
        text, n = re.subn("^" + re.escape(old) + "$", new.replace("\\", "\\\\"), text, flags=re.M)
        assert n == 1, f"the example no longer has the line {old!r}"
    path.write_text(text)


def request(n: int) -> bytes:
    at = MONDAY_0800 + timedelta(minutes=5 + n)
    return (f"From: Bob Builder <bob@globex.example>\r\nTo: support@support.example\r\n"
            f"Subject: Label printer offline {n}\r\nDate: {format_datetime(at)}\r\n"
            f"Message-ID: <sandbox-{n}@globex.example>\r\n"
            "Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=globex.example; "
            "dkim=pass header.d=globex.example; dmarc=pass header.from=globex.example\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            "The label printer in the front office stopped printing this morning.\r\n").encode()


def send(args: dict[str, Any], numbers: list[int]) -> None:
    """Mail in: requests appended to the support mailbox, as a customer's mail server would."""
    imap = imaplib.IMAP4("127.0.0.1", args["imap"]["port"])
    imap.login(args["imap"]["user"], args["imap"]["password"])
    for n in numbers:
        imap.append("INBOX", "", imaplib.Time2Internaldate(time.time()), request(n))
    imap.logout()


def count(sql: str) -> int:
    db = Path("/var/lib/mailcase/mailcase.db")
    if not db.exists():
        return 0
    # closed at once: an open connection keeps the WAL in use, and `db restore` would find the
    # database locked
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


NOTIFY: Notify


def main() -> None:
    global NOTIFY
    args = json.loads(sys.argv[1])
    scratch = Path(args["scratch"])
    for target in ("/etc", "/opt", "/usr", "/var/lib", "/run", "/root"):
        overlay(target, scratch)
    WORK.mkdir(mode=0o755)
    (WORK / "accounts.csv").write_text(args["accounts"])
    clock = WORK / "clock"
    clock.write_text(MONDAY_0800.astimezone(timezone.utc).isoformat())
    clock.chmod(0o644)
    NOTIFY = Notify(WORK / "notify")
    steps = blocks(Path(args["readme"]).read_text())
    runner = Runner({"/path/to/mailcase": args["repo"], "'the-imap-password'": shlex.quote(args["imap"]["password"])})
    seen: dict[str, Any] = {"blocks": sorted(steps)}

    try:
        scenario(runner, steps, args, seen)
    finally:
        if runner.unit is not None:  # never leave the service running, whatever failed
            try:
                runner.unit.stop()
            except subprocess.TimeoutExpired:
                assert runner.unit.proc is not None
                runner.unit.proc.kill()
                runner.unit.proc.wait()
    print(json.dumps(seen), flush=True)


def scenario(runner: Runner, steps: dict[str, list[str]], args: dict[str, Any], seen: dict[str, Any]) -> None:
    started = time.monotonic()
    clock = WORK / "clock"
    runner.run(steps["install"])
    seen["install_seconds"] = round(time.monotonic() - started, 1)
    edit_config(Path("/etc/mailcase/mailcase.toml"), args["imap"], args["smtp_port"])
    runner.run(steps["enable"])
    unit = runner.unit
    assert unit is not None and unit.proc is not None
    seen["service_uid"] = os.stat(f"/proc/{unit.proc.pid}").st_uid
    seen["service_writes"] = unit.writable(["/etc/mailcase", "/usr/lib", "/opt/mailcase", "/var/lib",
                                            "/var/lib/mailcase", "/tmp", "/root"])
    seen["watchdog_pings"] = 0

    # mail in
    send(args, [1, 2])
    seen["stored_seconds"] = round(wait("2 mails stored", lambda: count("select count(*) from message") == 2, 60), 1)
    # the cutoff: the clock passes 09:30
    clock.write_text((MONDAY_0800 + timedelta(hours=1, minutes=31)).astimezone(timezone.utc).isoformat())
    wait("the 09:30 cutoff made the cases", lambda: count("select count(*) from support_case") == 2, 60)
    wait("the acknowledgement sent", lambda: count("select count(*) from outbox where status = 'sent'") >= 1, 60)
    seen["cases"] = count("select count(*) from support_case")
    seen["sent"] = count("select count(*) from outbox where status = 'sent'")
    # reload: a new sender name, refused config kept out
    config = Path("/etc/mailcase/mailcase.toml")
    config.write_text(config.read_text().replace('from_name = "Support"', 'from_name = "Globex Support Desk"'))
    pid = unit.proc.pid
    runner.run(["systemctl reload mailcase"])
    wait("event=reloaded in the log", lambda: "event=reloaded" in unit.log(), 30)
    seen["pid_after_reload_same"] = unit.proc.poll() is None and unit.proc.pid == pid
    # the next mail's acknowledgement, at the 15:30 cutoff, comes from the new name
    send(args, [3])
    wait("the third mail stored", lambda: count("select count(*) from message") == 3, 60)
    clock.write_text((MONDAY_0800 + timedelta(hours=7, minutes=31)).astimezone(timezone.utc).isoformat())
    wait("the 15:30 cutoff's acknowledgement sent",
         lambda: count("select count(*) from outbox where status = 'sent'") >= 3, 60)
    seen["cases"] = count("select count(*) from support_case")
    # the staff CLI, backup and restore, upgrade: each as written
    runner.run(steps["staff"])
    runner.run(steps["backup"])
    seen["before_restore_kept"] = Path("/var/lib/mailcase/mailcase.db.before-restore").exists()
    runner.run(steps["upgrade"])
    seen["cases_after_upgrade"] = count("select count(*) from support_case")
    seen["exit"] = unit.stop()
    seen["watchdog_pings"] = NOTIFY.count("WATCHDOG=1")
    seen["stopping"] = NOTIFY.count("STOPPING=1")
    seen["exits"] = unit.exits
    seen["starts"] = unit.starts
    journal = unit.log()
    seen["read_only_errors"] = journal.count("Read-only file system")
    seen["tracebacks"] = journal.count("Traceback")
    seen["events"] = sorted(set(re.findall(r"event=([a-z-]+)", journal)))
    seen["data_files"] = sorted(p.name for p in Path("/var/lib/mailcase").iterdir())
    seen["ran"] = runner.ran


if __name__ == "__main__":
    main()
