"""The ingest benchmark (issue 3): the floor, mailcase storing, mailcase storing + parsing.

    .venv/bin/python tests/bench/ingest.py [--sizes 2000,10000] [--workers 1]

For each size N: generate N realistic mails (tests/bench/corpus.py, cached in
/tmp), load them with MULTIAPPEND into a fresh user of a throwaway Dovecot
for each phase, and run each phase in a fresh subprocess:

  (a) floor: imapclient fetch of BODY.PEEK[] + INTERNALDATE in chunks of 500
      UIDs, mailparser.parse_from_bytes on each mail, sqlite3 inserts of the
      raw bytes in transactions of 500 (WAL, synchronous=FULL);
  (b) mailcase.ingest.fetch.sync_imap on a fresh database: raw + headers, durable;
  (c) mailcase.ops.daemon.run_pass: storing with the parse stage behind
      (BackgroundParser, ingest.parse_workers workers), until every mail is
      `parsed`.

Each phase checks its result (N rows stored / parsed).  Peak RSS: the phase
child reports its own peak (RUSAGE_SELF) and, after stopping the forkserver
so that it and the pool workers are reaped, its descendants' peak
(RUSAGE_CHILDREN); a sampler thread also reads VmHWM of every descendant
(workers) and the peak of the summed RSS of the tree; the parent cross-checks
with the child's wait4() rusage.

Not a pytest test.  `--profile DIR` runs the timed part of each phase under
cProfile (main process only); `--py-spy DIR` runs each phase child under
`py-spy record --subprocesses` (workers included).  Timings taken while
profiling are not benchmark figures.
"""

from __future__ import annotations

# top-level imports stay light: the forkserver of phase (c) preloads __main__
import argparse
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
ROOT = TESTS.parent
for p in (str(TESTS), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

PHASES = {
    "a": "a floor: imapclient+mailparser+sqlite3",
    "b": "b mailcase sync_imap (store)",
    "c": "c mailcase run_pass (store+parse)",
}
GOALS = {"b/a": 1.9, "c/a": 0.8, "rss_mb": 200.0}
FLOOR_CHUNK = 500
AUTHSERV_ID = "mx1.support.example"  # what the corpus's Authentication-Results carry


# ==================================================================================
# phase children
# ==================================================================================


def _proc_status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    k, v = line.split(":", 1)
                    out[k] = int(v.split()[0])  # kB
    except OSError:
        pass
    return out


def _pss_kb(pid: int) -> int:
    """Proportional set size: shared pages (the forkserver's preloaded modules in
    every worker) counted once across the processes that share them."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(x) for x in f.read().split())
    except OSError:
        pass
    return out


def _cpu_seconds(stat_path: str) -> tuple[str, float]:
    """(name, user+system CPU seconds) from a /proc .../stat file."""
    text = Path(stat_path).read_text()
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return name, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: the phase's sampler (its last reading of each pool worker's CPU)
SAMPLER: RssSampler | None = None


def _cpu_split() -> str:
    """CPU seconds so far of each thread of this process and of each pool
    worker (as last sampled): where phase (c)'s CPU goes."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    by_thread: dict[str, float] = {}
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            _, cpu = _cpu_seconds(str(task / "stat"))
        except (OSError, ValueError):
            continue
        name = names.get(int(task.name), "other")
        by_thread[name] = by_thread.get(name, 0.0) + cpu
    ended = time.process_time() - sum(by_thread.values())  # threads that ended (the parse stage's)
    if ended >= 0.01:
        by_thread["ended threads"] = ended
    parts = [f"main {time.process_time():.2f} ("
             + ", ".join(f"{k} {v:.2f}" for k, v in sorted(by_thread.items(), key=lambda kv: -kv[1]) if v >= 0.01)
             + ")"]
    if SAMPLER is not None:
        SAMPLER.sample()
        for pid, info in sorted(SAMPLER.procs.items()):
            if info.get("cpu_s", 0.0) >= 0.01:
                parts.append(f"{info['role']}[{pid}] {info['cpu_s']:.2f}")
    return "; ".join(parts)


def _descendants(root: int) -> dict[int, int]:
    """pid -> ppid for every process under ``root`` (not including it)."""
    out: dict[int, int] = {}
    frontier = [root]
    while frontier:
        pid = frontier.pop()
        for kid in _children(pid):
            if kid not in out:
                out[kid] = pid
                frontier.append(kid)
    return out


class RssSampler(threading.Thread):
    """Samples the RSS of this process and its descendants (pool workers)."""

    def __init__(self, interval: float = 0.25) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.interval = interval
        self.stopped = threading.Event()
        self.me = os.getpid()
        self.tree_peak_kb = 0
        self.tree_pss_peak_kb = 0
        self.procs: dict[int, dict[str, Any]] = {}

    def sample(self) -> None:
        total = _proc_status(self.me).get("VmRSS", 0)
        pss = _pss_kb(self.me)
        for pid, ppid in _descendants(self.me).items():
            st = _proc_status(pid)
            if not st:
                continue
            total += st.get("VmRSS", 0)
            pss += _pss_kb(pid)
            info = self.procs.get(pid)
            if info is None:
                cmd = _cmdline(pid)
                role = ("resource_tracker" if "resource_tracker" in cmd else
                        "forkserver" if "forkserver" in cmd and ppid == self.me else
                        "worker")
                info = self.procs[pid] = {"role": role, "ppid": ppid, "hwm_kb": 0}
            info["hwm_kb"] = max(info["hwm_kb"], st.get("VmHWM", 0))
            try:
                info["cpu_s"] = _cpu_seconds(f"/proc/{pid}/stat")[1]
            except (OSError, ValueError):
                pass
        self.tree_peak_kb = max(self.tree_peak_kb, total)
        self.tree_pss_peak_kb = max(self.tree_pss_peak_kb, pss)

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self.sample()
        self.stopped.set()
        self.join()


def _imap_client(spec: dict[str, Any]) -> Any:
    import imapclient

    c = imapclient.IMAPClient("127.0.0.1", port=spec["port"], ssl=False, timeout=60)
    c._imap.debug = 0  # docs/design.md §6: else imaplib formats a copy of every fetched message
    c.normalise_times = False
    c.login(spec["user"], Path(spec["password_file"]).read_text().strip())
    return c


def phase_floor(spec: dict[str, Any], timed: Any) -> dict[str, Any]:
    """(a): the fewest steps that fetch, parse and durably store every mail."""
    import email.feedparser
    import re
    import sqlite3

    import mailparser

    # the floor is the libraries as published: mailcase's speed-up of the
    # standard library's MIME parser (mailcase/mail/feedparser_eol.py) is not in it
    if not isinstance(vars(email.feedparser)["NLCRE_eol"], re.Pattern) or "mailcase" in sys.modules:
        raise RuntimeError("phase a must run the standard library's parser unchanged")
    db = Path(spec["workdir"]) / "floor.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE mail (uid INTEGER PRIMARY KEY, internaldate TEXT, raw BLOB NOT NULL)")

    def run() -> dict[str, Any]:
        client = _imap_client(spec)
        client.select_folder("INBOX", readonly=True)
        uids = sorted(int(u) for u in client.search(["ALL"]))
        nbytes = 0
        parsed = 0
        for i in range(0, len(uids), FLOOR_CHUNK):
            chunk = uids[i : i + FLOOR_CHUNK]
            data = client.fetch(chunk, ["BODY.PEEK[]", "INTERNALDATE"])
            rows = []
            for uid in chunk:
                d = data[uid]
                raw = d[b"BODY[]"]
                mail = mailparser.parse_from_bytes(raw)
                parsed += mail.message is not None
                nbytes += len(raw)
                rows.append((uid, d[b"INTERNALDATE"].isoformat(), raw))
            del data
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO mail VALUES (?, ?, ?)", rows)
            conn.execute("COMMIT")
        client.logout()
        return {"bytes": nbytes, "parsed": parsed}

    out = timed(run)
    count = conn.execute("SELECT count(*) FROM mail").fetchone()[0]
    size = conn.execute("SELECT sum(length(raw)) FROM mail").fetchone()[0]
    conn.close()
    ok = count == spec["n"] and out["parsed"] == spec["n"]
    return {"count": count, "bytes": size, "ok": ok,
            "check": f"{count} rows, {out['parsed']} parsed by mailparser"}


def _mailcase_config(spec: dict[str, Any]) -> Any:
    """Like tests/helpers.py config(), built here so that it fits the mailcase measured
    (the working tree or a --rev export): sections only where the Config has them."""
    from mailcase.config.loader import parse_config
    from mailcase.config.settings import Config

    work = Path(spec["workdir"])
    data: dict[str, Any] = {
        "data_dir": str(work / "data"),
        "database": {"url": f"sqlite:///{work}/mailcase.db"},
        "ingest": {"parse_workers": spec["workers"]},
        "mailboxes": [spec["mailbox"]],
    }
    if "rules" in Config.model_fields:  # issue 4: whom to trust must be said
        data["rules"] = {"sender_authentication": "authserv-id", "authserv_id": AUTHSERV_ID}
    if "secrets" in Config.model_fields:
        key = work / "hmac-key"
        key.write_text("bench-key-0123456789abcdef0123456789")
        data["secrets"] = {"hmac_key": {"file": str(key)}}
    return parse_config(data, "bench")


def _counts(engine: Any) -> dict[str, int]:
    import sqlalchemy as sa

    from mailcase.domain.tables import BLOB, MESSAGE, PARSED_MAIL, QUARANTINE, RAW_COPY

    with engine.connect() as c:
        states = dict(c.execute(sa.select(MESSAGE.c.state, sa.func.count()).group_by(MESSAGE.c.state)).all())
        errors = c.execute(
            sa.select(QUARANTINE.c.stage, QUARANTINE.c.error_type, sa.func.substr(QUARANTINE.c.error, 1, 200),
                      sa.func.count())
            .group_by(QUARANTINE.c.stage, QUARANTINE.c.error_type, sa.func.substr(QUARANTINE.c.error, 1, 200))
            .order_by(sa.func.count().desc()).limit(5)
        ).all()
        if errors:
            print("quarantined:", *(f"  {n} x {st}/{et}: {msg}" for st, et, msg, n in errors), sep="\n",
                  file=sys.stderr)
        return {
            "raw_copy": c.execute(sa.select(sa.func.count()).select_from(RAW_COPY)).scalar_one(),
            "blob_bytes": int(c.execute(sa.select(sa.func.sum(BLOB.c.size))).scalar_one() or 0),
            "parsed_mail": c.execute(sa.select(sa.func.count()).select_from(PARSED_MAIL)).scalar_one(),
            **{f"state:{k}": v for k, v in states.items()},
        }


def phase_store(spec: dict[str, Any], timed: Any) -> dict[str, Any]:
    """(b): mailcase.ingest.fetch.sync_imap, raw + headers, durable."""
    from mailcase.core.clock import SystemClock
    from mailcase.domain.db import open_engine
    from mailcase.ingest.fetch import sync_imap

    cfg = _mailcase_config(spec)
    engine = open_engine(cfg.database_url)
    result = timed(lambda: sync_imap(engine, cfg.mailboxes[0], SystemClock().now()))
    counts = _counts(engine)
    n = spec["n"]
    ok = result.tally.new == n and counts["raw_copy"] == n and counts.get("state:headers-read") == n
    return {"count": counts["raw_copy"], "bytes": counts["blob_bytes"], "ok": ok,
            "check": f"tally: {result.tally.summary()}; db: {counts}"}


_PARSED_OR_LATER_EXCLUDED = ("stored", "headers-read", "quarantined")


def phase_parse(spec: dict[str, Any], timed: Any) -> dict[str, Any]:
    """(c): mailcase.ops.daemon.run_pass, until every mail is parsed.

    From e3044da on, run_pass runs the classify stage after the parse stage
    has drained; then the time until parsed is taken when run_classify_stage
    starts, and the classify stage is reported on its own.
    """
    import mailcase.ops.daemon as daemon
    from mailcase.core.clock import SystemClock
    from mailcase.domain.db import open_engine

    cfg = _mailcase_config(spec)
    engine = open_engine(cfg.database_url)
    marks: dict[str, float] = {}
    notes: dict[str, str] = {}
    # instrumentation only (module attributes of mailcase.ops.daemon, wrapped, not changed);
    # by name, as a --rev may lack some of them
    attrs = vars(daemon)
    real_sync = attrs["sync_mailbox"]

    def sync_and_mark(*a: Any, **kw: Any) -> Any:
        r = real_sync(*a, **kw)
        marks["stored_at"] = time.perf_counter()
        return r

    attrs["sync_mailbox"] = sync_and_mark
    real_classify = attrs.get("run_classify_stage")
    # spec "after_parse": "skip" (scale.py): the stages after parse (classify, cutoffs,
    # delivery) are not run at all; the figure is the time until parsed either way
    skip_after = spec.get("after_parse") == "skip"
    if real_classify is not None:
        def classify_and_mark(*a: Any, **kw: Any) -> Any:
            marks["parsed_at"] = time.perf_counter()
            marks["parsed_cpu"] = time.process_time()
            marks["parsed_hwm_kb"] = _proc_status(os.getpid()).get("VmHWM", 0)
            notes["cpu_split"] = _cpu_split()
            if skip_after:
                from mailcase.ingest.stages import StageResult

                return StageResult()
            return real_classify(*a, **kw)

        attrs["run_classify_stage"] = classify_and_mark
        if skip_after:
            from mailcase.cutoff.batch import BatchRun
            from mailcase.outbound.deliver import DeliveryResult

            attrs["run_due"] = lambda *a, **kw: BatchRun()
            attrs["deliver_due"] = lambda *a, **kw: DeliveryResult()
    marks["start"] = time.perf_counter()
    cpu0 = time.process_time()
    result = timed(lambda: daemon.run_pass(engine, cfg, SystemClock()))
    end = time.perf_counter()
    counts = _counts(engine)
    n = spec["n"]
    at_or_past_parsed = sum(v for k, v in counts.items()
                            if k.startswith("state:") and k[6:] not in _PARSED_OR_LATER_EXCLUDED)
    ok = bool(not result.failures and result.syncs and result.syncs[0].tally.new == n
              and at_or_past_parsed == n and counts["parsed_mail"] == n)
    out: dict[str, Any] = {
        "count": counts["parsed_mail"], "bytes": counts["blob_bytes"], "ok": ok,
        "store_done_s": marks.get("stored_at", end) - marks["start"],
        "check": f"parsed {result.parsed.done} quarantined {result.parsed.quarantined}; "
                 f"failures {result.failures}; db: {counts}",
    }
    if "parsed_at" in marks:
        out["after_parse_skipped"] = skip_after
        out["until_parsed_s"] = marks["parsed_at"] - marks["start"]
        out["until_parsed_cpu_main"] = marks["parsed_cpu"] - cpu0
        out["classify_s"] = end - marks["parsed_at"]
        out["main_peak_until_parsed_mb"] = marks["parsed_hwm_kb"] / 1024
        out["cpu_split"] = notes["cpu_split"]
    return out


def _stop_multiprocessing_helpers() -> None:
    """Stop the forkserver (and resource tracker) so they are reaped: their peak
    RSS, and the pool workers' they reaped, then count in RUSAGE_CHILDREN."""
    try:
        from multiprocessing import forkserver

        cast(Any, forkserver._forkserver)._stop()  # private, not in typeshed
    except Exception:
        pass
    try:
        from multiprocessing import resource_tracker

        cast(Any, resource_tracker._resource_tracker)._stop()  # private, not in typeshed
    except Exception:
        pass


def child_main(spec: dict[str, Any], fns: dict[str, Any] | None = None) -> int:
    global SAMPLER
    sampler = SAMPLER = RssSampler()
    sampler.start()
    timing: dict[str, float] = {}
    profile_to = spec.get("profile")

    def timed(fn: Any) -> Any:
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        if profile_to:
            import cProfile

            prof = cProfile.Profile()
            try:
                return prof.runcall(fn)
            finally:
                timing["elapsed"] = time.perf_counter() - t0
                timing["cpu_main"] = time.process_time() - cpu0
                _write_profile(prof, Path(profile_to))
        try:
            return fn()
        finally:
            timing["elapsed"] = time.perf_counter() - t0
            timing["cpu_main"] = time.process_time() - cpu0

    fn = (fns or {"a": phase_floor, "b": phase_store, "c": phase_parse})[spec["phase"]]
    t_setup = time.perf_counter()
    out = fn(spec, timed)
    out.update(timing)
    if "until_parsed_s" in out:  # (c) on code with stages after parse: time to parsed is the figure
        out["run_pass_s"] = out["elapsed"]
        out["elapsed"] = out["until_parsed_s"]
        out["cpu_main"] = out["until_parsed_cpu_main"]
    if "mailcase" in sys.modules:
        out["mailcase_from"] = str(Path(sys.modules["mailcase"].__file__ or "?").parent)
    out["setup_and_check_s"] = time.perf_counter() - t_setup - timing["elapsed"]
    sampler.stop()
    _stop_multiprocessing_helpers()
    self_ru = resource.getrusage(resource.RUSAGE_SELF)
    kids_ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    workers = [p for p in sampler.procs.values() if p["role"] == "worker"]
    out.update(
        main_peak_mb=self_ru.ru_maxrss / 1024,
        main_peak_run_pass_mb=self_ru.ru_maxrss / 1024,
        children_peak_mb=kids_ru.ru_maxrss / 1024,
        workers_sampled_peak_mb=max((p["hwm_kb"] for p in workers), default=0) / 1024,
        workers_seen=len(workers),
        helpers_sampled_peak_mb={p["role"]: p["hwm_kb"] / 1024 for p in sampler.procs.values()
                                 if p["role"] != "worker"},
        tree_sampled_peak_mb=sampler.tree_peak_kb / 1024,
        tree_pss_peak_mb=sampler.tree_pss_peak_kb / 1024,
        cpu_children=kids_ru.ru_utime + kids_ru.ru_stime,
    )
    if "main_peak_until_parsed_mb" in out:  # (c): the ingest goal is about the way to parsed
        out["main_peak_mb"] = out["main_peak_until_parsed_mb"]
    Path(spec["result"]).write_text(json.dumps(out))
    return 0


def _write_profile(prof: Any, path: Path) -> None:
    import io
    import pstats

    path.parent.mkdir(parents=True, exist_ok=True)
    prof.dump_stats(str(path))
    buf = io.StringIO()
    st = pstats.Stats(prof, stream=buf)
    st.sort_stats("tottime").print_stats(45)
    st.sort_stats("cumulative").print_stats(60)
    path.with_suffix(".txt").write_text(buf.getvalue())


# ==================================================================================
# the parent: corpus, Dovecot, phases, report
# ==================================================================================


def _on_sigterm(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_child(spec: dict[str, Any], timeout: float, py_spy: Path | None, src: Path,
              script: Path | None = None, python: str | None = None) -> tuple[dict[str, Any], float, float]:
    """Run one phase in a fresh process (own session); returns (result, wait4 maxrss MB,
    CPU seconds of the child and its reaped descendants).  ``script``: whose --child
    runs it (default this one); ``python``: the interpreter (default this one's; peer.py
    runs django-helpdesk under its own virtualenv's)."""
    cmd = [python or sys.executable, str(script or Path(__file__).resolve()), "--child", json.dumps(spec)]
    if py_spy is not None:
        py_spy.mkdir(parents=True, exist_ok=True)
        exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
        if not exe:
            raise SystemExit("--py-spy: py-spy is not installed (.venv/bin/pip install py-spy)")
        base = py_spy / f"{spec['phase']}-{spec['n']}"
        cmd = [exe, "record", "--subprocesses", "--threads", "--idle", "--rate", "250", "--format", "raw",
               "--output", f"{base}.folded", "--"] + cmd
    # ``src`` first: the mailcase measured (the working tree, or a --rev export)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(TESTS)])}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"phase {spec['phase']} N={spec['n']} did not finish in {timeout:g} s")
            time.sleep(0.05)
    except BaseException:
        _kill_group(proc)
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"phase {spec['phase']} N={spec['n']} exited with {proc.returncode}")
    return json.loads(Path(spec["result"]).read_text()), ru.ru_maxrss / 1024, ru.ru_utime + ru.ru_stime


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)  # the phase child's own session: it and its workers
        except ProcessLookupError:
            return
        try:
            proc.wait(5)
            return
        except subprocess.TimeoutExpired:
            continue


def cpu_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy since boot (all cores, /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of ``root``, its reaped children and its live descendants (e.g. Dovecot's)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in [root, *_descendants(root)]:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        # utime stime cutime cstime: fields 14-17 of stat(5), 11-14 after the comm
        total += sum(int(x) for x in fields[11:15]) / tick
    return total


def wait_for_quiet(threshold: float, max_wait: float) -> float:
    """Wait (up to max_wait s) until the machine is busier than ``threshold`` of
    its cores for less than a second; returns the last busy fraction seen."""
    cores = os.cpu_count() or 1
    end = time.monotonic() + max_wait
    said = False
    while True:
        b0 = cpu_busy_seconds()
        time.sleep(1.0)
        busy = (cpu_busy_seconds() - b0) / cores
        if busy <= threshold or time.monotonic() > end:
            return busy
        if not said:
            print(f"      machine busy ({busy:.0%} of {cores} cores, other processes); waiting up to"
                  f" {max_wait:.0f} s for it to calm down...", flush=True)
            said = True


def load_mailbox(account: Any, seed: int, paths: list[Path],
                 mail: Callable[[int, bytes], tuple[bytes, Any]] | None = None) -> float:
    """MULTIAPPEND the mails, each with its arrival time as INTERNALDATE (``mail``, given
    i and mail i's bytes, returns other bytes and time); seconds taken."""
    import corpus

    t0 = time.perf_counter()
    client = account.client
    i = 0
    for batch in corpus.iter_batches(paths, max_count=200, max_bytes=16 * 1024 * 1024):
        pairs = [mail(i + k, raw) if mail else (raw, corpus.mail_date(seed, i + k)) for k, raw in enumerate(batch)]
        client.multiappend("INBOX", [{"msg": raw, "date": date} for raw, date in pairs])
        i += len(batch)
    status = client.folder_status("INBOX", [b"MESSAGES"])
    account.close()
    if int(status[b"MESSAGES"]) != len(paths):
        raise RuntimeError(f"loaded {status[b'MESSAGES']} mails into {account.user}, expected {len(paths)}")
    return time.perf_counter() - t0


def fmt_row(cols: list[str], widths: list[int]) -> str:
    return "  ".join(c.rjust(w) if k else c.ljust(w) for k, (c, w) in enumerate(zip(cols, widths)))


def least_disturbed_run(server: Any, work: Path, src: Path, args: Any, seed: int, paths: list[Path], n: int,
                        phase: str, **how: Any) -> dict[str, Any]:
    """Run a phase, again (up to --retries times) while other processes took
    more than --disturbed of the machine; the least disturbed run counts.
    ``how``: run_phase's keyword arguments."""
    best: dict[str, Any] | None = None
    for attempt in range(1, args.retries + 2):
        res = run_phase(server, work, src, args, seed, paths, n, phase, attempt, **how)
        disturbed = res["machine"]["others_cpu"] / (res["machine"]["wall"] * (os.cpu_count() or 1))
        res["machine"]["disturbed"] = disturbed
        if best is None or disturbed < best["machine"]["disturbed"]:
            best = res
        if disturbed <= args.disturbed:
            break
        print(f"      other processes took {disturbed:.0%} of the machine during this phase"
              f" (more than {args.disturbed:.0%})" + ("; running it again" if attempt <= args.retries
                                                      else "; keeping the least disturbed run"), flush=True)
    assert best is not None
    return best



@contextmanager
def work_folder(prefix: str, keep: bool = False) -> Iterator[tuple[Path, list[Any]]]:
    """A throwaway folder under /tmp for one run of a benchmark script, and a list for the
    servers it starts: on the way out every server is stopped and the folder removed
    (kept with ``keep``), also on Ctrl-C."""
    work = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    servers: list[Any] = []
    try:
        yield work, servers
    finally:
        for server in servers:
            server.cleanup()
        if keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="2000,10000", help="comma-separated mailbox sizes (default 2000,10000)")
    ap.add_argument("--workers", type=int, default=1, help="ingest.parse_workers for phase c (default 1)")
    ap.add_argument("--phases", default="abc", help="which phases to run (default abc)")
    ap.add_argument("--seed", type=int, default=None, help="corpus seed")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds allowed per phase")
    ap.add_argument("--profile", type=Path, default=None, metavar="DIR", help="cProfile each phase's main process into DIR")
    ap.add_argument("--py-spy", type=Path, default=None, metavar="DIR", help="py-spy record each phase (with workers) into DIR")
    ap.add_argument("--quiet", type=float, default=0.25, metavar="FRACTION",
                    help="before each phase wait until the machine is busier than this share of its cores"
                         " for less than a second (default 0.25)")
    ap.add_argument("--max-wait", type=float, default=180, metavar="S",
                    help="longest wait for a quiet machine before a phase (default 180; 0: do not wait)")
    ap.add_argument("--retries", type=int, default=2,
                    help="run a phase again (up to this many times) when other processes took more than"
                         " --disturbed of the machine meanwhile; the least disturbed run counts (default 2)")
    ap.add_argument("--disturbed", type=float, default=0.10, metavar="FRACTION",
                    help="share of the machine other processes may take during a phase (default 0.10)")
    ap.add_argument("--rev", default=None, metavar="REV",
                    help="measure mailcase/ as committed at REV (exported with git archive) instead of the working tree")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child_main(json.loads(args.child))

    import corpus
    from servers.dovecot import Dovecot, dovecot_binary

    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored (&)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    phases = [p for p in "abc" if p in args.phases]
    seed = corpus.DEFAULT_SEED if args.seed is None else args.seed
    import imapclient
    import sqlalchemy

    print(f"machine: load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at start;  nproc {os.cpu_count()}  {platform.machine()}  "
          f"Python {platform.python_version()}  {platform.platform(terse=True)}")
    print(f"versions: imapclient {imapclient.__version__}  mail-parser {_version('mail-parser')}  "
          f"SQLAlchemy {sqlalchemy.__version__}  sqlite {__import__('sqlite3').sqlite_version}")
    if not args.rev:
        print(f"code: working tree at {_git_state()}")
    print(f"sizes {sizes}  phases {''.join(phases)}  parse_workers {args.workers}  seed {seed}")
    if args.profile or args.py_spy:
        print("PROFILING: the timings below are distorted by the profiler, not benchmark figures")
    if not dovecot_binary():
        print("dovecot is not installed", file=sys.stderr)
        return 2

    t0 = time.perf_counter()
    all_paths = corpus.ensure(max(sizes), seed)
    print(f"corpus: {max(sizes)} mails ready in {corpus.cache_dir(seed)} ({time.perf_counter() - t0:.1f} s)")

    results: dict[int, dict[str, dict[str, Any]]] = {}
    try:
        with work_folder("mcbench") as (work, servers):
            src = ROOT
            if args.rev:
                src = work / "src"
                src.mkdir()
                sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.rev],
                                     capture_output=True, text=True, check=True).stdout.strip()
                tops = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "--name-only", sha],
                                      capture_output=True, text=True, check=True).stdout.split()
                # the package, and its templates where that revision has them (found next to it)
                archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha, "mailcase",
                                          *(["templates"] if "templates" in tops else [])],
                                         capture_output=True, check=True).stdout
                subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
                # byte-compile now, or the first phase pays for it
                subprocess.run([sys.executable, "-m", "compileall", "-q", str(src)], check=True)
                print(f"code: mailcase/ at {args.rev} = {sha} (git archive into {src})")
            server = Dovecot().start()
            servers.append(server)
            for n in sizes:
                paths = all_paths[:n]
                raw_bytes = sum(p.stat().st_size for p in paths)
                print(f"\n== N={n}: {raw_bytes / 1e6:.1f} MB of raw mail"
                      f" (mean {raw_bytes / n / 1024:.1f} KiB/mail, CRLF)")
                results[n] = {}
                for phase in phases:
                    results[n][phase] = least_disturbed_run(server, work, src, args, seed, paths, n, phase)
                report(n, results[n], args.workers)
            summary(results, args.workers)
            return 0
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up", file=sys.stderr)
        return 130


def run_phase(server: Any, work: Path, src: Path, args: Any, seed: int, paths: list[Path], n: int,
              phase: str, attempt: int, *, script: Path | None = None, python: str | None = None,
              mail: Callable[[int, bytes], tuple[bytes, Any]] | None = None,
              spec_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load a fresh user with the N mails, run one phase in a fresh process, check it.

    For another benchmark's phases: ``script`` and ``python`` run the child (see
    run_child), ``mail`` rewrites mail i and its INTERNALDATE (see load_mailbox),
    ``spec_extra`` goes into the phase's spec."""
    from helpers import ImapAccount

    raw_bytes = sum(p.stat().st_size for p in paths)
    user, password = server.take_user()
    phase_dir = work / f"{n}-{phase}-{attempt}"
    phase_dir.mkdir()
    account = ImapAccount(server, user, password, phase_dir)
    load_s = load_mailbox(account, seed, paths, mail)
    print(f"   {phase}: loaded {n} mails into {user} in {load_s:.1f} s "
          f"({raw_bytes / 1e6 / load_s:.0f} MB/s); running...", flush=True)
    spec = {
        "phase": phase, "n": n, "port": server.port, "user": user,
        "password_file": str(account.password_file), "workdir": str(phase_dir),
        "workers": args.workers, "result": str(phase_dir / "result.json"), "db": str(phase_dir / "mailcase.db"),
        "mailbox": account.mailbox_config(),
        "profile": str(args.profile / f"{phase}-{n}.prof") if args.profile else None,
        "after_parse": getattr(args, "after_parse", "run"),
        **(spec_extra or {}),
    }
    before = wait_for_quiet(args.quiet, args.max_wait) if args.max_wait > 0 else float("nan")
    assert server.proc is not None
    busy0, t_child0, dove0 = cpu_busy_seconds(), time.perf_counter(), tree_cpu_seconds(server.proc.pid)
    res, wait4_mb, child_cpu = run_child(spec, args.timeout, args.py_spy, src, script, python)
    busy1, t_child1, dove1 = cpu_busy_seconds(), time.perf_counter(), tree_cpu_seconds(server.proc.pid)
    cores = os.cpu_count() or 1
    dovecot_cpu = dove1 - dove0
    others = (busy1 - busy0) - child_cpu - dovecot_cpu
    res["machine"] = {"busy_before": before, "wall": t_child1 - t_child0, "child_cpu": child_cpu,
                      "dovecot_cpu": dovecot_cpu, "others_cpu": others}
    res["wait4_peak_mb"] = wait4_mb
    res["raw_bytes"] = raw_bytes
    if res.get("mailcase_from") and str(src) not in res["mailcase_from"]:
        raise RuntimeError(f"phase {phase} measured {res['mailcase_from']}, not {src}")
    extra = f"; store done at {res['store_done_s']:.1f} s" if "store_done_s" in res else ""
    if res.get("after_parse_skipped"):
        extra += (f", all parsed at {res['until_parsed_s']:.1f} s (the stages after parse not run);"
                  f" main process peak {res['main_peak_until_parsed_mb']:.0f} MB")
    elif "classify_s" in res:
        extra += (f", all parsed at {res['until_parsed_s']:.1f} s (the figure used); then the"
                  f" stages after parse (classify, ...) took {res['classify_s']:.1f} s more"
                  f" (run_pass {res['run_pass_s']:.1f} s); main process peak"
                  f" {res['main_peak_until_parsed_mb']:.0f} MB until parsed,"
                  f" {res['main_peak_run_pass_mb']:.0f} MB for the whole run_pass")
    print(f"      machine: {before:.0%} busy before; during the phase process ({t_child1 - t_child0:.1f} s,"
          f" {cores} cores): its processes {child_cpu:.1f} CPU s, Dovecot {dovecot_cpu:.1f},"
          f" other processes on the machine {others:.1f}", flush=True)
    if res.get("cpu_split"):
        print(f"      CPU s until {res.get('cpu_split_at', 'parsed')}: {res['cpu_split']}", flush=True)
    print(f"      {res['elapsed']:.2f} s, {n / res['elapsed']:.0f} msg/s{extra}; "
          f"{'OK' if res['ok'] else 'FAILED'}: {res['check']}", flush=True)
    if not res["ok"]:
        raise RuntimeError(f"phase {phase} N={n} did not store/parse all {n} mails: {res['check']}")
    shutil.rmtree(phase_dir, ignore_errors=True)  # its database
    shutil.rmtree(server.maildir(user), ignore_errors=True)
    return res


def _git_state() -> str:
    """Which code was measured (read-only git queries)."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--", "mailcase"],
                               capture_output=True, text=True, timeout=10).stdout.split("\n")
        changed = [line[3:] for line in dirty if line.strip()]
        return f"{head}" + (f" + uncommitted changes in {', '.join(changed)}" if changed else " (mailcase/ clean)")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _version(dist: str) -> str:
    from importlib.metadata import version

    try:
        return version(dist)
    except Exception:
        return "?"


def peak(r: dict[str, Any]) -> float:
    """The largest single process of the phase (for (c) on code with later stages: until parsed)."""
    if "main_peak_until_parsed_mb" in r:
        return float(max(r["main_peak_mb"], r["children_peak_mb"], r["workers_sampled_peak_mb"]))
    return float(max(r["wait4_peak_mb"], r["main_peak_mb"], r["children_peak_mb"]))


def report(n: int, res: dict[str, dict[str, Any]], workers: int) -> None:
    widths = [38, 8, 8, 7, 6, 9, 9, 9, 10, 8, 9, 9, 8]
    print()
    print(f"N={n}")
    print(fmt_row(["phase", "time s", "msgs/s", "MB/s", "vs a", "main MB", "worker MB",
                   "max MB", "sum MB*", "CPU s", "Dovecot s", "others s", "setup s"], widths))
    a = res.get("a")
    for phase, r in res.items():
        label = PHASES[phase] + (f" w={workers}" if phase == "c" else "")
        rate = n / r["elapsed"]
        ratio = f"{rate / (n / a['elapsed']):.2f}" if a else "-"
        cpu = r["cpu_main"] + r.get("cpu_children", 0)
        print(fmt_row([
            label, f"{r['elapsed']:.2f}", f"{rate:.0f}", f"{r['raw_bytes'] / 1e6 / r['elapsed']:.1f}", ratio,
            f"{r['main_peak_mb']:.0f}", f"{max(r['children_peak_mb'], r['workers_sampled_peak_mb']):.0f}" if phase == "c" else "-",
            f"{peak(r):.0f}",
            f"{r['tree_sampled_peak_mb']:.0f}", f"{cpu:.1f}", f"{r['machine']['dovecot_cpu']:.1f}",
            f"{r['machine']['others_cpu']:.1f}",
            f"{r['setup_and_check_s']:.1f}",
        ], widths))
    if a and "b" in res:
        print(f"   b/a = {a['elapsed'] / res['b']['elapsed']:.2f}", end="")
    if a and "c" in res:
        print(f"   c/a = {a['elapsed'] / res['c']['elapsed']:.2f}", end="")
    print()
    print("   main MB: peak RSS of the phase's main process; worker MB: of its largest pool worker;"
          " max MB: the largest single process (wait4/getrusage);\n"
          "   * sum MB: peak of the summed RSS of the phase's processes, sampled every 0.25 s;"
          " CPU s: the phase's processes in the timed part; Dovecot s: CPU of the IMAP server meanwhile;"
          "\n   others s: CPU used meanwhile by every other process on the machine (large: the timings are disturbed)")


def summary(results: dict[int, dict[str, dict[str, Any]]], workers: int) -> None:
    print("\n== goals (issue 3): b/a >= 1.9, c/a >= 0.8, peak RSS < 200 MB at both sizes, no growth 2,000 -> 10,000")
    sizes = sorted(results)

    for n in sizes:
        res = results[n]
        a = res.get("a")
        parts = []
        for p, goal in (("b", GOALS["b/a"]), ("c", GOALS["c/a"])):
            if a and p in res:
                ratio = a["elapsed"] / res[p]["elapsed"]
                parts.append(f"{p}/a {ratio:.2f} {'PASS' if ratio >= goal else 'FAIL'} (goal {goal})")
        rss = ", ".join(f"{p} {peak(r):.0f}" for p, r in res.items())
        ok = all(peak(r) < GOALS["rss_mb"] for p, r in res.items() if p in "bc")
        parts.append(f"peak RSS MB [{rss}] {'PASS' if ok else 'FAIL'} (mailcase phases < 200)")
        print(f"N={n}: " + "; ".join(parts))
    if len(sizes) >= 2:
        lo, hi = sizes[0], sizes[-1]
        growth = []
        for p in results[hi]:
            if p in results[lo]:
                d = peak(results[hi][p]) - peak(results[lo][p])
                rel = d / peak(results[lo][p])
                growth.append(f"{p} {d:+.0f} MB ({rel:+.0%}) {'PASS' if rel <= 0.10 else 'FAIL'}")
        print(f"RSS growth N={lo} -> N={hi} (goal: none; PASS within 10%): " + ", ".join(growth))


if __name__ == "__main__":
    sys.exit(main())
