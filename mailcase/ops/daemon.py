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
from typing import Any, Literal, TypeAlias

import schedule
from sqlalchemy.engine import Engine

from mailcase import __version__
from mailcase.config.loader import load_config
from mailcase.config.settings import Config
from mailcase.core.clock import Clock
from mailcase.core.errors import DatabaseUnavailable, LeaseHeld, MailcaseError, UsageError
from mailcase.core.log import kv
from mailcase.core.notify import notify, watchdog_interval
from mailcase.cutoff.batch import BatchRun, run_due
from mailcase.domain.cases import release_held
from mailcase.domain.db import is_outage, transaction
from mailcase.domain.directory import import_csv
from mailcase.domain.lease import Lease
from mailcase.ingest.fetch import SyncResult, sync_mailbox
from mailcase.ingest.mailbox_state import record_failure
from mailcase.ingest.quarantine import auto_retry
from mailcase.ingest.stages import BackgroundParser, StageResult, run_headers_stage
from mailcase.ops.closing import close_quiet_cases
from mailcase.ops.metrics import Metrics
from mailcase.ops.preflight import preflight
from mailcase.ops.promise import watch
from mailcase.ops.retention import apply_retention
from mailcase.ops.workers import Workers
from mailcase.outbound.deliver import DeliveryResult, deliver_due
from mailcase.outbound.effects import EFFECTS
from mailcase.outbound.kb import load_articles, reindex
from mailcase.outbound.render import environment
from mailcase.outbound.transport import Transport, transport_for
from mailcase.rules.classify import classify_batch, run_classify_stage

log = logging.getLogger(__name__)

#: the daemon's scheduled jobs (named in its log)
Job: TypeAlias = Literal["housekeeping", "stages", "batches", "deliver", "registration", "reload"]
#: jobs that use the database every time: one that runs again means the database is back
DATABASE_JOBS: tuple[Job, ...] = ("stages", "batches", "deliver")
#: seconds one call of the deliver job sends for at most, while more is due: the main loop
#: then turns (the watchdog, the other jobs) and calls it again at once, not at the next tick
DELIVER_SLICE = 1.0


@dataclass
class PassResult:
    syncs: list[SyncResult] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    #: each failed mailbox's exit status (sysexits: 75 down, 77 refused, 78 configuration)
    failure_codes: dict[str, int] = field(default_factory=dict)
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
    try:
        with transaction(engine) as conn:
            report = import_csv(conn, path, config.directory.effective_at(now), key,
                                replace=config.directory.replace, actor=f"csv {path.name}")
            # standing restored by the file: held cases are released, as `accounts standing X good` does
            for account_id in report.restored:
                release_held(conn, account_id, now, f"csv {path.name}")
    except UsageError as exc:  # an unreadable file: the directory stays as it was
        log.warning("event=directory-import-failed path=%s error=%s", kv(path), kv(exc))
        return None
    _imported[path_text] = (stat.st_mtime, stat.st_size)
    for note in report.notes:
        log.info("event=directory-read path=%s note=%s", kv(path), kv(note))
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
    close_quiet_cases(engine, config, clock.now())
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
            result.failure_codes[cfg.name] = exc.exit_code
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
        #: the mailbox workers and the parse pool
        self.workers = Workers(engine, config, clock)
        self.metrics: Any = None
        self.scheduler = schedule.Scheduler()
        self._last_ping = 0.0
        #: why the watchdog is not being fed (None: healthy), logged once per change
        self.unhealthy: str | None = None
        #: the database as the main loop last found it
        self.database_error: str | None = None
        #: mail is due and waiting (the last slice of delivery stopped at its budget, or a cutoff
        #: queued some): the main loop runs the deliver job again without waiting for its tick
        self.deliver_soon = False
        #: the connection delivery keeps open from one slice to the next while mail is due
        self._transport: Transport | None = None
        # other daemons on the same database see this one while it lives
        self.registration = Lease(engine, f"daemon:{socket.gethostname()}:{os.getpid()}", "daemon",
                                  ttl=timedelta(seconds=config.daemon.registration_seconds))

    # -- signals -------------------------------------------------------------------------

    def _on_term(self, signum: int, _frame: FrameType | None) -> None:
        log.info("event=stopping signal=%s", signal.Signals(signum).name)
        self.stopping.set()

    def _on_hup(self, _signum: int, _frame: FrameType | None) -> None:
        self.reload_requested.set()

    # -- the metronome's jobs ------------------------------------------------------------------

    def _job(self, name: Job, fn: Callable[[], Any]) -> None:
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
        if name in DATABASE_JOBS:
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
        if run.results:  # a cutoff queued its acknowledgements and notices: send them now
            self.deliver_soon = True
        if self.metrics is not None:
            for r in run.results:
                self.metrics.cutoff(r)

    def deliver(self) -> None:
        """One slice of delivery (``DELIVER_SLICE``); ``deliver_soon`` says whether more is due."""
        self.deliver_soon = False
        if self._transport is None:
            self._transport = transport_for(self.config, self.engine, self.clock)
        try:
            r = deliver_due(self.engine, self._transport, self.clock.now(), self.config, budget=DELIVER_SLICE)
        except BaseException:
            self._transport = None  # closed by deliver_due; the next tick tries again
            raise
        if not r.more:
            self._transport = None  # closed by deliver_due: nothing more is due
        self.deliver_soon = r.more
        if self.metrics is not None:
            self.metrics.delivered(r)

    def _close_transport(self) -> None:
        transport, self._transport = self._transport, None
        close = getattr(transport, "close", None)
        if close is not None:
            close()

    def housekeeping(self) -> None:
        import_directory(self.engine, self.config, self.clock.now())
        reindex_kb(self.engine, self.config)
        with transaction(self.engine) as conn:
            n = auto_retry(conn, self.clock.now(), self.config.daemon.quarantine_retries)
        if n:
            log.info("event=quarantine-retried entries=%d", n)
        close_quiet_cases(self.engine, self.config, self.clock.now())
        apply_retention(self.engine, self.config, self.clock.now())
        with transaction(self.engine) as conn:
            watch(conn, self.clock.now(), self.config)

    # -- supervision ---------------------------------------------------------------------------

    def _supervise(self) -> None:
        """Restart dead workers (ops/workers.py); a worker that keeps dying or hangs
        makes the service unhealthy: the watchdog is no longer fed, and systemd
        restarts it."""
        unhealthy = self.workers.supervise(self.stopping.is_set())
        if unhealthy != self.unhealthy:
            if unhealthy:
                log.error("event=unhealthy reason=%s action=%s", kv(unhealthy), kv("watchdog no longer fed"))
                notify(f"STATUS=unhealthy: {unhealthy}")
            else:
                log.info("event=healthy")
                notify(f"STATUS={self.workers.status_line()}")
        self.unhealthy = unhealthy

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
        return {**self.workers.health(), "unhealthy": self.unhealthy, "database_error": self.database_error}

    # -- reload ------------------------------------------------------------------------------

    def reload(self) -> None:
        self.reload_requested.clear()
        if not self.config_path:
            log.warning("event=reload-refused reason=%s", kv("running on embedded defaults: nothing to reload"))
            return
        # everything that can refuse the new configuration is checked before anything changes
        try:
            new = load_config(Path(self.config_path))
            key = new.hmac_key()
            environment.cache_clear()  # templates edited on disk are compiled afresh
            preflight(new)
        except MailcaseError as exc:
            log.error("event=reload-refused error=%s action=%s", kv(exc), kv("keeping the running configuration"))
            return
        changed = [n for n, w in self.workers.mailboxes.items()
                   if n not in {m.name for m in new.mailboxes if m.enabled} or w.cfg != new.mailbox(n)
                   or new.daemon != self.config.daemon]
        try:
            self.workers.stop_mailboxes(changed)
            self._close_transport()  # the next slice connects as the new configuration says
            old, self.config = self.config, new
            self.workers.reconfigure(new, key)
            if self.metrics is not None:
                self.metrics.reconfigure(new)
            if new.daemon != old.daemon:
                self.scheduler = self._schedule()
            if new.daemon.metrics_listen != old.daemon.metrics_listen:
                log.warning("event=reload-partial key=daemon.metrics_listen action=%s",
                            kv("restart the service to serve metrics at the new address"))
        finally:
            self.workers.start_mailboxes()  # whatever happened, no mailbox is left without its worker
        log.info("event=reloaded config=%s restarted_mailboxes=%s", kv(self.config_path), kv(",".join(changed) or "-"))

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> int:
        out = self.config.outgoing
        log.info("event=starting version=%s config=%s pid=%d transport=%s", __version__,
                 kv(self.config_path or "embedded defaults"), os.getpid(),
                 kv(f"smtp {out.smtp_host}:{out.smtp_port_number}" if out.transport == "smtp"
                    else f"file {out.file_dir or Path(self.config.data_dir) / 'outbox'}"))
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        signal.signal(signal.SIGHUP, self._on_hup)
        d = self.config.daemon
        if d.metrics_listen:
            self.metrics = Metrics(self.engine, self.config, self.clock, self.health)
            self.metrics.serve(d.metrics_listen)
            self.workers.metrics = self.metrics
        self._register()
        # the directory and the knowledge base first: the first mails are judged against them
        self._job("housekeeping", self.housekeeping)
        self.workers.parser.start()
        self.workers.start_mailboxes()
        # READY once every mailbox is connected or in a clear state (down, waiting)
        deadline = time.monotonic() + 20
        for w in list(self.workers.mailboxes.values()):
            w.first_state.wait(max(0.0, deadline - time.monotonic()))
        states = ", ".join(f"{n} {w.state}" for n, w in self.workers.mailboxes.items()) or "no mailbox"
        notify("READY=1", f"STATUS=mailboxes: {states}")
        log.info("event=ready mailboxes=%s", kv(states))
        self.scheduler = self._schedule()
        self._job("stages", self.stages)
        self._job("batches", self.batches)
        self._job("deliver", self.deliver)
        while not self.stopping.is_set():
            self._supervise()
            self._ping()
            if self.reload_requested.is_set():
                self._job("reload", self.reload)
            self.scheduler.run_pending()
            if self.deliver_soon and not self.stopping.is_set():
                self._job("deliver", self.deliver)
            self.stopping.wait(0 if self.deliver_soon else 0.5)
        notify("STOPPING=1")
        self._close_transport()
        self.workers.stop_mailboxes()
        self.workers.parser.stop()
        try:
            self.registration.release()
        except Exception:
            pass  # the database is away: the registration expires by itself
        if self.metrics is not None:
            self.metrics.close()
        log.info("event=stopped")
        return 0

    def _schedule(self) -> schedule.Scheduler:
        """The jobs at the configured intervals (built again when a reload changes them)."""
        d = self.config.daemon
        scheduler = schedule.Scheduler()
        scheduler.every(max(1, round(d.stage_seconds))).seconds.do(self._job, "stages", self.stages)
        scheduler.every(max(1, round(d.batch_seconds))).seconds.do(self._job, "batches", self.batches)
        scheduler.every(max(1, round(d.deliver_seconds))).seconds.do(self._job, "deliver", self.deliver)
        scheduler.every(max(1, round(d.housekeeping_seconds))).seconds.do(
            self._job, "housekeeping", self.housekeeping)
        scheduler.every(max(1, round(d.registration_seconds / 6))).seconds.do(
            self._job, "registration", self._register)
        return scheduler

    def _register(self) -> None:
        """Keep this daemon's registration alive (taking it again after a database outage)."""
        try:
            self.registration.renew()
        except LeaseHeld:
            self.registration.acquire()
