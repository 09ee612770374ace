"""The optional Prometheus endpoint (127.0.0.1 only): the status figures and counters."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

from mailcase.config.settings import Config
from mailcase.core.clock import Clock
from mailcase.core.errors import ConfigError
from mailcase.core.states import WorkerState
from mailcase.ops.status import collect

Health = Callable[[], dict[str, Any]]


class _StatusCollector(Collector):
    """The status figures from the database, and the workers' health from memory.

    With the database unreachable a scrape still answers: ``mailcase_database_up
    0`` and what the daemon knows of its workers, never an HTTP 500.
    """

    def __init__(self, engine: Engine, config: Config, clock: Clock, health: Health | None = None) -> None:
        self.engine, self.config, self.clock, self.health = engine, config, clock, health

    def collect(self) -> Iterator[Any]:
        known = self.health() if self.health is not None else None
        if known is not None:
            yield from self._workers(known)
        try:
            st = collect(self.engine, self.config, self.clock)
        except Exception:
            yield GaugeMetricFamily("mailcase_database_up", "The database answers", value=0)
            return
        yield GaugeMetricFamily("mailcase_database_up", "The database answers", value=1)
        yield from self._figures(st, known)

    def _workers(self, known: dict[str, Any]) -> Iterator[Any]:
        alive = GaugeMetricFamily("mailcase_worker_alive", "A worker thread is running", labels=["worker"])
        age = GaugeMetricFamily("mailcase_worker_heartbeat_age_seconds", "Seconds since a worker showed life",
                                labels=["worker"])
        for name, w in known["workers"].items():
            alive.add_metric([f"mailbox:{name}"], 1 if w["alive"] else 0)
            age.add_metric([f"mailbox:{name}"], w["beat_age"])
        alive.add_metric(["parse"], 1 if known["parse"]["alive"] else 0)
        age.add_metric(["parse"], known["parse"]["beat_age"])
        yield alive
        yield age
        yield GaugeMetricFamily("mailcase_healthy", "Every worker alive and beating (the watchdog is fed)",
                                value=0 if known["unhealthy"] else 1)

    def _figures(self, st: Any, known: dict[str, Any] | None) -> Iterator[Any]:
        for name, value, doc in (
            ("mailcase_pending_mail", st.pending_mail, "Mail waiting for the next cutoff"),
            ("mailcase_unclassified_mail", st.unclassified_mail, "Mail stored but not yet through the rules"),
            ("mailcase_held_for_review", st.held_for_review, "Mail held for review (floods)"),
            ("mailcase_quarantined", st.quarantined, "Open quarantine entries"),
            ("mailcase_outbox_queued", st.outbox_queued, "Mail queued for delivery"),
            ("mailcase_outbox_failed", st.outbox_failed, "Mail whose delivery failed for good"),
            ("mailcase_outbox_capped", st.outbox_capped, "Mail not sent: over the per-address cap"),
            ("mailcase_open_cases", st.open_cases, "Open cases"),
            ("mailcase_cases_due_soon", st.cases_due_soon, "Open cases within 4 h of their due time, no human answer"),
            ("mailcase_cases_overdue", st.cases_overdue, "Open cases past their due time, no human answer"),
            ("mailcase_cases_breached", st.cases_breached, "Open cases past the agreement's 48 h, no human answer"),
            ("mailcase_cutoff_blocked", 1 if st.cutoff_blocked else 0, "A due cutoff is waiting for a mailbox or mail"),
        ):
            yield GaugeMetricFamily(name, doc, value=value)
        up = GaugeMetricFamily("mailcase_mailbox_up", "The mailbox's worker is connected", labels=["mailbox", "mode"])
        last = GaugeMetricFamily("mailcase_mailbox_last_sync_timestamp_seconds", "Last successful sync",
                                 labels=["mailbox"])
        token = GaugeMetricFamily("mailcase_mailbox_token_ok", "OAuth token health (1 ok)", labels=["mailbox"])
        workers = known["workers"] if known is not None else {}
        for m in st.mailboxes:
            # this daemon's own workers answer from memory (the row may be stale)
            w = workers.get(m.name)
            state = w["state"] if w is not None and w["alive"] else m.state if w is None else WorkerState.DEAD
            up.add_metric([m.name, (w["mode"] if w else m.mode) or "-"], 1 if state == WorkerState.CONNECTED else 0)
            if m.last_sync_ok_at:
                last.add_metric([m.name], m.last_sync_ok_at.timestamp())
            if m.token is not None:
                token.add_metric([m.name], 1 if m.token.ok else 0)
        yield up
        yield last
        yield token


class Metrics:
    def __init__(self, engine: Engine, config: Config, clock: Clock, health: Health | None = None) -> None:
        self.registry = CollectorRegistry()
        self.status = _StatusCollector(engine, config, clock, health)
        self.registry.register(self.status)
        self.mails = Counter("mailcase_mails_stored", "New mails stored", ["mailbox"], registry=self.registry)
        self.cutoffs = Counter("mailcase_cutoffs_closed", "Cutoffs closed", registry=self.registry)
        self.cases = Counter("mailcase_cases_created", "Cases created at cutoffs", registry=self.registry)
        self.sent = Counter("mailcase_mails_sent", "Mails delivered", registry=self.registry)
        self.failed = Counter("mailcase_mails_failed", "Mails whose delivery failed for good", registry=self.registry)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def serve(self, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        try:
            self._server, self._thread = start_http_server(int(port), addr=host.strip("[]"), registry=self.registry)
        except OSError as exc:
            raise ConfigError(f"daemon.metrics_listen: cannot listen on {listen}: {exc.strerror or exc}") from None

    def reconfigure(self, config: Config) -> None:
        """A reload reaches the scrape too (mailboxes, calendar, thresholds)."""
        self.status.config = config

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()

    def stored(self, mailbox: str, n: int) -> None:
        self.mails.labels(mailbox).inc(n)

    def cutoff(self, result: Any) -> None:
        self.cutoffs.inc()
        self.cases.inc(len(result.cases))

    def delivered(self, result: Any) -> None:
        self.sent.inc(result.sent)
        self.failed.inc(result.failed)
