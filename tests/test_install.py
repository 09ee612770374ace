"""The documented install runs as written (issue 16).

``tests/install_sandbox.py`` runs the README's install, enable, staff CLI,
backup/restore and upgrade blocks as root inside a private mount namespace
(overlays on /etc, /opt, /usr, /var/lib, /run and /root, thrown away
afterwards), and plays ``systemctl`` by reproducing the unit's sandbox around
the service without booting systemd.  Here: what it saw, and what the SMTP
sink received.
"""

from __future__ import annotations

import email
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from batching import DIRECTORY
from helpers import ROOT, ImapAccount
from servers.smtp import SmtpSink

IGNORE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".mypy_cache",
                                ".ruff_cache", ".pytest_cache", "mailcase-data")


def _can_sandbox() -> str | None:
    if os.geteuid() != 0:
        return "needs root (a private mount namespace, a service user)"
    for tool in ("unshare", "setpriv", "systemd-sysusers", "runuser", "findmnt"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


def test_the_readme_install_runs_as_written_in_the_units_sandbox(imap: ImapAccount, tmp_path: Path) -> None:
    why = _can_sandbox()
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    src = tmp_path / "mailcase-src"
    shutil.copytree(ROOT, src, ignore=IGNORE)  # pip builds in the tree: never in the checkout
    sink = SmtpSink().start()
    args = {
        "scratch": str(tmp_path / "overlays"), "repo": str(src), "readme": str(ROOT / "README.md"),
        "imap": {"port": imap.server.port, "user": imap.user, "password": imap.password},
        "smtp_port": sink.port, "accounts": DIRECTORY,
    }
    try:
        done = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable,
                               str(ROOT / "tests" / "install_sandbox.py"), json.dumps(args)],
                              capture_output=True, text=True, timeout=900)
    finally:
        sink.stop()
    assert done.returncode == 0, done.stderr[-6000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps({k: v for k, v in seen.items() if k != "ran"}, indent=1))
    assert seen["blocks"] == ["backup", "enable", "install", "staff", "upgrade"]
    # the service ran as the unit's user, not root, and every start said READY (enable, backup, upgrade)
    assert seen["service_uid"] != 0 and seen["starts"] == 3
    # ProtectSystem=strict, PrivateTmp=yes, ProtectHome=yes: only the state directory (and a private /tmp)
    assert seen["service_writes"] == ["/var/lib/mailcase", "/tmp"]
    # mail in, a cutoff, mail out
    assert seen["cases"] == 3 and seen["sent"] >= 2 and seen["cases_after_upgrade"] == 3
    acks = {str(a["Subject"]).rpartition(" ")[2]: str(a["From"]) for a in
            (email.message_from_bytes(r.data) for r in sink.received if r.rcpt_tos == ["bob@globex.example"])}
    assert sorted(acks) == ["1", "2", "3"], acks  # each request's acknowledgement, once
    # the reload changed the sender name: the acknowledgements before it and after it say so
    assert acks["1"].startswith("Support <") and acks["3"].startswith("Globex Support Desk <"), acks
    # reload without a restart; stop exits 0 every time, after STOPPING=1
    assert "reloaded" in seen["events"] and seen["pid_after_reload_same"]
    assert seen["exits"] == [0, 0, 0] and seen["stopping"] == 3
    assert seen["watchdog_pings"] >= 1
    # the backup was restored with the replaced database kept; the data lives in the state directory
    assert seen["before_restore_kept"] and "mailcase.db" in seen["data_files"]
    assert seen["read_only_errors"] == 0 and seen["tracebacks"] == 0, done.stderr[-4000:]
