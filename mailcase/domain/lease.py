"""One owner per mailbox (and per singleton job) at a time.

A lease is a row naming its holder, renewed while the holder works and taken
over when it expires -- or at once, on the same host, when the holder's
process is gone (a SIGKILLed fetch must not block its restart for a minute).

On PostgreSQL the row is backed by a session advisory lock held on a
dedicated connection (not one from the pool: a session lock would leak
through it, docs/design.md §6): it is released by the server the moment the holder's
connection dies, whichever machine the holder ran on.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mailcase.core.clock import real_now
from mailcase.core.errors import DatabaseUnavailable, LeaseHeld
from mailcase.domain.db import insert_ignore, is_outage, is_postgres, transaction
from mailcase.domain.tables import LEASE

DEFAULT_TTL = timedelta(seconds=60)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _advisory_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"mailcase:{name}".encode()).digest()[:8], "big", signed=True)


@dataclass
class Lease:
    """``with Lease(engine, "mailbox:support", "reprocess"):`` -- or raise LeaseHeld."""

    engine: Engine
    name: str
    purpose: str
    ttl: timedelta = DEFAULT_TTL
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    _pg_conn: Connection | None = None
    _renewed: float = field(default_factory=time.monotonic)

    @property
    def holder(self) -> str:
        return f"{self.purpose} pid {self.pid} on {self.host}"

    def acquire(self) -> None:
        if is_postgres(self.engine):
            self._acquire_pg()
        try:
            self._acquire_row()
        except BaseException:
            self._release_pg()
            raise

    def _acquire_row(self) -> None:
        now = real_now()
        with transaction(self.engine) as conn:
            insert_ignore(
                conn,
                LEASE,
                [
                    {
                        "name": self.name,
                        "holder": self.holder,
                        "host": self.host,
                        "pid": self.pid,
                        "acquired_at": now,
                        "expires_at": now + self.ttl,
                    }
                ],
                ["name"],
            )
            row = conn.execute(
                sa.select(LEASE).where(LEASE.c.name == self.name).with_for_update()
            ).one()
            mine = row.host == self.host and row.pid == self.pid
            free = (
                mine
                or row.expires_at <= now
                or (row.host == self.host and not _pid_alive(row.pid))
                or self._pg_conn is not None  # the advisory lock is the authority
            )
            if not free:
                raise LeaseHeld(
                    f"{self.name} is held by {row.holder} until "
                    f"{row.expires_at:%Y-%m-%d %H:%M:%S} UTC"
                )
            conn.execute(
                sa.update(LEASE)
                .where(LEASE.c.name == self.name)
                .values(
                    holder=self.holder,
                    host=self.host,
                    pid=self.pid,
                    acquired_at=now if not mine else row.acquired_at,
                    expires_at=now + self.ttl,
                )
            )

    def _acquire_pg(self) -> None:
        try:
            conn = self.engine.connect()
            got = conn.execute(
                sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": _advisory_key(self.name)}
            ).scalar()
            conn.commit()
        except sa.exc.DBAPIError as exc:
            if is_outage(exc):
                raise DatabaseUnavailable(f"database: {str(exc.orig or exc).strip().splitlines()[0]}") from exc
            raise
        if not got:
            conn.close()
            with self.engine.connect() as c:
                row = c.execute(sa.select(LEASE.c.holder).where(LEASE.c.name == self.name)).first()
            who = row[0] if row else "another process"
            raise LeaseHeld(f"{self.name} is held by {who}")
        self._pg_conn = conn

    def _release_pg(self) -> None:
        """Unlock and close the lock's connection.  A connection the database
        dropped holds no lock any more: nothing to do, and no error to raise."""
        if self._pg_conn is not None:
            conn, self._pg_conn = self._pg_conn, None
            try:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _advisory_key(self.name)})
                conn.commit()
            except sa.exc.DBAPIError:
                pass
            finally:
                try:
                    conn.close()
                except sa.exc.DBAPIError:
                    pass

    def renew_if_due(self) -> None:
        """Renew once a third of the lease has passed (a renewal is a durable commit)."""
        if time.monotonic() - self._renewed >= self.ttl.total_seconds() / 3:
            self.renew()

    def renew(self) -> None:
        """Extend the lease; raises LeaseHeld if someone took it over meanwhile."""
        self._renewed = time.monotonic()
        now = real_now()
        with transaction(self.engine) as conn:
            result = conn.execute(
                sa.update(LEASE)
                .where(LEASE.c.name == self.name, LEASE.c.host == self.host, LEASE.c.pid == self.pid)
                .values(expires_at=now + self.ttl)
            )
            if result.rowcount != 1:
                raise LeaseHeld(f"{self.name}: lease lost")

    def release(self) -> None:
        """Give the lease up.  With the database unreachable this does what it
        can and raises DatabaseUnavailable: the row then expires by itself."""
        try:
            with transaction(self.engine) as conn:
                conn.execute(
                    sa.delete(LEASE).where(
                        LEASE.c.name == self.name, LEASE.c.host == self.host, LEASE.c.pid == self.pid
                    )
                )
        finally:
            self._release_pg()

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def holders(engine: Engine, now: datetime | None = None) -> list[tuple[str, str, datetime]]:
    """(name, holder, expires_at) of every live lease."""
    now = now or real_now()
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(LEASE.c.name, LEASE.c.holder, LEASE.c.expires_at).where(
                LEASE.c.expires_at > now
            )
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]
