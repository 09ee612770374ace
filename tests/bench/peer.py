"""The peer benchmark (issue 17): django-helpdesk's ``get_email`` beside mailcase, same mails, same run.

    .venv/bin/python tests/bench/peer.py [--n 2000] [--runs 3] [--workers 2]
    .venv/bin/python tests/bench/scale.py --parts peer     # the same, its rows in scale.py's summary

The mails: the first N of the corpus (tests/bench/corpus.py), senders moved
onto the desk's directory and arrival times in the desk's Monday-to-Tuesday
window (desk.desk_mail, desk.received_at: as scale.py's ready part loads
them), the same bytes for every phase.  Each phase gets a fresh user of one
throwaway Dovecot loaded with them by MULTIAPPEND (ingest.py's run_phase: a
fresh subprocess in its own session, a wait for a quiet machine, RSS and CPU
sampling, other processes' CPU meanwhile, a rerun when disturbed).  In each
of --runs rounds:

  peer      django-helpdesk (peer_helpdesk.PINS) in its own virtualenv,
            installed from PyPI by this script and cached
            ($MAILCASE_BENCH_CACHE/peer or /tmp/mailcase-bench-peer, keyed by
            the pins and Python's version), in a Django project written into
            the work directory: SQLite in WAL mode with synchronous=FULL (as
            mailcase's), attachments under MEDIA_ROOT, every attachment type
            allowed, Django's dummy e-mail backend (the acknowledgements it
            composes are rendered, not sent).  One Queue (imap, 127.0.0.1, the
            phase's user, INBOX, no SSL).  Timed: ``helpdesk.email.process_email()``,
            what ``manage.py get_email`` runs, without Django's start-up: it
            fetches each mail, parses it, makes a ticket or a follow-up, stores
            attachments, marks the mail deleted.  Checked: one follow-up per
            mail taken, none left on the server; what it logs at WARNING and
            above and text it damaged are counted.
  b         mailcase storing: ingest.py's phase (b), ``sync_imap``.
  ready     mailcase storing, parsing and classifying: scale.py's ready phase,
            ``run_pass`` (the parse stage behind the fetch,
            ``ingest.parse_workers`` = --workers, then the classify stage) with
            the desk's directory imported, until every mail is classified and
            waits for its cutoff; the stages after classify not run.

Ratio: the peer's time / mailcase's, how many times faster mailcase is at
equal work (per mail imported, where helpdesk failed on some).  Goal: 20x or
more.  Not a pytest test.  See tests/bench/README.md.
"""

from __future__ import annotations

# top-level imports stay light: the parse pool's forkserver imports __main__, and the
# peer phase runs this file under django-helpdesk's interpreter, which has no mailcase
import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
ROOT = TESTS.parent
for _p in (str(TESTS), str(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import desk  # noqa: E402  (light at import time)
import ingest as ib  # noqa: E402
import peer_helpdesk as hd  # noqa: E402

SCRIPT = Path(__file__).resolve()
GOAL_PEER_RATIO = 20.0  # issue 17: mailcase at least 20x faster than the peer at equal work
#: phase: (label, the script whose --child runs it)
PHASES = {
    "peer": ("django-helpdesk get_email", SCRIPT),
    "b": ("mailcase store (sync_imap)", HERE / "ingest.py"),
    "ready": ("mailcase store+parse+classify (run_pass until classified)", HERE / "scale.py"),
}
#: what each mailcase phase is compared on
FIGURES = (("b", "store only"), ("ready", "store+parse+classify"))


#: the phases this script's --child runs (b runs in ingest.py's, ready in scale.py's)
CHILD_PHASES = {"peer-prep": hd.phase_peer_prep, "peer": hd.phase_peer}


# ==================================================================================
# the parent
# ==================================================================================


def template_db(args: Any, python: Path, project: Path, work: Path) -> Path:
    """The migrated database, cached beside the virtualenv (keyed by the project)."""
    key = hashlib.sha256((hd.SETTINGS + hd.URLS).encode()).hexdigest()[:12]
    cached = python.parent.parent / f"migrated-{key}.db"
    if cached.exists():
        return cached
    prep = work / "peer-prep"
    prep.mkdir(exist_ok=True)
    spec = {"phase": "peer-prep", "n": 0, "workdir": str(prep), "project": str(project),
            "db": str(prep / "helpdesk.db"), "result": str(prep / "result.json")}
    res, _, _ = ib.run_child(spec, args.timeout, None, ROOT, script=SCRIPT, python=str(python))
    if not res["ok"]:
        raise RuntimeError(f"the peer's database was not prepared: {res['check']}")
    print(f"peer: database migrated in {res['elapsed']:.1f} s; {res['check']}", flush=True)
    shutil.copyfile(prep / "helpdesk.db", cached)
    return cached


def run_peer(args: Any, src: Path, work: Path, seed: int, server: Any) -> dict[str, Any]:
    """--runs rounds of the peer and the two mailcase phases on the same N mails."""
    import corpus

    n = args.peer_n
    python = hd.ensure_venv(args.peer_cache)
    project = hd.write_project(work / "helpdesk-project")
    db = template_db(args, python, project, work)
    print(f"peer: {hd.PINS[0]}, {hd.PINS[1]} (pinned); Python {platform.python_version()}; its virtualenv"
          f" {python.parent.parent}", flush=True)
    paths = corpus.ensure(n, seed)
    raw_bytes = sum(p.stat().st_size for p in paths)
    print(f"\n== peer: N={n} desk mails ({raw_bytes / 1e6:.1f} MB), {args.peer_runs} rounds of django-helpdesk,"
          f" mailcase store, mailcase store+parse+classify (parse_workers {args.workers})", flush=True)

    def mail(i: int, raw: bytes) -> tuple[bytes, Any]:  # the desk's mails, as the ready part loads them
        return desk.desk_mail(seed, i, raw)[0], desk.received_at(seed, i)

    key_file = work / "hmac-key"
    key_file.write_text(desk.HMAC_KEY)
    extra = {
        "peer": {"project": str(project), "template_db": str(db)},
        "ready": {"key_file": str(key_file), "smtp_port": 25, "seed": seed},  # scale.py's phase_ready
    }
    runs: list[dict[str, Any]] = []
    for k in range(1, args.peer_runs + 1):
        print(f"   -- round {k} of {args.peer_runs}", flush=True)
        got: dict[str, Any] = {}
        for phase, (label, script) in PHASES.items():
            print(f"   {label}", flush=True)
            res = ib.least_disturbed_run(server, work, src, args, seed, paths, n, phase, script=script,
                                         python=str(python) if phase == "peer" else None, mail=mail,
                                         spec_extra=extra.get(phase))
            # ready: until the classify stage is done (run_pass's close_quiet_cases after it not counted)
            res["figure_s"] = res.get("ready_s", res["elapsed"])
            got[phase] = res
        p = got["peer"]
        for msg, count in sorted(p["logged"].items(), key=lambda kv: -kv[1])[:8]:
            print(f"      helpdesk logged {count} x {msg}", flush=True)
        print(f"      round {k}: " + "; ".join(
            f"{label} {got[ph]['figure_s']:.2f} s vs django-helpdesk {p['figure_s']:.2f} s = {ratio(got, ph, n):.1f}x"
            for ph, label in FIGURES) + f" (goal >= {GOAL_PEER_RATIO:.0f}x)", flush=True)
        runs.append(got)
    return {"n": n, "runs": runs}


def ratio(got: dict[str, Any], phase: str, n: int) -> float:
    """Peer time / mailcase time at equal work: per mail the peer imported."""
    p = got["peer"]
    return float((p["figure_s"] / p["imported"]) / (got[phase]["figure_s"] / n))


def summary_rows(res: dict[str, Any]) -> list[list[str]]:
    """[what, mailcase, peer, ratio, goal, result] for each mailcase figure: medians, with
    the ratio's min and max over the rounds."""
    n, runs = res["n"], res["runs"]
    rows = []
    partial = [r["peer"]["imported"] for r in runs if r["peer"]["imported"] != n]
    for phase, label in FIGURES:
        ratios = sorted(ratio(r, phase, n) for r in runs)
        mc = sorted(r[phase]["figure_s"] for r in runs)
        peer = sorted(r["peer"]["figure_s"] for r in runs)
        mid = ratios[len(ratios) // 2]
        spread = f" (min {ratios[0]:.1f}, max {ratios[-1]:.1f}, {len(ratios)} runs)" if len(ratios) > 1 else ""
        per = f" per mail imported ({min(partial)}-{max(partial)} of {n})" if partial else ""
        rows.append([f"vs django-helpdesk: {label}, {n:,} mails", f"{mc[len(mc) // 2]:.2f} s",
                     f"helpdesk {peer[len(peer) // 2]:.2f} s", f"{mid:.1f}x{spread}{per}",
                     f">= {GOAL_PEER_RATIO:.0f}x (median)", "PASS" if mid >= GOAL_PEER_RATIO else "FAIL"])
    return rows


def print_summary(res: dict[str, Any]) -> None:
    n = res["n"]
    print("\n== per round (elapsed s; CPU s of the phase's processes; CPU s of other processes meanwhile)")
    for k, r in enumerate(res["runs"], 1):
        print(f"   round {k}: " + "; ".join(
            f"{ph} {r[ph]['figure_s']:.2f} s (CPU {r[ph]['machine']['child_cpu']:.1f}, others"
            f" {r[ph]['machine']['others_cpu']:.1f})" for ph in PHASES)
            + "; ratios " + ", ".join(f"{label} {ratio(r, ph, n):.1f}x" for ph, label in FIGURES))
    imported = sorted(r["peer"]["imported"] for r in res["runs"])
    logged: dict[str, int] = {}
    damaged: dict[str, int] = {}
    for r in res["runs"]:
        for src, into in ((r["peer"]["logged"], logged), (r["peer"]["damaged"], damaged)):
            for k, v in src.items():
                into[k] = max(into.get(k, 0), v)
    print(f"   django-helpdesk imported {imported[0]}-{imported[-1]} of {n} mails; logged (most in one round): "
          + ("; ".join(f"{v} x {k}" for k, v in sorted(logged.items(), key=lambda kv: -kv[1])) or "nothing")
          + "; texts it damaged (most in one round): "
          + (", ".join(f"{v} {k}" for k, v in sorted(damaged.items())) or "none"))
    rows = summary_rows(res)
    head = ["what", "mailcase", "peer", "ratio (peer / mailcase)", "goal", "result"]
    widths = [max(len(r[k]) for r in rows + [head]) for k in range(6)]
    print("\n== summary")
    print(ib.fmt_row(head, widths))
    for row in rows:
        print(ib.fmt_row(row, widths))
    print("   peer = django-helpdesk's process_email (manage.py get_email) importing the same mailbox over IMAP;"
          " mailcase = sync_imap (store)\n   and run_pass until every mail is classified; each ratio is the peer's"
          " time over mailcase's in the same round; the figures are medians.")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", dest="peer_n", type=int, default=2000, help="mails in the mailbox (default 2000)")
    ap.add_argument("--runs", dest="peer_runs", type=int, default=3,
                    help="rounds of the three phases (default 3; the summary gives median, min and max)")
    ap.add_argument("--workers", type=int, default=2, help="ingest.parse_workers of mailcase (default 2)")
    ap.add_argument("--peer-cache", type=Path, default=hd.cache_root(), metavar="DIR",
                    help="where django-helpdesk's virtualenv is kept (default $MAILCASE_BENCH_CACHE/peer"
                         " or /tmp/mailcase-bench-peer)")
    ap.add_argument("--seed", type=int, default=None, help="corpus seed")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds allowed per phase")
    ap.add_argument("--profile", type=Path, default=None, metavar="DIR", help="cProfile each phase's main process")
    ap.add_argument("--py-spy", type=Path, default=None, metavar="DIR", help="py-spy record each phase")
    ap.add_argument("--quiet", type=float, default=0.25, metavar="FRACTION")
    ap.add_argument("--max-wait", type=float, default=180, metavar="S")
    ap.add_argument("--retries", type=int, default=2)
    ap.add_argument("--disturbed", type=float, default=0.10, metavar="FRACTION")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return ib.child_main(json.loads(args.child), CHILD_PHASES)
    import corpus
    from servers.dovecot import Dovecot, dovecot_binary

    signal.signal(signal.SIGTERM, ib._on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args.seed = corpus.DEFAULT_SEED if args.seed is None else args.seed
    print("command: .venv/bin/python tests/bench/peer.py " + " ".join(sys.argv[1:] if argv is None else argv))
    print(f"machine: load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at start; nproc {os.cpu_count()};"
          f" Python {platform.python_version()}; code: working tree at {ib._git_state()}")
    if args.profile or args.py_spy:
        print("PROFILING: the timings below are distorted by the profiler, not benchmark figures")
    if not dovecot_binary():
        print("dovecot is not installed", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    try:
        with ib.work_folder("mcpeer", args.keep) as (work, servers):
            server = Dovecot().start()
            servers.append(server)
            res = run_peer(args, ROOT, work, args.seed, server)
            print_summary(res)
            print(f"\ntotal {time.perf_counter() - t_start:.0f} s")
            return 0
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
