"""The daemon's threads: a worker per mailbox and the parse pool, supervised.

A worker whose thread died is started again; one that keeps dying (5 times
in 10 minutes) or has not shown a sign of life for
``daemon.worker_stale_seconds`` is a problem the daemon reports (it stops
feeding the watchdog, and systemd restarts the service).  Mailboxes are
shared with the other daemons on the database: each holds at most its fair
share of the mailbox leases.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mailcase.config.mailbox import MailboxConfig
from mailcase.config.settings import Config
from mailcase.core.clock import Clock, real_now
from mailcase.core.log import kv
from mailcase.domain.db import is_outage
from mailcase.domain.tables import LEASE
from mailcase.ingest.fetch import SyncResult
from mailcase.ingest.stages import BackgroundParser
from mailcase.ingest.watch import MailboxWorker

log = logging.getLogger(__name__)

RESTART_WINDOW = 600  # seconds: restarts counted over the last ten minutes
RESTARTS_UNHEALTHY = 5


class Workers:
    """The mailbox workers (by name) and the parse pool of one daemon."""

    def __init__(self, engine: Engine, config: Config, clock: Clock) -> None:
        self.engine, self.config, self.clock = engine, config, clock
        self.parser = self._new_parser()
        self.mailboxes: dict[str, MailboxWorker] = {}
        #: the metrics endpoint, when one is served (counts stored mail)
        self.metrics: Any = None
        #: worker restarts (name -> monotonic times), to tell a flapping worker from a blip
        self._restarts: dict[str, list[float]] = {}
        self._live: tuple[float, int] = (0.0, 1)

    def _new_parser(self) -> BackgroundParser:
        return BackgroundParser(self.engine, self.clock, workers=self.config.ingest.workers,
                                pin_key=self.config.hmac_key())

    def _new_worker(self, cfg: MailboxConfig) -> MailboxWorker:
        return MailboxWorker(self.engine, self.config, cfg, self.clock, self._stored, self)

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
        held = sum(1 for w in self.mailboxes.values() if w.holds_lease and w is not worker)
        return held < self.fair_share()

    def should_yield(self, worker: MailboxWorker) -> bool:
        holding = sorted(n for n, w in self.mailboxes.items() if w.holds_lease)
        over = len(holding) - self.fair_share()
        # give up the last ones (by name), one per heartbeat, so daemons converge
        return over > 0 and worker.cfg.name in holding[-over:]

    # -- starting and stopping -----------------------------------------------------------------

    def _stored(self, result: SyncResult) -> None:
        t = result.tally
        if t.seen:
            log.info("event=synced mailbox=%s new=%d duplicate=%d historical=%d quarantined=%d",
                     result.mailbox, t.new, t.duplicate + t.copies, t.historical, t.quarantined)
            if self.metrics is not None:
                self.metrics.stored(result.mailbox, t.new)
        self.parser.poke()

    def start_mailboxes(self) -> None:
        """A worker for each enabled mailbox that has none."""
        for cfg in self.config.mailboxes:
            if cfg.enabled and cfg.name not in self.mailboxes:
                worker = self._new_worker(cfg)
                self.mailboxes[cfg.name] = worker
                worker.start()

    def stop_mailboxes(self, names: list[str] | None = None, timeout: float = 8.0) -> None:
        """Stop the named mailboxes' workers (all without ``names``), waiting up to ``timeout`` in all."""
        chosen = [w for n, w in self.mailboxes.items() if names is None or n in names]
        for w in chosen:
            w.stop()
        end = time.monotonic() + timeout
        for w in chosen:
            w.join(max(0.1, end - time.monotonic()))
        for n in [n for n, w in self.mailboxes.items() if w in chosen]:
            del self.mailboxes[n]

    def reconfigure(self, config: Config, key: bytes) -> None:
        """Give every running worker a reloaded configuration (``key``: its HMAC key, read once).
        Mailbox workers whose own settings changed were stopped before (and start again on
        ``config``); the others take the new calendar and ingest settings in place.  The parse
        pool starts again when the key it hashes PINs with, or its size, changed -- compared
        with the key the pool holds, not read again from the old configuration (a key file
        edited in place reads the same on both sides)."""
        old, self.config = self.config, config
        for worker in self.mailboxes.values():
            worker.reconfigure(config)
        if self.parser.pin_key != key or old.ingest != config.ingest:
            log.info("event=worker-reconfigured worker=parse reason=%s", kv("hmac key or ingest settings changed"))
            self.parser.stop()
            self.parser = self._new_parser()
            self.parser.start()

    # -- supervision ---------------------------------------------------------------------------

    def _restarted(self, name: str, now: float) -> int:
        """Count a restart of ``name``; how many in the last ten minutes."""
        recent = [t for t in self._restarts.get(name, []) if now - t < RESTART_WINDOW] + [now]
        self._restarts[name] = recent
        return len(recent)

    def supervise(self, stopping: bool) -> str | None:
        """Start again a worker (mailbox or parse) whose thread died; find hung ones.
        What is wrong (for the watchdog to stop), or None."""
        now = time.monotonic()
        stale = self.config.daemon.worker_stale_seconds
        problems: list[str] = []
        for name, worker in list(self.mailboxes.items()):
            if not worker.alive and not worker.stopping.is_set():
                n = self._restarted(name, now)
                log.error("event=worker-restarted worker=%s restarts_10min=%d", kv(f"mailbox {name}"), n)
                replacement = self._new_worker(worker.cfg)
                self.mailboxes[name] = replacement
                replacement.start()
                if n >= RESTARTS_UNHEALTHY:
                    problems.append(f"mailbox {name} worker died {n} times in 10 min")
            elif worker.alive and now - worker.beat > stale:
                problems.append(f"mailbox {name} worker silent for {now - worker.beat:.0f} s")
        if not self.parser.alive and not stopping:
            problems += self._restart_parser(now)
        elif self.parser.alive and now - self.parser.beat > stale:
            problems.append(f"parse worker silent for {now - self.parser.beat:.0f} s")
        return "; ".join(problems) or None

    def _restart_parser(self, now: float) -> list[str]:
        error = self.parser.error
        n = self._restarted("parse", now)
        log.error("event=worker-restarted worker=parse restarts_10min=%d error=%s", n,
                  kv(f"{type(error).__name__}: {error}" if error else "-"))
        try:
            self.parser.stop()
        except Exception:
            pass
        self.parser = self._new_parser()
        self.parser.start()
        return [f"parse worker died {n} times in 10 min"] if n >= RESTARTS_UNHEALTHY else []

    def status_line(self) -> str:
        return "mailboxes: " + (", ".join(f"{n} {w.state}" for n, w in self.mailboxes.items()) or "none")

    def health(self) -> dict[str, Any]:
        """In-memory truth about the workers."""
        now = time.monotonic()
        return {
            "workers": {name: {"state": w.state, "mode": w.mode, "alive": w.alive,
                               "beat_age": now - w.beat, "error": w.last_error}
                        for name, w in self.mailboxes.items()},
            "parse": {"alive": self.parser.alive, "beat_age": now - self.parser.beat},
        }
