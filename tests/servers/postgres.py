"""Fresh PostgreSQL databases on the server at $MAILCASE_TEST_PG (default 127.0.0.1:5432)."""

from __future__ import annotations

import os
import uuid

import psycopg

ADMIN_URL = os.environ.get("MAILCASE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def available() -> str | None:
    """None if the server answers, else why not."""
    try:
        with psycopg.connect(ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]


def create_database() -> str:
    name = f"mc_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_URL.rsplit("/", 1)[0]
    return f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class PrivateCluster:
    """A throwaway PostgreSQL cluster of our own, to stop and restart in a test."""

    def __init__(self) -> None:
        import glob
        import pwd
        import shutil
        import subprocess
        import tempfile

        from servers.dovecot import free_port

        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            raise RuntimeError("no PostgreSQL server binaries in /usr/lib/postgresql")
        self.bin = bins[-1]
        self.port = free_port()
        self.root = tempfile.mkdtemp(prefix="mcpg")
        self._run = subprocess.run
        self._shutil = shutil
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._pg(f"{self.bin}/initdb -D {self.root}/data -U postgres -A trust >/dev/null")

    def _pg(self, command: str) -> None:
        if self.as_postgres:
            self._run(["su", "postgres", "-s", "/bin/sh", "-c", command], check=True)
        else:
            self._run(["sh", "-c", command], check=True)

    def start(self) -> PrivateCluster:
        self._pg(f"{self.bin}/pg_ctl -D {self.root}/data -l {self.root}/log -w "
                 f"-o '-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off' start >/dev/null")
        return self

    def stop(self) -> None:
        self._pg(f"{self.bin}/pg_ctl -D {self.root}/data -m fast -w stop >/dev/null")

    def restart(self) -> None:
        self._pg(f"{self.bin}/pg_ctl -D {self.root}/data -m fast -w restart "
                 f"-o '-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off' >/dev/null")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def cleanup(self) -> None:
        try:
            self.stop()
        except Exception:
            pass
        self._shutil.rmtree(self.root, ignore_errors=True)
