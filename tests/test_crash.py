"""SIGKILL during a 500-mail fetch, 10 times: every mail stored once, every post-action done."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa
from helpers import ImapAccount, make_mail, write_config

from mailcase.domain.db import open_engine
from mailcase.domain.tables import MESSAGE, RAW_COPY


def test_sigkill_during_fetch_loses_and_duplicates_nothing(
    imap: ImapAccount, db_url: str, tmp_path: Path
) -> None:
    n = 500
    imap.append_many([make_mail(i, body=f"request {i}\n" + "lorem ipsum " * 200) for i in range(n)])
    cfg = write_config(tmp_path / "c.toml", db_url, [imap.mailbox_config(
        post_action="move", move_to="Processed", fetch_chunk_count=20,
    )])
    rng = random.Random(int(os.environ.get("MAILCASE_CRASH_SEED", "20261126")))
    engine = open_engine(db_url)
    # ten kill points spread over the fetch: kill when this many mails are stored
    # (a point is "random" in where the store/commit/post-action cycle happens to be)
    targets = sorted(rng.sample(range(0, n), 10))
    kills = 0

    def stored() -> int:
        with engine.connect() as c:
            return int(c.execute(sa.select(sa.func.count()).select_from(RAW_COPY)).scalar_one())

    for target in targets:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailcase", "--config", str(cfg), "fetch"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while proc.poll() is None and stored() < target and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.05))  # land anywhere in the chunk cycle
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    with engine.connect() as c:
        stored_before_final = c.execute(sa.select(sa.func.count()).select_from(MESSAGE)).scalar_one()
    final = subprocess.run(
        [sys.executable, "-m", "mailcase", "--config", str(cfg), "fetch"],
        capture_output=True, text=True, timeout=120,
    )
    assert final.returncode == 0, final.stderr
    with engine.connect() as c:
        messages = c.execute(sa.select(sa.func.count()).select_from(MESSAGE)).scalar_one()
        copies = c.execute(sa.select(sa.func.count()).select_from(RAW_COPY)).scalar_one()
        owed = c.execute(sa.select(sa.func.count()).where(RAW_COPY.c.post_action_done_at.is_(None))).scalar_one()
        distinct_uids = c.execute(sa.select(sa.func.count(sa.distinct(RAW_COPY.c.uid)))).scalar_one()
    assert kills >= 9, f"only {kills} of 10 kills landed mid-fetch"
    assert 0 < stored_before_final  # the kills interrupted a fetch that was storing
    assert (messages, copies, distinct_uids) == (n, n, n)
    assert owed == 0
    assert imap.uids("INBOX") == []
    assert len(imap.uids("Processed")) == n
