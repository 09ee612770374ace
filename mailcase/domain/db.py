"""Database: an engine from a URL, transactions, schema versions.

SQLite (the default) runs in WAL mode with foreign keys on, ``synchronous=FULL``
(a commit must survive a power cut: after it we delete mail on the server) and
``BEGIN IMMEDIATE`` for every transaction, so a writer takes the write lock up
front instead of failing to upgrade a read lock half-way.  PostgreSQL is used
through psycopg 3 (``postgresql+psycopg://``).

The schema is versioned with alembic (``mailcase/domain/migrations``).  A database
with no tables is created on first use; one at an older version is refused
until ``mailcase db upgrade`` runs.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from mailcase.config.base import unwritable
from mailcase.config.daemon import postgres_hint
from mailcase.core.errors import ConfigError, DatabaseUnavailable, TransientError
from mailcase.domain import tables  # noqa: F401  (imports every model module: registers the tables)

MIGRATIONS = Path(__file__).parent / "migrations"
#: execution option marking a connection that will write (SQLite: BEGIN IMMEDIATE)
WRITE = "mailcase_write"


def make_engine(url: str, busy_timeout_seconds: float = 30.0) -> Engine:
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError(f"database.url: not a database URL: {url!r}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _private_file(Path(parsed.database))
        engine = sa.create_engine(
            parsed,
            connect_args={"timeout": busy_timeout_seconds, "check_same_thread": False},
        )
        _sqlite_events(engine, busy_timeout_seconds)
        return engine
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return sa.create_engine(parsed, pool_pre_ping=True)
    if backend == "postgres":
        raise ConfigError(f"database.url: {postgres_hint(url)}")
    raise ConfigError(f"database.url: unsupported database {backend!r} (use sqlite or postgresql)")


def _private_file(path: Path) -> None:
    """Create the database file readable by its owner only (SQLite gives its -wal and
    -shm files the same mode): it holds every customer's mail."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                pass
    except OSError as exc:
        raise unwritable(Path(exc.filename or path), exc) from None
    # SQLite writes its -wal and -shm files beside the database
    for where in (path.parent, path):
        if not os.access(where, os.W_OK):
            raise unwritable(where, PermissionError(errno.EACCES, os.strerror(errno.EACCES)))


def _sqlite_events(engine: Engine, busy_timeout_seconds: float) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # take transaction control from the driver: we issue BEGIN IMMEDIATE
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_seconds * 1000)}")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # writers (transaction()) take the write lock up front; readers start a
        # deferred transaction, which WAL lets run beside a writer
        write = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def is_postgres(bind: Engine | Connection) -> bool:
    return bind.dialect.name == "postgresql"


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is unreachable or went away (not that it refused a row)."""
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError)):
        return True
    return isinstance(exc, sa.exc.DBAPIError) and bool(exc.connection_invalidated)


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One write transaction; database outages become DatabaseUnavailable."""
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(**{WRITE: True})
            with conn.begin():
                yield conn
    except sa.exc.DBAPIError as exc:
        if is_outage(exc):
            raise DatabaseUnavailable(f"database: {_short(exc)}") from exc
        raise


class QuickCommits:
    """One held connection whose small write transactions commit without waiting for the disk.

    A commit here is in the database's log when it returns (SQLite: written to the
    WAL, ``synchronous=NORMAL``; PostgreSQL: ``synchronous_commit=off``), so it
    survives a crash of this process; only a power cut (or a crash of the
    database's machine) can lose it, until a later ordinary commit or a
    ``durable=True`` one syncs the log.  For records written often whose loss
    costs little and is bounded by how often they are synced (delivery's "sent"
    marks).  Use as a context manager; the connection is handed back with the
    ordinary setting.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None

    def __enter__(self) -> QuickCommits:
        conn = self.engine.connect()
        try:
            self._set(conn, lazy=True)
        except BaseException:
            conn.close()
            raise
        self._conn = conn.execution_options(**{WRITE: True})
        return self

    def __exit__(self, *exc: object) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if conn.in_transaction():
                conn.rollback()
            self._set(conn, lazy=False)
        except Exception:
            conn.invalidate()  # never back in the pool with lazy commits
        finally:
            conn.close()

    @staticmethod
    def _set(conn: Connection, lazy: bool) -> None:
        if conn.dialect.name == "sqlite":
            # not inside a transaction (SQLite refuses), so past SQLAlchemy's autobegin
            driver: Any = conn.connection.driver_connection
            driver.execute(f"PRAGMA synchronous={'NORMAL' if lazy else 'FULL'}")
        else:
            conn.exec_driver_sql(f"SET synchronous_commit = {'off' if lazy else 'on'}")
            conn.commit()

    @contextmanager
    def transaction(self, durable: bool = False) -> Iterator[Connection]:
        """One write transaction on the held connection; ``durable`` syncs the log at its
        commit (and with it every quick commit before)."""
        conn = self._conn
        assert conn is not None, "QuickCommits used outside its with block"
        sqlite = conn.dialect.name == "sqlite"
        if durable and sqlite:
            self._set(conn, lazy=False)
        try:
            with conn.begin():
                if durable and not sqlite:
                    conn.exec_driver_sql("SET LOCAL synchronous_commit = on")
                yield conn
        finally:
            if durable and sqlite and not conn.invalidated:
                self._set(conn, lazy=True)


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A read-only connection; database outages become DatabaseUnavailable."""
    try:
        with engine.connect() as conn:
            yield conn
    except sa.exc.DBAPIError as exc:
        if is_outage(exc):
            raise DatabaseUnavailable(f"database: {_short(exc)}") from exc
        raise


def _unusable_file(exc: sa.exc.DBAPIError) -> bool:
    """SQLite cannot open or read the file: a wrong path or another file, which no retry mends
    (a locked database, by contrast, is busy and may be retried)."""
    return any(text in _short(exc) for text in ("unable to open database file", "file is not a database",
                                                 "readonly database"))


def _short(exc: sa.exc.DBAPIError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc).splitlines()[0]


def _alembic_config(conn: Connection | None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def in_models(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Autogenerate's filter: the full-text search objects are made by hand in migration 0004, not by the models."""
    return not (name or "").startswith(("kb_fts", "ix_kb_article_fts"))


def head_revision() -> str:
    script = ScriptDirectory.from_config(_alembic_config(None))
    head = script.get_current_head()
    assert head is not None
    return head


def pending_revisions(current: str | None) -> list[str]:
    """What `db upgrade` would apply from ``current``, oldest first ("0005: what it does");
    raises KeyError for a revision this mailcase does not know (a newer one's)."""
    script = ScriptDirectory.from_config(_alembic_config(None))
    if current is not None and script.get_revision(current) is None:
        raise KeyError(current)
    steps = list(script.iterate_revisions("head", current))
    return [f"{s.revision}: {(s.doc or '').strip().splitlines()[0] if s.doc else ''}".rstrip(": ")
            for s in reversed(steps)]


def read_only_engine(url: str) -> Engine | None:
    """An engine that cannot write: SQLite opened ``mode=ro`` (None when the file does not
    exist: nothing is created), PostgreSQL with read-only transactions."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError(f"database.url: not a database URL: {url!r}") from None
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            return None
        path = Path(parsed.database).absolute()
        if not path.is_file():
            return None
        uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
        return sa.create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False))
    engine = make_engine(url)
    if is_postgres(engine):
        return engine.execution_options(postgresql_readonly=True)
    return engine


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except sa.exc.OperationalError as exc:
        raise DatabaseUnavailable(f"database: {_short(exc)}") from exc


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Migrate to ``revision``; returns (before, after)."""
    before = current_revision(engine)
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(**{WRITE: True})
            with conn.begin():
                command.upgrade(_alembic_config(conn), revision)
    except sa.exc.OperationalError as exc:
        raise DatabaseUnavailable(f"database: {_short(exc)}") from exc
    return before, current_revision(engine) or ""


def open_engine(url: str, busy_timeout_seconds: float = 30.0) -> Engine:
    """An engine on a database at the current schema; creates a fresh one."""
    engine = make_engine(url, busy_timeout_seconds)
    try:
        current = current_revision(engine)
    except (DatabaseUnavailable, sa.exc.DatabaseError) as exc:
        cause = exc.__cause__ if isinstance(exc, DatabaseUnavailable) else exc
        if engine.dialect.name == "sqlite" and isinstance(cause, sa.exc.DBAPIError) and _unusable_file(cause):
            raise ConfigError(f"cannot use {engine.url.database}: {_short(cause)}; "
                              "set data_dir or database.url") from None
        raise
    head = head_revision()
    if current == head:
        return engine
    if current is None:
        with engine.connect() as conn:
            tables = sa.inspect(conn).get_table_names()
        if not tables:
            upgrade(engine)
            return engine
        raise ConfigError(
            f"database {engine.url.render_as_string(hide_password=True)}: "
            "has tables but no mailcase schema version; is it another application's database?"
        )
    raise ConfigError(
        f"database schema is at {current}, this mailcase needs {head}: run `mailcase db upgrade`"
    )


def insert_ignore(
    conn: Connection, table: sa.Table, rows: list[dict[str, Any]], keys: list[str]
) -> None:
    """INSERT ... ON CONFLICT (keys) DO NOTHING, on SQLite and PostgreSQL."""
    if not rows:
        return
    if is_postgres(conn):
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(pg_insert(table).on_conflict_do_nothing(index_elements=keys), rows)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        conn.execute(sqlite_insert(table).on_conflict_do_nothing(index_elements=keys), rows)
