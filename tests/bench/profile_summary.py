"""Summarise a `py-spy record --format raw --threads --subprocesses` file (folded stacks).

    .venv/bin/python tests/bench/profile_summary.py FILE [--under FUNC] [--top 25]

Prints samples per process/thread, then for each busy thread the top frames by
self time (leaf) and by inclusive time, and with ``--under FUNC`` the split of
the time spent inside FUNC by its direct callees.  Frames are "name (file:line)";
line numbers are dropped so one function is one row.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict

_LINE = re.compile(r":\d+\)$")
#: leaf frames that mean "waiting", not working (py-spy --idle keeps them)
IDLE_NAMES = {"wait", "_wait_for_tstate_lock", "select", "poll", "sleep", "acquire", "wait_for", "_poll",
              "_recv", "_recv_bytes", "recv_bytes", "accept"}


def _idle(frame: str) -> bool:
    """Is this leaf frame a thread waiting on a lock, a condition or a pipe (not on IMAP or disk)?"""
    name = frame.split(" (", 1)[0].rsplit(".", 1)[-1]
    return name in IDLE_NAMES


def _fn(frame: str) -> str:
    return _LINE.sub(")", frame)


def _role(proc: str, frames: list[str]) -> str:
    """Which process of the phase a stack is from (py-spy does not always read the command line)."""
    text = ";".join(frames)
    if "child_main (ingest.py" in text:
        return "phase main process"
    if "_process_worker (concurrent/futures/process.py" in text:
        return "pool workers"
    if "forkserver" in proc or "multiprocessing/forkserver.py" in text:
        return "forkserver"
    if "resource_tracker" in proc or "resource_tracker.py" in text:
        return "resource_tracker"
    return "other " + proc.split(":", 1)[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--under", action="append", default=[], help="split time inside this function by callee")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--min-share", type=float, default=0.01)
    args = ap.parse_args()

    per_thread: Counter[tuple[str, str]] = Counter()
    stacks: dict[tuple[str, str], list[tuple[list[str], int]]] = defaultdict(list)
    rows = []
    text_of: dict[str, list[str]] = defaultdict(list)  # pid -> frames seen (to tell its role)
    with open(args.file) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            body, _, count_text = line.rpartition(" ")
            # a command line may hold ";" (python -c "...; ..."): glue it back to its process frame
            frames = re.sub(r'(process \d+:"[^"]*)"', lambda m: m.group(0).replace(";", ","), body).split(";")
            procs = [x for x in frames if x.startswith("process ")]
            proc = procs[-1] if procs else "process ?:"
            pid = proc.split(":", 1)[0]
            thread = next((x for x in frames if x.startswith("thread (")), "thread ?")
            fn = [_fn(x) for x in frames if not x.startswith(("process ", "thread ("))]
            rows.append((pid, proc, thread, fn, int(count_text)))
            joined = ";".join(fn)
            for mark in ("child_main (ingest.py", "_process_worker (concurrent/futures/process.py",
                         "multiprocessing/forkserver.py", "resource_tracker.py"):
                if mark in joined and mark not in text_of[pid]:
                    text_of[pid].append(mark)
    roles = {pid: _role(next((r[1] for r in rows if r[0] == pid), ""), texts) for pid, texts in text_of.items()}
    for pid, _proc, thread, fn, count in rows:
        key = (roles[pid], re.sub(r"^thread \(\d+\): ?", "", thread) or "?")
        per_thread[key] += count
        stacks[key].append((fn, count))

    total = sum(per_thread.values())
    print(f"{args.file}: {total} samples")
    for key, n in per_thread.most_common():
        idle = sum(c for fn, c in stacks[key] if fn and _idle(fn[-1]))
        print(f"  {n:7d}  {key[0]} / {key[1]}   (waiting {idle / n:.0%})")

    for key, n in per_thread.most_common():
        if n < total * 0.03:
            continue
        busy = [(fn, c) for fn, c in stacks[key] if fn and not _idle(fn[-1])]
        nb = sum(c for _, c in busy) or 1
        print(f"\n== {key[0]} / {key[1]}: {n} samples, {nb} not waiting")
        self_c: Counter[str] = Counter()
        incl: Counter[str] = Counter()
        for fn, c in busy:
            self_c[fn[-1]] += c
            for name in set(fn):
                incl[name] += c
        print("  self (leaf) time, of the non-waiting samples:")
        for name, c in self_c.most_common(args.top):
            if c / nb < args.min_share:
                break
            print(f"    {c / nb:6.1%}  {name}")
        print("  inclusive, of the non-waiting samples:")
        for name, c in incl.most_common(args.top * 2):
            if c / nb < args.min_share:
                break
            print(f"    {c / nb:6.1%}  {name}")
        for under in args.under:
            split: Counter[str] = Counter()
            inside = 0
            for fn, c in stacks[key]:
                idx = [i for i, x in enumerate(fn) if x.startswith(under + " ")]
                if not idx:
                    continue
                i = idx[0]
                inside += c
                split[fn[i + 1] if i + 1 < len(fn) else "(self)"] += c
            if inside:
                print(f"  inside {under} ({inside} samples, {inside / n:.0%} of the thread, waiting included):")
                for name, c in split.most_common(args.top):
                    if c / inside < args.min_share:
                        break
                    print(f"    {c / inside:6.1%}  {name}")


if __name__ == "__main__":
    main()
