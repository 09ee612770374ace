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
from datetime import timedelta

import imapclient
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mailcase.clock import Clock, real_now
from mailcase.config import Config, MailboxConfig
from mailcase.db import transaction
from mailcase.errors import LeaseHeld, MailcaseError
from mailcase.fetch import MAILBOX_STATE, SyncResult, load_state, record_failure, sync_maildir, sync_with
from mailcase.imap import session
from mailcase.lease import Lease
from mailcase.log import kv

log = logging.getLogger(__name__)

LEASE_TTL = timedelta(seconds=45)      # a dead owner's mailbox is taken over within a minute
RENEW_EVERY = 10.0                     # seconds between lease renewals (and heartbeats)


@dataclass
class Backoff:
    initial: float = 1.0
    maximum: float = 300.0
    current: float = 0.0

    def next(self) -> float:
        self.current = self.initial if self.current == 0 else min(self.current * 2, self.maximum)
        return self.current * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.current = 0.0


class MailboxWorker:
    def __init__(self, engine: Engine, config: Config, cfg: MailboxConfig, clock: Clock,
                 on_stored: Callable[[SyncResult], None]) -> None:
        self.engine = engine
        self.config = config
        self.cfg = cfg
        self.clock = clock
        self.on_stored = on_stored
        self.stopping = threading.Event()
        self.state = "starting"
        self.detail = ""
        self.mode = "maildir" if cfg.kind == "maildir" else "poll"
        self.first_state = threading.Event()
        self.backoff = Backoff(maximum=config.daemon.reconnect_max_seconds)
        self.thread = threading.Thread(target=self._run, name=f"mailbox-{cfg.name}", daemon=True)
        self._last_renew = 0.0

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)

    def _wait(self, seconds: float) -> bool:
        """Sleep unless stopping; True if stopping."""
        return self.stopping.wait(max(0.0, seconds))

    def _set_state(self, state: str, detail: str = "") -> None:
        changed = state != self.state
        self.state, self.detail = state, detail
        if changed:
            level = logging.WARNING if state in ("down", "waiting-lease") else logging.INFO
            log.log(level, "event=mailbox-state mailbox=%s state=%s mode=%s detail=%s",
                    self.cfg.name, state, self.mode, kv(detail or "-"))
        try:
            with transaction(self.engine) as conn:
                load_state(conn, self.cfg.name)
                conn.execute(sa.update(MAILBOX_STATE).where(MAILBOX_STATE.c.name == self.cfg.name).values(
                    mode=self.mode, worker_state=state, worker_state_at=real_now() if changed else MAILBOX_STATE.c.worker_state_at,
                    worker=f"{socket.gethostname()}:{os.getpid()}", heartbeat_at=real_now(),
                    **({"last_error": detail[:1000], "last_error_at": self.clock.now()} if state == "down" else {}),
                ))
        except MailcaseError:
            pass  # the database being down is the main loop's to report
        self.first_state.set()

    def _heartbeat(self, lease: Lease) -> None:
        if time.monotonic() - self._last_renew < RENEW_EVERY:
            return
        self._last_renew = time.monotonic()
        lease.renew()
        try:
            with transaction(self.engine) as conn:
                conn.execute(sa.update(MAILBOX_STATE).where(MAILBOX_STATE.c.name == self.cfg.name)
                             .values(heartbeat_at=real_now()))
        except MailcaseError:
            pass

    def _run(self) -> None:
        while not self.stopping.is_set():
            lease = Lease(self.engine, f"mailbox:{self.cfg.name}", "daemon", ttl=LEASE_TTL)
            try:
                lease.acquire()
            except LeaseHeld as exc:
                self._set_state("waiting-lease", str(exc))
                if self._wait(random.uniform(5, 15)):
                    return
                continue
            except MailcaseError as exc:
                self._set_state("down", str(exc))
                if self._wait(self.backoff.next()):
                    return
                continue
            try:
                if self.cfg.kind == "maildir":
                    self._maildir(lease)
                else:
                    self._imap(lease)
            except LeaseHeld as exc:
                self._set_state("waiting-lease", f"lease lost: {exc}")
            except MailcaseError as exc:
                self._failed(str(exc))
            except (OSError, imapclient.exceptions.IMAPClientError, TimeoutError) as exc:
                self._failed(f"imap {self.cfg.name}: {type(exc).__name__}: {exc}")
            except Exception as exc:  # a bug must not kill the watcher: log it, back off, retry
                log.exception("event=mailbox-worker-error mailbox=%s", self.cfg.name)
                self._failed(f"{type(exc).__name__}: {exc}")
            finally:
                try:
                    lease.release()
                except MailcaseError:
                    pass
            if not self.stopping.is_set() and self.state == "down":
                if self._wait(self.backoff.next()):
                    return
        self._set_state("stopped")

    def _failed(self, error: str) -> None:
        self._set_state("down", error)
        try:
            record_failure(self.engine, self.cfg.name, error, self.clock.now())
        except MailcaseError:
            pass

    # -- Maildir -----------------------------------------------------------------------

    def _maildir(self, lease: Lease) -> None:
        self.mode = "maildir"
        while not self.stopping.is_set():
            result = sync_maildir(self.engine, self.cfg, self.config, self.clock.now(), lease=lease)
            self._set_state("connected")
            self.backoff.reset()
            self.on_stored(result)
            end = time.monotonic() + self.config.daemon.poll_seconds
            while time.monotonic() < end:
                if self._wait(1.0):
                    return
                self._heartbeat(lease)

    # -- IMAP --------------------------------------------------------------------------

    def _token(self) -> Callable[[], str] | None:
        from mailcase.oauth import imap_token

        token: Callable[[], str] | None = imap_token(self.engine, self.cfg, self.clock.now)
        return token

    def _imap(self, lease: Lease) -> None:
        d = self.config.daemon
        with session(self.cfg, self._token()) as client:
            idle = d.idle and client.has_capability("IDLE")
            self.mode = "idle" if idle else "poll"
            while not self.stopping.is_set():
                result = sync_with(self.engine, self.cfg, client, lease, self.clock.now(),
                                   progress=lambda _n: None)
                self._set_state("connected")
                self.backoff.reset()
                self.on_stored(result)
                if self.stopping.is_set():
                    return
                if idle:
                    self._idle(client, lease)
                else:
                    end = time.monotonic() + d.poll_seconds
                    while time.monotonic() < end:
                        if self._wait(1.0):
                            return
                        self._heartbeat(lease)
                    client.noop()

    def _idle(self, client: imapclient.IMAPClient, lease: Lease) -> None:
        d = self.config.daemon
        client.idle()
        in_idle = True
        started = last_heard = time.monotonic()
        try:
            while not self.stopping.is_set():
                responses = client.idle_check(timeout=1.0)
                now = time.monotonic()
                if responses:
                    last_heard = now
                    if any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses):
                        return  # new mail: sync
                if now - started > d.idle_reissue_seconds:
                    return  # re-issue IDLE well before the server's 29-minute limit
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
