"""A reload (SIGHUP) reaches every worker: a mailbox worker whose own settings did
not change still takes the new cutoff times, without a restart of the service."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from batching import DIRECTORY, ny
from helpers import LogTail, make_mail, reap, terminate, write_config
from test_daemon import _wait

from mailcase.domain.db import open_engine
from mailcase.domain.tables import BATCH, CASE, MESSAGE


def _drop(box: Path, name: str, raw: bytes) -> None:
    for sub in ("tmp", "new", "cur"):
        (box / sub).mkdir(parents=True, exist_ok=True)
    (box / "tmp" / name).write_bytes(raw)
    (box / "tmp" / name).rename(box / "new" / name)


def test_sighup_gives_a_running_mailbox_worker_the_new_cutoff_times(sqlite_url: str, tmp_path: Path) -> None:
    """The Maildir worker polls once an hour, and syncs early only when a cutoff passes.
    A cutoff added by a reload must make it sync at that cutoff: otherwise the mail
    waits for the old schedule and the new cutoff closes late, by its grace."""
    box = tmp_path / "box"
    _drop(box, "first", make_mail(1, subject="Printer queue is stuck", date=ny(2026, 11, 23, 9, 50)))
    csv = tmp_path / "accounts.csv"
    csv.write_text(DIRECTORY)
    sections = dict(
        directory={"csv": str(csv), "effective": "2025-01-01T00:00:00+00:00"},
        daemon={"poll_seconds": 3600.0, "stage_seconds": 1.0, "batch_seconds": 1.0, "housekeeping_seconds": 1.0},
        batch={"start_at": "2026-11-23T14:00:00Z"},
    )
    mailbox = {"name": "box", "kind": "maildir", "path": str(box), "start_at": "all"}
    cfg = write_config(tmp_path / "c.toml", sqlite_url, [mailbox],
                       calendar={"cutoffs": ["09:30", "15:30"]}, **sections)
    clock = tmp_path / "clock"
    clock.write_text(ny(2026, 11, 23, 10, 0).isoformat())  # a Monday, after the 09:30 cutoff
    env = {**os.environ, "MAILCASE_TEST_CLOCK": str(clock)}
    proc = subprocess.Popen([sys.executable, "-m", "mailcase", "-v", "--config", str(cfg), "run"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    tail = LogTail(proc.stderr)
    engine = open_engine(sqlite_url)

    def count(q: Any) -> int:
        with engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    try:
        _wait(lambda: count(sa.select(sa.func.count()).select_from(MESSAGE)) == 1, 30)
        # a cutoff at 10:05 is added; the mailbox worker itself is unchanged, so it keeps running
        write_config(tmp_path / "c.toml", sqlite_url, [mailbox],
                     calendar={"cutoffs": ["09:30", "10:05", "15:30"]}, **sections)
        proc.send_signal(signal.SIGHUP)
        tail.wait_for("event=reloaded", 20)
        assert "restarted_mailboxes=-" in next(line for line in tail.lines if "event=reloaded" in line)
        _drop(box, "second", make_mail(2, sender="bob@globex.example", subject="Label printer offline",
                                       date=ny(2026, 11, 23, 10, 2)))
        clock.write_text(ny(2026, 11, 23, 10, 6).isoformat())
        # the worker syncs because the new 10:05 cutoff passed: the mail is stored long
        # before its hourly poll, and the cutoff closes with both requests
        _wait(lambda: count(sa.select(sa.func.count()).select_from(MESSAGE)) == 2, 20)
        _wait(lambda: count(sa.select(sa.func.count()).select_from(BATCH).where(
            BATCH.c.cutoff_at == ny(2026, 11, 23, 10, 5))) == 1, 30)
        assert count(sa.select(sa.func.count()).select_from(CASE)) == 2
        # a reload naming a path the service cannot use is refused before anything changes
        write_config(tmp_path / "c.toml", sqlite_url, [mailbox], calendar={"cutoffs": ["09:30", "15:30"]},
                     kb={"path": str(tmp_path / "no-kb")}, **sections)
        proc.send_signal(signal.SIGHUP)
        tail.wait_for("event=reload-refused", 20)
        refused = next(line for line in tail.lines if "event=reload-refused" in line)
        assert f"kb.path: {tmp_path}/no-kb: does not exist" in refused
        # the key file rewritten in place (a rotation): the parse pool takes the new key
        (tmp_path / "hmac-key").write_text("rotated-key-0123456789abcdef01234567")
        write_config(tmp_path / "c.toml", sqlite_url, [mailbox], calendar={"cutoffs": ["09:30", "15:30"]},
                     **sections)
        proc.send_signal(signal.SIGHUP)
        tail.wait_for("event=reloaded", 20, more_than=1)
        assert any("event=worker-reconfigured worker=parse" in line for line in tail.lines)
        assert not any("event=job-failed" in line for line in tail.lines)
        assert terminate(proc) == 0
    finally:
        reap(proc)
        tail.text()
