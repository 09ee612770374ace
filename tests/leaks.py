"""Processes a test session leaves behind (issue 16): the check run at the session's end.

A daemon a test SIGKILLs must not leave its parse workers, forkserver or
resource tracker running, and no test may leave a server or a ``sleep``
behind.  Two ways to find what a session started:

* the descendants of the pytest process (a walk of ``/proc/*/stat``);
* processes that were reparented away from it (their parent died): every
  process started during the session inherits ``MAILCASE_TEST_SESSION=<uuid>``
  from ``os.environ``, and ``/proc/<pid>/environ`` shows it.

The session fixtures (Dovecot, PostgreSQL databases, the SMTP sink) are torn
down before the check: pytest's runner finalizes them in its own
``pytest_sessionfinish``, and the check's hook runs after it (``trylast``).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from dataclasses import dataclass

import pytest

MARKER = "MAILCASE_TEST_SESSION"
#: how long a process the session started may take to exit (a daemon's workers
#: see it die, then the forkserver, then the resource tracker)
GRACE_SECONDS = float(os.environ.get("MAILCASE_TEST_LEAK_GRACE", "5"))
#: helpers multiprocessing starts for the pytest process itself (tests that run a
#: pool in-process): they exit with it, so they are not left behind
OWN_HELPERS = ("from multiprocessing.forkserver import main", "from multiprocessing.resource_tracker import main")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    state: str
    cmdline: str


def read_proc(pid: int) -> Proc | None:
    """None when it is gone (or was never ours to read)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces or ")"
    state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
    return Proc(pid, int(ppid), state, cmdline or stat[stat.index("(") + 1:stat.rindex(")")])


def processes() -> dict[int, Proc]:
    out: dict[int, Proc] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (proc := read_proc(int(entry))) is not None:
            out[proc.pid] = proc
    return out


def descendants(root: int, procs: dict[int, Proc]) -> set[int]:
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def carries(pid: int, marker: str) -> bool:
    """Whether the process started with ``MARKER=marker`` in its environment."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f"{MARKER}={marker}".encode() in f.read().split(b"\0")
    except OSError:
        return False


def survivors(root: int, marker: str) -> list[Proc]:
    """Live processes started by the session ``root`` runs: zombies have exited (only
    their exit status is left to collect), and the multiprocessing helpers of ``root``
    itself exit with it."""
    procs = processes()
    ours = descendants(root, procs) | {pid for pid in procs if pid != root and carries(pid, marker)}
    return [
        procs[pid] for pid in sorted(ours)
        if procs[pid].state not in ("Z", "X")
        and not (procs[pid].ppid == root and procs[pid].cmdline.split(" -c ", 1)[-1].startswith(OWN_HELPERS))
    ]


def left_behind(root: int, marker: str, grace: float) -> list[Proc]:
    """The survivors still there after ``grace`` seconds (they may be on their way out)."""
    deadline = time.monotonic() + grace
    while (left := survivors(root, marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def kill(procs: list[Proc]) -> None:
    for p in procs:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except OSError:
            continue
        if p.ppid == os.getpid():
            try:
                os.waitpid(p.pid, 0)
            except ChildProcessError:
                pass


# -- the plugin (tests/conftest.py loads it; ``-p leaks`` loads it elsewhere) -----


def pytest_sessionstart(session: pytest.Session) -> None:
    # each session its own marker: a pytest run by a test marks what it starts itself
    os.environ[MARKER] = uuid.uuid4().hex


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """After the session fixtures' teardown: fail the run if a process it started is
    still alive, naming each, and kill them so that they do not pile up."""
    marker = os.environ.get(MARKER)
    if not marker:
        return
    left = left_behind(os.getpid(), marker, GRACE_SECONDS)
    if not left:
        return
    lines = [f"{len(left)} process(es) left behind by the tests ({GRACE_SECONDS:g} s after the end), killed now:"]
    lines += [f"  pid {p.pid} (parent {p.ppid}): {p.cmdline[:200]}" for p in left]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.ensure_newline()
        reporter.write_sep("=", "processes left behind", red=True)
        for line in lines:
            reporter.write_line(line)
    else:
        print("\n".join(lines))
    kill(left)
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
