"""Watching one mailbox: a thread that owns it, syncs it, and waits for new mail.

The worker first takes the mailbox's lease (one owner at a time, on one
machine or several).  Over IMAP it stays connected: a sync, then IDLE until
the server reports new mail (re-issued well under the 29 minutes RFC 2177
allows; a silent IDLE is suspect -- imapclient's ``idle_check`` returns
nothing forever on a dead socket -- so it is probed with NOOP), then a sync
again.  Without IDLE, or for a Maildir, it polls.  Any failure drops the
connection and retries with exponential backoff and jitter; the state is
logged once per change, never once per retry, and recorded for ``status``.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import imapclient
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mailcase.config.mailbox import MailboxConfig
from mailcase.config.settings import Config
from mailcase.core.backoff import delay
from mailcase.core.clock import Clock, real_now
from mailcase.core.errors import DatabaseUnavailable, LeaseHeld, MailcaseError
from mailcase.core.log import kv
from mailcase.core.states import WorkerMode, WorkerState
from mailcase.domain.calendar import BusinessCalendar
from mailcase.domain.db import is_outage, transaction
from mailcase.domain.lease import Lease
from mailcase.domain.oauth import imap_token
from mailcase.domain.tables import MAILBOX_STATE
from mailcase.ingest.fetch import SyncResult, arrival_window, sync_maildir, sync_with
from mailcase.ingest.imap import session
from mailcase.ingest.mailbox_state import load_state, record_failure

log = logging.getLogger(__name__)

LEASE_TTL = timedelta(seconds=45)      # a dead owner's mailbox is taken over within a minute
RENEW_EVERY = 5.0                      # seconds between lease renewals (and heartbeats)


@dataclass
class Backoff:
    """Reconnect delays: 1 s, 2 s, 4 s ... up to ``maximum``, jittered."""

    initial: float = 1.0
    maximum: float = 300.0
    failures: int = 0

    def next(self) -> float:
        self.failures += 1
        return delay(self.failures, self.initial, self.maximum)

    def reset(self) -> None:
        self.failures = 0


class Rebalance(Exception):
    """This daemon holds more mailboxes than its share: give this one up."""


class Share(Protocol):
    """How the daemon shares mailboxes with the other daemons on the database."""

    def may_take(self, worker: MailboxWorker) -> bool: ...
    def should_yield(self, worker: MailboxWorker) -> bool: ...


class _Alone:
    def may_take(self, worker: MailboxWorker) -> bool:
        return True

    def should_yield(self, worker: MailboxWorker) -> bool:
        return False


class MailboxWorker:
    def __init__(self, engine: Engine, config: Config, cfg: MailboxConfig, clock: Clock,
                 on_stored: Callable[[SyncResult], None], share: Share | None = None) -> None:
        self.share: Share = share or _Alone()
        self.holds_lease = False
        self.engine = engine
        self.config = config
        self.cfg = cfg
        self.clock = clock
        self.on_stored = on_stored
        self.stopping = threading.Event()
        self.state = WorkerState.STARTING
        self.detail = ""
        self.mode = WorkerMode.MAILDIR if cfg.kind == "maildir" else WorkerMode.POLL
        self.first_state = threading.Event()
        self.backoff = Backoff(maximum=config.daemon.reconnect_max_seconds)
        # the database coming back must be noticed quickly: intake resumes within seconds
        self.db_backoff = Backoff(initial=0.5, maximum=config.daemon.database_retry_max_seconds)
        self.thread = threading.Thread(target=self._run, name=f"mailbox-{cfg.name}", daemon=True)
        #: when this worker last showed it is alive (monotonic); the daemon feeds
        #: systemd's watchdog only while every worker's beat is fresh
        self.beat = time.monotonic()
        #: the last error, for ``status`` and the metrics (None once connected again)
        self.last_error: str | None = None
        self._last_renew = 0.0
        self._last_row_beat = 0.0
        self._calendar = BusinessCalendar(config.calendar)
        self._synced_from: datetime | None = None  # start time of the last sync

    def reconfigure(self, config: Config) -> None:
        """A reload that leaves this mailbox's own settings alone still reaches it: the
        cutoff times (when to sync so a cutoff can close) and the ingest windows (which
        received times to believe) are read from the new configuration from the next
        step on, without a reconnect."""
        self._calendar = BusinessCalendar(config.calendar)
        self.config = config

    def _cutoff_passed(self) -> bool:
        """A cutoff passed since the last sync began: sync now, so it can close
        (a cutoff waits for a sync of every mailbox that started after it)."""
        if self._synced_from is None:
            return True
        last = self._calendar.previous_cutoff(self.clock.now())
        return last is not None and last > self._synced_from

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)

    def _wait(self, seconds: float) -> bool:
        """Sleep unless stopping, beating while it waits; True if stopping."""
        end = time.monotonic() + max(0.0, seconds)
        while True:
            self.beat = time.monotonic()
            left = end - self.beat
            if left <= 0:
                return self.stopping.is_set()
            if self.stopping.wait(min(left, 1.0)):
                return True

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def _set_state(self, state: WorkerState, detail: str = "") -> None:
        changed = state != self.state
        self.state, self.detail = state, detail
        self.beat = time.monotonic()
        if state is WorkerState.DOWN:
            self.last_error = detail
        elif state is WorkerState.CONNECTED:
            self.last_error = None
        if changed:
            level = logging.WARNING if state in (WorkerState.DOWN, WorkerState.WAITING_LEASE) else logging.INFO
            log.log(level, "event=mailbox-state mailbox=%s state=%s mode=%s detail=%s",
                    self.cfg.name, state, self.mode, kv(detail or "-"))
        self.first_state.set()
        if not self.holds_lease:
            return  # the mailbox's row belongs to its owner; a waiting daemon only logs
        self._write_row(
            mode=self.mode.value, worker_state=state.value,
            worker_state_at=real_now() if changed else MAILBOX_STATE.c.worker_state_at,
            **({"last_error": detail[:1000], "last_error_at": self.clock.now()} if state is WorkerState.DOWN else {}),
        )

    def _write_row(self, **values: Any) -> None:
        """The mailbox's row names this daemon as its owner (called only while
        holding the lease: at once when taken, before any mail is stored)."""
        try:
            with transaction(self.engine) as conn:
                load_state(conn, self.cfg.name)
                conn.execute(sa.update(MAILBOX_STATE).where(MAILBOX_STATE.c.name == self.cfg.name).values(
                    worker=f"{socket.gethostname()}:{os.getpid()}", heartbeat_at=real_now(), **values))
        except Exception as exc:  # the database being down is the main loop's to report
            if not is_outage(exc):
                log.exception("event=mailbox-row-failed mailbox=%s", self.cfg.name)

    def _heartbeat(self, lease: Lease) -> None:
        self.beat = time.monotonic()
        if time.monotonic() - self._last_renew < RENEW_EVERY:
            return
        self._last_renew = time.monotonic()
        lease.renew()
        if self.share.should_yield(self):
            raise Rebalance(f"{self.cfg.name}: this daemon holds more than its share of mailboxes")
        try:
            with transaction(self.engine) as conn:
                conn.execute(sa.update(MAILBOX_STATE).where(MAILBOX_STATE.c.name == self.cfg.name)
                             .values(heartbeat_at=real_now()))
        except DatabaseUnavailable:
            pass  # the lease renewal above would have raised first; a blip between the two

    def _run(self) -> None:
        try:
            self._serve()
        except BaseException:  # the supervisor (daemon.py) sees the thread gone and starts a new one
            log.exception("event=mailbox-worker-died mailbox=%s", self.cfg.name)
            raise

    def _serve(self) -> None:
        while not self.stopping.is_set():
            self.beat = time.monotonic()
            retry = self.config.daemon.lease_retry_seconds
            if not self.share.may_take(self):
                self._set_state(WorkerState.WAITING_LEASE, "other daemons hold this mailbox's share")
                if self._wait(random.uniform(0.5, 1.5) * retry):
                    return
                continue
            lease = Lease(self.engine, f"mailbox:{self.cfg.name}", "daemon", ttl=LEASE_TTL)
            try:
                lease.acquire()
                self.holds_lease = True
                self._write_row()
            except LeaseHeld as exc:
                self._set_state(WorkerState.WAITING_LEASE, str(exc))
                if self._wait(random.uniform(0.5, 1.5) * retry):
                    return
                continue
            except DatabaseUnavailable as exc:
                self._set_state(WorkerState.DOWN, str(exc))
                if self._wait(self.db_backoff.next()):
                    return
                continue
            except MailcaseError as exc:
                self._set_state(WorkerState.DOWN, str(exc))
                if self._wait(self.backoff.next()):
                    return
                continue
            self.db_backoff.reset()
            database_down = False
            try:
                if self.cfg.kind == "maildir":
                    self._maildir(lease)
                else:
                    self._imap(lease)
            except LeaseHeld as exc:
                self._set_state(WorkerState.WAITING_LEASE, f"lease lost: {exc}")
            except Rebalance as exc:
                self._set_state(WorkerState.WAITING_LEASE, str(exc))
            except DatabaseUnavailable as exc:
                database_down = True
                self._failed(str(exc))
            except MailcaseError as exc:
                self._failed(str(exc))
            except (OSError, imapclient.exceptions.IMAPClientError, TimeoutError) as exc:
                self._failed(f"imap {self.cfg.name}: {type(exc).__name__}: {exc}")
            except Exception as exc:  # a bug or a driver error must not kill the watcher: back off, retry
                if is_outage(exc):
                    database_down = True
                    self._failed(f"database: {type(exc).__name__}: {exc}")
                else:
                    log.exception("event=mailbox-worker-error mailbox=%s", self.cfg.name)
                    self._failed(f"{type(exc).__name__}: {exc}")
            finally:
                if self.stopping.is_set():
                    self._set_state(WorkerState.STOPPED)
                self.holds_lease = False
                try:
                    lease.release()
                except Exception as exc:  # an unreachable database: the lease row expires by itself
                    database_down = database_down or is_outage(exc)
            if not self.stopping.is_set() and self.state is WorkerState.WAITING_LEASE:
                # give another daemon the time to take it
                if self._wait(random.uniform(1.5, 2.5) * retry):
                    return
            if not self.stopping.is_set() and self.state is WorkerState.DOWN:
                if self._wait(self.db_backoff.next() if database_down else self.backoff.next()):
                    return


    def _progress(self, _stored: int) -> None:
        """A sync stored a chunk: alive (and ``status`` sees it, every few seconds)."""
        self.beat = time.monotonic()
        if self.beat - self._last_row_beat >= RENEW_EVERY:
            self._last_row_beat = self.beat
            try:
                with transaction(self.engine) as conn:
                    conn.execute(sa.update(MAILBOX_STATE).where(MAILBOX_STATE.c.name == self.cfg.name)
                                 .values(heartbeat_at=real_now()))
            except DatabaseUnavailable:
                pass  # the sync's next commit will say so

    def _failed(self, error: str) -> None:
        self._set_state(WorkerState.DOWN, error)
        try:
            record_failure(self.engine, self.cfg.name, error, self.clock.now())
        except Exception:
            pass  # the database is down too: the state is in memory, the log has it

    # -- Maildir -----------------------------------------------------------------------

    def _maildir(self, lease: Lease) -> None:
        self.mode = WorkerMode.MAILDIR
        while not self.stopping.is_set():
            self._synced_from = self.clock.now()
            result = sync_maildir(self.engine, self.cfg, self.config, self._synced_from, progress=self._progress,
                                  lease=lease)
            self._set_state(WorkerState.CONNECTED)
            self.backoff.reset()
            self.on_stored(result)
            end = time.monotonic() + self.config.daemon.poll_seconds
            while time.monotonic() < end and not self._cutoff_passed():
                if self._wait(1.0):
                    return
                self._heartbeat(lease)

    # -- IMAP --------------------------------------------------------------------------

    def _token(self) -> Callable[[], str] | None:
        token: Callable[[], str] | None = imap_token(self.engine, self.cfg, self.clock.now)
        return token

    def _imap(self, lease: Lease) -> None:
        d = self.config.daemon
        with session(self.cfg, self._token()) as client:
            idle = d.idle and client.has_capability("IDLE")
            self.mode = WorkerMode.IDLE if idle else WorkerMode.POLL
            while not self.stopping.is_set():
                self._synced_from = self.clock.now()
                result = sync_with(self.engine, self.cfg, client, lease, self._synced_from,
                                   progress=self._progress,
                                   window=arrival_window(self.config, self._synced_from))
                self._set_state(WorkerState.CONNECTED)
                self.backoff.reset()
                self.on_stored(result)
                if self.stopping.is_set():
                    return
                if idle:
                    self._idle(client, lease)
                else:
                    end = time.monotonic() + d.poll_seconds
                    while time.monotonic() < end and not self._cutoff_passed():
                        if self._wait(1.0):
                            return
                        self._heartbeat(lease)
                    client.noop()

    def _idle(self, client: imapclient.IMAPClient, lease: Lease) -> None:
        d = self.config.daemon
        client.idle()
        log.debug("event=idle mailbox=%s", self.cfg.name)
        in_idle = True
        started = last_heard = time.monotonic()
        try:
            while not self.stopping.is_set():
                asked = time.monotonic()
                responses = client.idle_check(timeout=1.0)
                now = time.monotonic()
                if not responses and now - asked < 0.5:
                    # the socket was readable but gave no response: imapclient
                    # swallows EOF this way, so probe the connection now
                    last_heard = now - d.idle_silence_seconds - 1
                if responses:
                    last_heard = now
                    if any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses):
                        return  # new mail: sync
                if now - started > d.idle_reissue_seconds:
                    return  # re-issue IDLE well before the server's 29-minute limit
                if self._cutoff_passed():
                    return  # a cutoff passed: a sync that started after it lets it close
                if now - last_heard > d.idle_silence_seconds:
                    # a silent IDLE is suspect: leave it and probe; a dead connection raises
                    in_idle = False
                    client.idle_done()
                    client.noop()
                    client.idle()
                    in_idle = True
                    last_heard = time.monotonic()
                self._heartbeat(lease)
        finally:
            if in_idle:
                try:
                    client.idle_done()
                except (OSError, imapclient.exceptions.IMAPClientError):
                    if not self.stopping.is_set():
                        raise
