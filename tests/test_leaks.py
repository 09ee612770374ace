"""No process outlives what started it (issue 16): a SIGKILLed daemon's parse workers,
forkserver and resource tracker exit with it, and the session-end check (leaks.py)
fails a run that leaves a process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from helpers import make_mail, write_config
from leaks import Proc, descendants, processes, read_proc
from test_daemon import _wait

TESTS = Path(__file__).parent

LEAVES = """
import subprocess


def test_leaves_a_child() -> None:
    subprocess.Popen(["sleep", "1000"])


def test_leaves_an_orphan() -> None:
    # the shell exits at once: the sleep is reparented away from pytest
    subprocess.run(["sh", "-c", "sleep 1001 &"], check=True)


def test_waits_for_its_child() -> None:  # not a leak
    subprocess.run(["sleep", "0"], check=True)
"""


def _pytest(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(TESTS), "MAILCASE_TEST_LEAK_GRACE": "0.5"}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "leaks", "-p", "no:cacheprovider", "-q", *args,
                           str(path)], cwd=path.parent, env=env, capture_output=True, text=True, timeout=120)


def _alive(pid: int) -> bool:
    proc = read_proc(pid)
    return proc is not None and proc.state not in ("Z", "X")


def test_a_run_that_leaves_a_process_behind_fails_naming_it_and_kills_it(tmp_path: Path) -> None:
    test = tmp_path / "test_leaves.py"
    test.write_text(LEAVES)
    done = _pytest(test)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "3 passed" in out and "2 process(es) left behind" in out, out
    named = [line for line in out.splitlines() if line.startswith("  pid ")]
    assert len(named) == 2 and "sleep 1000" in named[0] + named[1] and "sleep 1001" in named[0] + named[1], out
    pids = [int(line.split()[1]) for line in named]
    _wait(lambda: not any(_alive(pid) for pid in pids), 5, 0.05)


def test_a_sigkilled_daemon_leaves_no_parse_worker_behind(tmp_path: Path) -> None:
    maildir = tmp_path / "md"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    for i in range(20):
        (maildir / "new" / f"{i}.eml").write_bytes(make_mail(i, subject=f"Leak {i}"))
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/m.db",
                       [{"name": "box", "kind": "maildir", "path": str(maildir)}], ingest={"parse_workers": 2})
    proc = subprocess.Popen([sys.executable, "-m", "mailcase", "--config", str(cfg), "run"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started: list[Proc] = []

    def pool_up() -> bool:
        procs = processes()
        started[:] = [procs[pid] for pid in descendants(proc.pid, procs)]
        # the resource tracker, the forkserver and its two workers
        return len(started) >= 4 and any("forkserver" in p.cmdline for p in started)

    try:
        _wait(pool_up, 60, 0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # the workers see the daemon die at once; the forkserver and the tracker follow them
    took = _wait(lambda: not any(_alive(p.pid) for p in started), 10, 0.05)
    assert took < 5, [p.cmdline for p in started]
