"""The long-running loop: sync every mailbox, run the stages, repeat.

``schedule`` is only the metronome; what has been done lives in the
database, so a restart loses nothing and repeats nothing.  One mailbox
failing never stops the others.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import schedule
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mailcase.config.settings import Config
from mailcase.core.clock import Clock, real_now
from mailcase.core.errors import DatabaseUnavailable, LeaseHeld, MailcaseError
from mailcase.core.log import kv
from mailcase.core.notify import notify, watchdog_interval
from mailcase.cutoff.batch import BatchRun, run_due
from mailcase.domain.cases import release_held
from mailcase.domain.db import is_outage, transaction
from mailcase.domain.directory import import_csv
from mailcase.domain.lease import Lease
from mailcase.domain.tables import LEASE
from mailcase.ingest.fetch import SyncResult, record_failure, sync_mailbox
from mailcase.ingest.stages import BackgroundParser, StageResult, run_headers_stage
from mailcase.ingest.watch import MailboxWorker
from mailcase.outbound.effects import EFFECTS
from mailcase.outbound.outbox import DeliveryResult, deliver_due, transport_for
from mailcase.rules.classify import classify_batch, run_classify_stage

log = logging.getLogger(__name__)


@dataclass
class PassResult:
    syncs: list[SyncResult] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    parsed: StageResult = field(default_factory=StageResult)
    classified: StageResult = field(default_factory=StageResult)
    directory: str | None = None
    batches: BatchRun = field(default_factory=BatchRun)
    delivery: DeliveryResult = field(default_factory=DeliveryResult)


_imported: dict[str, tuple[float, int]] = {}


def _changed(path: Path) -> tuple[float, int] | None:
    """The file's (mtime, size) if it changed since this process last read it."""
    try:
        stat = path.stat()
        if path.is_dir():
            newest = max((p.stat().st_mtime for p in path.iterdir()), default=stat.st_mtime)
            marker = (max(newest, stat.st_mtime), sum(1 for _ in path.iterdir()))
        else:
            marker = (stat.st_mtime, stat.st_size)
    except OSError:
        return None
    return None if _imported.get(str(path)) == marker else marker


def reindex_kb(engine: Engine, config: Config) -> int | None:
    """Reindex the knowledge base when its files changed (or at start)."""
    if not config.kb.path:
        return None
    path = Path(config.kb.path)
    marker = _changed(path)
    if marker is None:
        return None
    from mailcase.outbound.kb import load_articles, reindex

    try:
        articles = load_articles(path)
        with transaction(engine) as conn:
            n = reindex(conn, articles)
    except MailcaseError as exc:
        log.warning("event=kb-reindex-failed path=%s error=%s", kv(path), kv(exc))
        return None
    _imported[str(path)] = marker
    log.info("event=kb-reindexed path=%s articles=%d", kv(path), n)
    return n


def import_directory(engine: Engine, config: Config, now: datetime) -> str | None:
    """Import the configured CSV when it changed since this process last did (idempotent)."""
    path_text = config.directory.csv
    if not path_text:
        return None
    path = Path(path_text)
    try:
        stat = path.stat()
    except OSError as exc:
        log.warning("event=directory-import-failed path=%s error=%s", kv(path), kv(exc.strerror))
        return None
    if _imported.get(path_text) == (stat.st_mtime, stat.st_size):
        return None
    key = config.hmac_key()
    with transaction(engine) as conn:
        report = import_csv(conn, path, config.directory.effective_at(now), key,
                            replace=config.directory.replace, actor=f"csv {path.name}")
        # standing restored by the file: held cases are released, as `accounts standing X good` does
        for account_id in report.restored:
            release_held(conn, account_id, now, f"csv {path.name}")
    _imported[path_text] = (stat.st_mtime, stat.st_size)
    for bad in report.bad_rows:
        log.warning("event=directory-bad-row path=%s %s", kv(path), kv(bad))
    log.info("event=directory-imported path=%s %s", kv(path), kv(report.summary()))
    return report.summary()


def run_pass(
    engine: Engine, config: Config, clock: Clock, parser: BackgroundParser | None = None
) -> PassResult:
    """One round: every enabled mailbox, with the parse stage running behind.

    With no ``parser`` given, one is started for this pass and drained at
    its end.
    """
    result = PassResult()
    result.directory = import_directory(engine, config, clock.now())
    reindex_kb(engine, config)
    own_parser = parser is None
    if parser is None:
        parser = BackgroundParser(
            engine, clock, workers=config.ingest.workers, pin_key=config.hmac_key()
        )
        parser.start()
    try:
        _sync_all(engine, config, clock, result, parser)
        result.parsed += run_headers_stage(engine, clock.now())
        parser.poke()
        if own_parser:
            result.parsed += parser.drain()
    finally:
        if own_parser:
            parser.stop()
    result.classified += run_classify_stage(engine, config, clock, EFFECTS)
    result.batches = run_due(engine, config, clock)
    if result.batches.waiting:
        log.info("event=cutoff-waiting %s", kv(result.batches.waiting))
    result.delivery = deliver_due(engine, transport_for(config, engine, clock), clock.now(), config)
    return result


def _sync_all(
    engine: Engine, config: Config, clock: Clock, result: PassResult, parser: BackgroundParser
) -> None:
    for cfg in config.mailboxes:
        if not cfg.enabled:
            continue
        now = clock.now()
        try:
            sync = sync_mailbox(engine, config, cfg, now, progress=lambda _n: parser.poke())
        except MailcaseError as exc:
            result.failures[cfg.name] = str(exc)
            log.warning("event=sync-failed mailbox=%s error=%s", cfg.name, kv(exc))
            try:
                record_failure(engine, cfg.name, str(exc), now)
            except MailcaseError:
                pass
            continue
        result.syncs.append(sync)
        t = sync.tally
        if t.seen:
            log.info(
                "event=synced mailbox=%s new=%d duplicate=%d historical=%d quarantined=%d",
                cfg.name, t.new, t.duplicate + t.copies, t.historical, t.quarantined,
            )


class Daemon:
    """The service: a worker per mailbox, the parse pool, and a metronome for the rest."""

    def __init__(self, engine: Engine, config: Config, clock: Clock, config_path: str | None = None) -> None:
        self.engine = engine
        self.config = config
        self.clock = clock
        self.config_path = config_path
        self.stopping = threading.Event()
        self.reload_requested = threading.Event()
        self.parser = BackgroundParser(
            engine, clock, workers=config.ingest.workers, pin_key=config.hmac_key()
        )
        self.workers: dict[str, MailboxWorker] = {}
        self.metrics: Any = None
        self._last_ping = 0.0
        #: why the watchdog is not being fed (None: healthy), logged once per change
        self.unhealthy: str | None = None
        #: worker restarts (name -> monotonic times), to tell a flapping worker from a blip
        self._restarts: dict[str, list[float]] = {}
        #: the database as the main loop last found it
        self.database_error: str | None = None
        # other daemons on the same database see this one while it lives
        self.registration = Lease(engine, f"daemon:{socket.gethostname()}:{os.getpid()}", "daemon",
                                  ttl=timedelta(seconds=config.daemon.registration_seconds))
        self._live: tuple[float, int] = (0.0, 1)

    # -- sharing mailboxes with other daemons ------------------------------------------------

    def live_daemons(self) -> int:
        """Daemons registered on this database (cached for a few seconds; the last
        count while the database cannot be asked)."""
        at, n = self._live
        if time.monotonic() - at > 5:
            try:
                with self.engine.connect() as conn:
                    n = int(conn.execute(sa.select(sa.func.count()).where(
                        LEASE.c.name.like("daemon:%"), LEASE.c.expires_at > real_now())).scalar_one())
            except sa.exc.DBAPIError as exc:
                if not is_outage(exc):
                    raise
                return self._live[1]
            self._live = (time.monotonic(), max(1, n))
        return self._live[1]

    def fair_share(self) -> int:
        boxes = sum(1 for m in self.config.mailboxes if m.enabled)
        return -(-boxes // self.live_daemons())

    def may_take(self, worker: MailboxWorker) -> bool:
        held = sum(1 for w in self.workers.values() if w.holds_lease and w is not worker)
        return held < self.fair_share()

    def should_yield(self, worker: MailboxWorker) -> bool:
        holding = sorted(n for n, w in self.workers.items() if w.holds_lease)
        over = len(holding) - self.fair_share()
        # give up the last ones (by name), one per heartbeat, so daemons converge
        return over > 0 and worker.cfg.name in holding[-over:]

    # -- signals -------------------------------------------------------------------------

    def _on_term(self, signum: int, _frame: FrameType | None) -> None:
        log.info("event=stopping signal=%s", signal.Signals(signum).name)
        self.stopping.set()

    def _on_hup(self, _signum: int, _frame: FrameType | None) -> None:
        self.reload_requested.set()

    # -- mailboxes -------------------------------------------------------------------------

    def _stored(self, result: SyncResult) -> None:
        t = result.tally
        if t.seen:
            log.info("event=synced mailbox=%s new=%d duplicate=%d historical=%d quarantined=%d",
                     result.mailbox, t.new, t.duplicate + t.copies, t.historical, t.quarantined)
            if self.metrics is not None:
                self.metrics.stored(result.mailbox, t.new)
        self.parser.poke()

    def _start_workers(self) -> None:
        for cfg in self.config.mailboxes:
            if cfg.enabled and cfg.name not in self.workers:
                worker = MailboxWorker(self.engine, self.config, cfg, self.clock, self._stored, self)
                self.workers[cfg.name] = worker
                worker.start()

    def _stop_workers(self, names: list[str] | None = None, timeout: float = 8.0) -> None:
        chosen = [w for n, w in self.workers.items() if names is None or n in names]
        for w in chosen:
            w.stop()
        end = time.monotonic() + timeout
        for w in chosen:
            w.join(max(0.1, end - time.monotonic()))
        for n in [n for n, w in self.workers.items() if w in chosen]:
            del self.workers[n]

    # -- the metronome's jobs ------------------------------------------------------------------

    def _job(self, name: str, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except DatabaseUnavailable as exc:
            self.database_error = str(exc)
            log.warning("event=job-waiting job=%s error=%s", name, kv(exc))
            return
        except MailcaseError as exc:
            log.error("event=job-failed job=%s error=%s", name, kv(exc))
        except Exception as exc:
            if is_outage(exc):
                self.database_error = f"database: {type(exc).__name__}: {exc}"
                log.warning("event=job-waiting job=%s error=%s", name, kv(self.database_error))
                return
            log.exception("event=job-failed job=%s", name)
        if name in ("stages", "batches", "deliver"):
            if self.database_error is not None:
                log.info("event=database-back")
            self.database_error = None

    def stages(self) -> None:
        run_headers_stage(self.engine, self.clock.now())
        r = classify_batch(self.engine, self.config, self.clock, EFFECTS)
        if r.done or r.quarantined:
            log.info("event=classified done=%d quarantined=%d", r.done, r.quarantined)

    def batches(self) -> None:
        run = run_due(self.engine, self.config, self.clock)
        if run.waiting:
            log.info("event=cutoff-waiting %s", kv(run.waiting))
        if self.metrics is not None:
            for r in run.results:
                self.metrics.cutoff(r)

    def deliver(self) -> None:
        r = deliver_due(self.engine, transport_for(self.config, self.engine, self.clock), self.clock.now(), self.config)
        if self.metrics is not None:
            self.metrics.delivered(r)

    def housekeeping(self) -> None:
        import_directory(self.engine, self.config, self.clock.now())
        reindex_kb(self.engine, self.config)
        from mailcase.ingest.quarantine import auto_retry

        with transaction(self.engine) as conn:
            n = auto_retry(conn, self.clock.now(), self.config.daemon.quarantine_retries)
        if n:
            log.info("event=quarantine-retried entries=%d", n)
        from mailcase.ops.retention import apply_retention

        apply_retention(self.engine, self.config, self.clock.now())
        from mailcase.ops.promise import watch

        with transaction(self.engine) as conn:
            watch(conn, self.clock.now())

    # -- supervision ---------------------------------------------------------------------------

    def _supervise(self) -> None:
        """Start again a worker (mailbox or parse) whose thread died; find hung ones.

        A worker that keeps dying (5 times in 10 minutes) or has not shown
        a sign of life for ``daemon.worker_stale_seconds`` makes the service
        unhealthy: the watchdog is no longer fed, and systemd restarts it.
        """
        now = time.monotonic()
        stale = self.config.daemon.worker_stale_seconds
        problems: list[str] = []
        for name, worker in list(self.workers.items()):
            if not worker.alive and not worker.stopping.is_set():
                recent = [t for t in self._restarts.get(name, []) if now - t < 600] + [now]
                self._restarts[name] = recent
                log.error("event=worker-restarted worker=%s restarts_10min=%d", kv(f"mailbox {name}"), len(recent))
                replacement = MailboxWorker(self.engine, self.config, worker.cfg, self.clock, self._stored, self)
                self.workers[name] = replacement
                replacement.start()
                if len(recent) >= 5:
                    problems.append(f"mailbox {name} worker died {len(recent)} times in 10 min")
            elif worker.alive and now - worker.beat > stale:
                problems.append(f"mailbox {name} worker silent for {now - worker.beat:.0f} s")
        if not self.parser.alive and not self.stopping.is_set():
            error = self.parser.error
            recent = [t for t in self._restarts.get("parse", []) if now - t < 600] + [now]
            self._restarts["parse"] = recent
            log.error("event=worker-restarted worker=parse restarts_10min=%d error=%s", len(recent),
                      kv(f"{type(error).__name__}: {error}" if error else "-"))
            try:
                self.parser.stop()
            except Exception:
                pass
            self.parser = BackgroundParser(self.engine, self.clock, workers=self.config.ingest.workers,
                                           pin_key=self.config.hmac_key())
            self.parser.start()
            if len(recent) >= 5:
                problems.append(f"parse worker died {len(recent)} times in 10 min")
        elif self.parser.alive and now - self.parser.beat > stale:
            problems.append(f"parse worker silent for {now - self.parser.beat:.0f} s")
        unhealthy = "; ".join(problems) or None
        if unhealthy != self.unhealthy:
            if unhealthy:
                log.error("event=unhealthy reason=%s action=%s", kv(unhealthy), kv("watchdog no longer fed"))
                notify(f"STATUS=unhealthy: {unhealthy}")
            else:
                log.info("event=healthy")
                notify(f"STATUS={self._status_line()}")
        self.unhealthy = unhealthy

    def _status_line(self) -> str:
        return "mailboxes: " + (", ".join(f"{n} {w.state}" for n, w in self.workers.items()) or "none")

    def _ping(self) -> None:
        """Feed systemd's watchdog -- only while every worker is alive and beating."""
        if self.unhealthy is not None:
            return
        interval = watchdog_interval()
        if interval is not None and time.monotonic() - self._last_ping >= interval:
            notify("WATCHDOG=1")
            self._last_ping = time.monotonic()

    def health(self) -> dict[str, Any]:
        """In-memory truth about the workers, for the metrics endpoint."""
        now = time.monotonic()
        return {
            "workers": {name: {"state": w.state, "mode": w.mode, "alive": w.alive,
                               "beat_age": now - w.beat, "error": w.last_error}
                        for name, w in self.workers.items()},
            "parse": {"alive": self.parser.alive, "beat_age": now - self.parser.beat},
            "unhealthy": self.unhealthy,
            "database_error": self.database_error,
        }

    # -- reload ------------------------------------------------------------------------------

    def reload(self) -> None:
        self.reload_requested.clear()
        if not self.config_path:
            log.warning("event=reload-refused reason=%s", kv("running on embedded defaults: nothing to reload"))
            return
        from mailcase.config.settings import load_config
        from mailcase.outbound.render import environment

        try:
            new = load_config(Path(self.config_path))
            new.hmac_key()
        except MailcaseError as exc:
            log.error("event=reload-refused error=%s action=%s", kv(exc), kv("keeping the running configuration"))
            return
        changed = [n for n, w in self.workers.items()
                   if n not in {m.name for m in new.mailboxes if m.enabled} or w.cfg != new.mailbox(n)
                   or new.daemon != self.config.daemon]
        self._stop_workers(changed)
        self.config = new
        environment.cache_clear()
        self._start_workers()
        log.info("event=reloaded config=%s restarted_mailboxes=%s", kv(self.config_path), kv(",".join(changed) or "-"))

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> int:
        from mailcase import __version__

        log.info("event=starting version=%s config=%s pid=%d", __version__, kv(self.config_path or "embedded defaults"),
                 os.getpid())
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        signal.signal(signal.SIGHUP, self._on_hup)
        d = self.config.daemon
        if d.metrics_listen:
            from mailcase.ops.metrics import Metrics

            self.metrics = Metrics(self.engine, self.config, self.clock, self.health)
            self.metrics.serve(d.metrics_listen)
        self._register()
        # the directory and the knowledge base first: the first mails are judged against them
        self._job("housekeeping", self.housekeeping)
        self.parser.start()
        self._start_workers()
        # READY once every mailbox is connected or in a clear state (down, waiting)
        deadline = time.monotonic() + 20
        for w in list(self.workers.values()):
            w.first_state.wait(max(0.0, deadline - time.monotonic()))
        states = ", ".join(f"{n} {w.state}" for n, w in self.workers.items()) or "no mailbox"
        notify("READY=1", f"STATUS=mailboxes: {states}")
        log.info("event=ready mailboxes=%s", kv(states))
        scheduler = schedule.Scheduler()
        scheduler.every(max(1, round(d.stage_seconds))).seconds.do(self._job, "stages", self.stages)
        scheduler.every(max(1, round(d.batch_seconds))).seconds.do(self._job, "batches", self.batches)
        scheduler.every(max(1, round(d.deliver_seconds))).seconds.do(self._job, "deliver", self.deliver)
        scheduler.every(max(1, round(d.housekeeping_seconds))).seconds.do(
            self._job, "housekeeping", self.housekeeping)
        scheduler.every(max(1, round(d.registration_seconds / 6))).seconds.do(
            self._job, "registration", self._register)
        self._job("stages", self.stages)
        self._job("batches", self.batches)
        self._job("deliver", self.deliver)
        while not self.stopping.is_set():
            self._supervise()
            self._ping()
            if self.reload_requested.is_set():
                self._job("reload", self.reload)
            scheduler.run_pending()
            self.stopping.wait(0.5)
        notify("STOPPING=1")
        self._stop_workers()
        self.parser.stop()
        try:
            self.registration.release()
        except Exception:
            pass  # the database is away: the registration expires by itself
        if self.metrics is not None:
            self.metrics.close()
        log.info("event=stopped")
        return 0

    def _register(self) -> None:
        """Keep this daemon's registration alive (taking it again after a database outage)."""
        try:
            self.registration.renew()
        except LeaseHeld:
            self.registration.acquire()
