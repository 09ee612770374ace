"""The long-running loop: sync every mailbox, run the stages, repeat.

``schedule`` is only the metronome; what has been done lives in the
database, so a restart loses nothing and repeats nothing.  One mailbox
failing never stops the others.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType

import schedule
from sqlalchemy.engine import Engine

from mailcase.batch import BatchRun, run_due
from mailcase.classify import run_classify_stage
from mailcase.clock import Clock
from mailcase.config import Config
from mailcase.db import transaction
from mailcase.directory import import_csv
from mailcase.errors import MailcaseError
from mailcase.fetch import SyncResult, record_failure, sync_mailbox
from mailcase.log import kv
from mailcase.outbox import DeliveryResult, deliver_due, transport_for
from mailcase.stages import BackgroundParser, StageResult, run_headers_stage

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
    from mailcase.errors import MailcaseError
    from mailcase.kb import load_articles, reindex

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
            engine, clock, workers=config.ingest.parse_workers, pin_key=config.hmac_key()
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
    result.classified += run_classify_stage(engine, config, clock)
    result.batches = run_due(engine, config, clock)
    if result.batches.waiting:
        log.info("event=cutoff-waiting %s", kv(result.batches.waiting))
    result.delivery = deliver_due(engine, transport_for(config), clock.now(), config)
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
    def __init__(self, engine: Engine, config: Config, clock: Clock) -> None:
        self.engine = engine
        self.config = config
        self.clock = clock
        self.stopping = threading.Event()
        self.parser = BackgroundParser(
            engine, clock, workers=config.ingest.parse_workers, pin_key=config.hmac_key()
        )

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        log.info("event=stopping signal=%s", signal.Signals(signum).name)
        self.stopping.set()

    def tick(self) -> None:
        try:
            run_pass(self.engine, self.config, self.clock, self.parser)
        except MailcaseError as exc:
            log.error("event=pass-failed error=%s", kv(exc))

    def run(self, on_ready: Callable[[], None] | None = None) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self.parser.start()
        scheduler = schedule.Scheduler()
        scheduler.every(max(1, round(self.config.daemon.poll_seconds))).seconds.do(self.tick)
        self.tick()
        if on_ready:
            on_ready()
        while not self.stopping.is_set():
            scheduler.run_pending()
            idle = scheduler.idle_seconds
            self.stopping.wait(min(max(idle or 0.5, 0.05), 1.0))
        self.parser.stop()
        log.info("event=stopped")
        return 0

