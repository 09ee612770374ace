"""A throwaway Dovecot 2.3 (from tests/servers/dovecot-test.conf, the known-good recipe).

As root, Dovecot refuses mail access as UID 0: mail files belong to the
``dovecot`` user.  The temp dir path is kept short (socket paths fail past
~100 bytes).  ``tls=True`` adds a certificate from a throwaway CA, STARTTLS on
the plain port and implicit TLS on a second port.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

RECIPE = Path(__file__).with_name("dovecot-test.conf")
USERS = 2000


def dovecot_binary() -> str | None:
    return shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@dataclass
class Dovecot:
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: an introspection URL: XOAUTH2 and OAUTHBEARER logins are checked there
    oauth_introspection: str | None = None
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mcdv", dir="/tmp")))
    port: int = field(default_factory=free_port)
    tls_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    _next_user: int = 0

    def __post_init__(self) -> None:
        if os.geteuid() == 0:
            self.user = self.group = "dovecot"
        else:
            self.user = pwd.getpwuid(os.getuid()).pw_name
            import grp

            self.group = grp.getgrgid(os.getgid()).gr_name
        if self.tls_cert:
            self.tls_port = free_port()
        self._write_config()

    def _write_config(self) -> None:
        text = RECIPE.read_text()
        for k, v in {"@ROOT@": str(self.root), "@PORT@": str(self.port), "@USER@": self.user, "@GROUP@": self.group}.items():
            text = text.replace(k, v)
        if self.tls_cert and self.tls_key:
            shutil.copy(self.tls_cert, self.root / "cert.pem")
            shutil.copy(self.tls_key, self.root / "key.pem")
            text = text.replace("ssl = no", f"ssl = yes\nssl_cert = <{self.root}/cert.pem\nssl_key = <{self.root}/key.pem")
            text = text.replace(
                "  inet_listener imaps {\n    port = 0\n  }",
                f"  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {self.tls_port}\n    ssl = yes\n  }}",
            )
        if self.oauth_introspection:
            text = text.replace("auth_mechanisms = plain login", "auth_mechanisms = plain login xoauth2 oauthbearer")
            text += (
                "\npassdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                f"  args = {self.root}/dovecot-oauth2.conf.ext\n}}\n"
            )
            (self.root / "dovecot-oauth2.conf.ext").write_text(
                f"introspection_mode = post\nintrospection_url = {self.oauth_introspection}\n"
                "username_attribute = username\nactive_attribute = active\nactive_value = true\n"
            )
        (self.root / "dovecot.conf").write_text(text)
        # users exist before start: passwd-file changes within one second of
        # each other can go unnoticed by Dovecot's reload check
        (self.root / "users").write_text(
            "".join(f"user{i}:{{PLAIN}}pw-user{i}\n" for i in range(1, USERS + 1))
        )
        for sub in ("run", "state", "mail", "home"):
            (self.root / sub).mkdir(exist_ok=True)
        os.chmod(self.root, 0o755)
        if os.geteuid() == 0:
            pw = pwd.getpwnam(self.user)
            for sub in ("mail", "home", "state"):
                os.chown(self.root / sub, pw.pw_uid, pw.pw_gid)

    def start(self) -> Dovecot:
        binary = dovecot_binary()
        assert binary, "dovecot is not installed"
        self.proc = subprocess.Popen(
            [binary, "-F", "-c", str(self.root / "dovecot.conf")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        try:
            wait_port(self.port)
            if self.tls_port:
                wait_port(self.tls_port)
        except RuntimeError:
            self.stop()
            log = (self.root / "dovecot.log").read_text() if (self.root / "dovecot.log").exists() else ""
            raise RuntimeError(f"dovecot did not start: {log[-2000:]}") from None
        return self

    def stop(self) -> None:
        """Stop the server and every session it had (as a real restart does: the
        master leaves its imap processes behind when it is stopped this way)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self._kill_leftovers()

    def _kill_leftovers(self) -> None:
        prefix = f"dovecot-test-{self.port}/".encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    if fh.read().startswith(prefix):
                        os.kill(int(entry), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                continue

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def take_user(self) -> tuple[str, str]:
        """A user nobody used yet: (name, password)."""
        self._next_user += 1
        if self._next_user > USERS:
            raise RuntimeError("out of test users: raise USERS")
        return f"user{self._next_user}", f"pw-user{self._next_user}"

    def maildir(self, user: str) -> Path:
        return self.root / "mail" / user
