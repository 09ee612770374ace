"""Three daemons on one PostgreSQL: mailboxes shared out, one dies, nothing handled twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from batching import AUTH, DIRECTORY, ny
from helpers import ImapAccount, make_mail, write_config
from servers.dovecot import Dovecot
from servers.smtp import SmtpSink
from test_daemon import _wait

from mailcase.domain.db import open_engine
from mailcase.domain.tables import BATCH, CASE_MESSAGE, MAILBOX_STATE, MESSAGE, OUTBOX


def _mail(i: int, sender: str) -> bytes:
    name, value = AUTH
    return make_mail(i, sender=sender, subject=f"Cluster request {i}", date=ny(2026, 11, 23, 8, 0) ,
                     msgid=f"<cluster{i}@{sender.rpartition('@')[2]}>",
                     headers={name: value.format(d=sender.rpartition("@")[2])})


def _diagnosis(engine: sa.Engine, sink: SmtpSink, tmp_path: Path) -> str:
    """What the desk holds when the mail did not all go out: outbox rows, batches, and each daemon's last words."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(OUTBOX.c.key, OUTBOX.c.status, OUTBOX.c.last_error)).all()
        batches = conn.execute(sa.select(BATCH)).all()
    logs = "\n".join(f"--- d{i}.log\n" + "\n".join((tmp_path / f"d{i}.log").read_text().splitlines()[-40:])
                     for i in range(3))
    return f"sink got {len(sink.received)}; outbox {rows}; batches {batches}\n{logs}"


def test_three_daemons_share_mailboxes_and_take_over(dovecot: Dovecot, pg_url: str, tmp_path: Path) -> None:
    boxes = []
    for name in ("one", "two", "three"):
        user, password = dovecot.take_user()
        boxes.append((name, ImapAccount(dovecot, user, password, tmp_path)))
    csv = tmp_path / "accounts.csv"
    csv.write_text(DIRECTORY)
    sink = SmtpSink().start()
    clock = tmp_path / "clock"
    clock.write_text(ny(2026, 11, 23, 8, 30).isoformat())
    cfg = write_config(
        tmp_path / "c.toml", pg_url, [acc.mailbox_config(name=name, start_at="all") for name, acc in boxes],
        rules={"sender_authentication": "authserv-id", "authserv_id": "mx.support.example"},
        directory={"csv": str(csv), "effective": "2025-01-01T00:00:00+00:00"},
        daemon={"registration_seconds": 6.0, "lease_retry_seconds": 1.0, "batch_seconds": 1.0,
                "deliver_seconds": 1.0, "reconnect_max_seconds": 2.0},
        outgoing={"from_address": "support@support.example", "transport": "smtp", "smtp_host": "127.0.0.1",
                  "smtp_port": sink.port, "smtp_security": "plain"},
    )
    env = {**os.environ, "MAILCASE_TEST_CLOCK": str(clock)}
    procs = [subprocess.Popen([sys.executable, "-m", "mailcase", "-v", "--config", str(cfg), "run"], env=env,
                              stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"d{i}.log", "w"), text=True) for i in range(3)]
    engine = open_engine(pg_url)

    def owners() -> dict[str, Any]:
        with engine.connect() as conn:
            return {r.name: (r.worker, r.worker_state) for r in conn.execute(sa.select(MAILBOX_STATE))}

    def stored() -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(MESSAGE)).scalar_one())

    try:
        senders = ["alice@acme.example", "bob@globex.example", "who@stranger.example"]
        n = 0
        for k, (_, acc) in enumerate(boxes):
            for _ in range(5):
                n += 1
                acc.append(_mail(n, senders[k]), when=ny(2026, 11, 23, 8, 0))
        _wait(lambda: stored() == 15, 60, 0.2)
        # shared out: three mailboxes, three different owners, all connected
        _wait(lambda: len({w for w, s in owners().values() if s == "connected"}) == 3
              and all(s == "connected" for _, s in owners().values()), 90, 0.5)
        by_box = owners()
        victim_box = "two"
        victim_worker = by_box[victim_box][0]
        victim = next(p for p in procs if victim_worker.endswith(f":{p.pid}"))
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed_at = time.monotonic()
        boxes[1][1].append(_mail(99, "bob@globex.example"), when=ny(2026, 11, 23, 8, 40))
        took = _wait(lambda: stored() == 16, 90, 0.2)
        assert took < 60, f"mailbox {victim_box} taken over after {took:.0f} s"
        # the row names its new owner from the moment the lease is taken, before any mail is stored
        new_owner = owners()[victim_box][0]
        assert new_owner != victim_worker
        assert any(new_owner.endswith(f":{p.pid}") for p in procs if p is not victim)
        # cutoffs and outbox rows: each handled once by the survivors
        clock.write_text(ny(2026, 11, 23, 9, 31).isoformat())
        # one acknowledgement per case (alice 5, bob 6) and the stranger's one notice
        try:
            _wait(lambda: len(sink.received) >= 12, 60, 0.2)
        except AssertionError:
            raise AssertionError(_diagnosis(engine, sink, tmp_path)) from None
        time.sleep(3)
        assert len(sink.received) == 12, _diagnosis(engine, sink, tmp_path)
        with engine.connect() as conn:
            cutoffs = conn.execute(sa.select(BATCH.c.cutoff_at)).scalars().all()
            links = conn.execute(sa.select(CASE_MESSAGE.c.message_pk)).scalars().all()
            keys = conn.execute(sa.select(OUTBOX.c.key)).scalars().all()
        assert len(cutoffs) == len(set(cutoffs)) == 1
        assert len(links) == len(set(links)) == 11  # alice's 5 and bob's 6 mails, each in one case
        assert len(keys) == len(set(keys)) == 12
        ids = Counter(r.message["Message-ID"] for r in sink.received)
        assert all(v == 1 for v in ids.values())
        assert time.monotonic() - killed_at < 200
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        sink.stop()
        for _, acc in boxes:
            acc.close()
