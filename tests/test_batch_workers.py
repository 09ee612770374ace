"""Exactly once with several batch workers, and after a SIGKILL mid-transaction."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from batching import Desk, ny
from helpers import write_config

from mailcase.domain.tables import BATCH, CASE, CASE_MESSAGE, MESSAGE, OUTBOX

WORKER = """
import sys
from datetime import datetime
from mailcase.cutoff.batch import run_due
from mailcase.core.clock import FixedClock
from mailcase.config.loader import load_config
from mailcase.domain.db import open_engine
from pathlib import Path
cfg = load_config(Path(sys.argv[1]))
engine = open_engine(cfg.database_url)
clock = FixedClock(datetime.fromisoformat(sys.argv[2]))
done = 0
while True:
    run = run_due(engine, cfg, clock, limit=1)
    done += len(run.results)
    if not run.results and not run.waiting:
        break
print(done)
"""

# The same, slowed down by an injected pause after each chunk of cases, saying
# on stdout when the first chunk is in: the kill is then certain to land
# inside the cutoff's transaction, however fast the machine.
KILLABLE_WORKER = """
import time
import mailcase.cutoff.make as make
real = make.insert_cases
def slow(*args, **kwargs):
    made = real(*args, **kwargs)
    print("mid-batch", flush=True)
    time.sleep(0.05)
    return made
make.CHUNK = 50
make.insert_cases = slow
""" + WORKER


def _desk_with_20_cutoffs(db_url: str, tmp: Path) -> tuple[Desk, Path, list[str]]:
    desk = Desk(db_url, tmp)
    desk.directory()
    ids = []
    day = ny(2026, 11, 2, 8, 0)  # Monday
    senders = ["alice@acme.example", "bob@globex.example", "x@stranger.example", "erin@acme.example"]
    for d in range(14):  # two weeks: ten business days, twenty cutoffs
        for slot, hour in enumerate((8, 12)):
            for k in range(4):
                at = day + timedelta(days=d, hours=hour - 8, minutes=k)
                ids.append(desk.mail(at, sender=senders[k], subject=f"Day {d} slot {slot} request {k}"))
    desk.process(ny(2026, 11, 2, 7, 0))  # parse and classify only (nothing due yet)
    cfg = write_config(tmp / "c.toml", db_url, [], rules=desk.config.rules.model_dump(exclude_none=True),
                       outgoing={"from_address": "support@support.example", "file_dir": str(tmp / "outbox")})
    return desk, cfg, ids


def _check_exactly_once(desk: Desk, ids: list[str]) -> None:
    cutoffs = desk.rows(sa.select(BATCH.c.cutoff_at).order_by(BATCH.c.cutoff_at))
    assert len(cutoffs) == 20 and len({c[0] for c in cutoffs}) == 20
    per_message = desk.rows(sa.select(CASE_MESSAGE.c.message_pk, sa.func.count()).group_by(CASE_MESSAGE.c.message_pk))
    assert all(n == 1 for _, n in per_message)
    states = dict(desk.rows(sa.select(MESSAGE.c.state, sa.func.count()).group_by(MESSAGE.c.state)))
    assert states == {"batched": len(ids)}
    keys = desk.rows(sa.select(OUTBOX.c.key, sa.func.count()).group_by(OUTBOX.c.key))
    assert all(n == 1 for _, n in keys)
    notices = desk.scalar(sa.select(sa.func.count()).where(OUTBOX.c.kind.like("notice/%")))
    # x@stranger and erin@acme: one notice each per kind per 7 days
    assert notices == 4
    cases = desk.scalar(sa.select(sa.func.count()).select_from(CASE))
    assert cases == 56  # alice and bob: one case per mail (14 days x 2 slots), weekend mail waits for Monday


def _run_workers(cfg: Path, n: int) -> list[str]:
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(cfg), ny(2026, 11, 16, 16, 0).isoformat()],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(n)
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        outs.append(out.strip())
    return outs


def test_two_workers_on_postgresql_run_each_cutoff_once(pg_url: str, tmp_path: Path) -> None:
    desk, cfg, ids = _desk_with_20_cutoffs(pg_url, tmp_path)
    outs = _run_workers(cfg, 2)
    assert sum(int(o) for o in outs) == 20
    _check_exactly_once(desk, ids)


def test_two_processes_on_sqlite_run_each_cutoff_once(sqlite_url: str, tmp_path: Path) -> None:
    desk, cfg, ids = _desk_with_20_cutoffs(sqlite_url, tmp_path)
    outs = _run_workers(cfg, 2)
    assert sum(int(o) for o in outs) == 20
    _check_exactly_once(desk, ids)


def test_sigkill_mid_batch_leaves_nothing_half_done(db_url: str, tmp_path: Path) -> None:
    desk = Desk(db_url, tmp_path)
    desk.directory()
    senders = [f"s{i}@stranger{i % 40}.example" for i in range(300)] + ["alice@acme.example", "bob@globex.example"]
    n = 1500
    for i in range(n):
        desk.mail(ny(2026, 11, 23, 7, 0) + timedelta(seconds=i), sender=senders[i % len(senders)],
                  subject=f"Issue {i % 97}")
    desk.process(ny(2026, 11, 23, 7, 0))
    cfg = write_config(tmp_path / "c.toml", desk.config.database_url, [],
                       rules=desk.config.rules.model_dump(exclude_none=True),
                       outgoing={"from_address": "support@support.example", "file_dir": str(tmp_path / "outbox")})
    rng = random.Random(int(os.environ.get("MAILCASE_CRASH_SEED", "7")))
    kills = 0
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", KILLABLE_WORKER, str(cfg),
                                 ny(2026, 11, 23, 9, 31).isoformat()],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        proc.stdout.readline()  # "mid-batch": the first chunk of cases is made, not committed
        time.sleep(rng.uniform(0.0, 0.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        batches = desk.scalar(sa.select(sa.func.count()).select_from(BATCH))
        cases = desk.scalar(sa.select(sa.func.count()).select_from(CASE))
        outbox = desk.scalar(sa.select(sa.func.count()).select_from(OUTBOX))
        claimed = desk.scalar(sa.select(sa.func.count()).where(MESSAGE.c.batch_id.is_not(None)))
        if batches == 0:  # killed: all or nothing
            assert (cases, outbox, claimed) == (0, 0, 0)
        else:
            assert claimed == n and cases > 0 and outbox > 0
            break
    assert kills >= 1, "the batch finished before any kill: make it bigger"
    out = subprocess.run([sys.executable, "-c", WORKER, str(cfg), ny(2026, 11, 23, 9, 31).isoformat()],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert desk.scalar(sa.select(sa.func.count()).select_from(BATCH)) == 1
    assert desk.scalar(sa.select(sa.func.count()).where(MESSAGE.c.state == "batched")) == n
