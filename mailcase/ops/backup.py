"""Backup and restore of the database: SQLite copied online and put back atomically; for PostgreSQL, the command to run."""

from __future__ import annotations

import os
import shlex
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic.script import ScriptDirectory

from mailcase.core.errors import ConfigError, LeaseHeld, UsageError
from mailcase.domain.db import MIGRATIONS, make_engine
from mailcase.domain.lease import holders

#: the first 16 bytes of every SQLite database file
SQLITE_HEADER = b"SQLite format 3\x00"
#: how long a restore waits for the current database to be free before refusing
IN_USE_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Restored:
    """What ``restore_sqlite`` did: the revision put back and where the previous database went."""

    revision: str
    before: Path | None


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL; None for PostgreSQL."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    if not parsed.database or parsed.database == ":memory:":
        raise ConfigError("database.url: an in-memory SQLite database has nothing to back up or restore")
    return Path(parsed.database)


def libpq_url(url: str) -> str:
    """The URL as pg_dump and psql take it (no driver suffix), password shown as ***."""
    parsed = sa.engine.make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=True)


def pg_backup_command(url: str, target: Path) -> str:
    return f"pg_dump --format=custom --file={shlex.quote(str(target))} --dbname={shlex.quote(libpq_url(url))}"


def pg_restore_commands(url: str, source: Path) -> list[str]:
    """pg_restore for a custom-format dump (what ``pg_backup_command`` writes), psql for a plain SQL one."""
    dbname, path = shlex.quote(libpq_url(url)), shlex.quote(str(source))
    return [f"pg_restore --clean --if-exists --no-owner --dbname={dbname} {path}",
            f"psql --single-transaction --dbname={dbname} --file={path}"]


def known_revisions() -> set[str]:
    return {script.revision for script in ScriptDirectory(str(MIGRATIONS)).walk_revisions()}


def _private_temp(beside: Path) -> Path:
    """A new empty file (mode 0600) in ``beside``'s folder, to be renamed onto it."""
    temp = beside.with_name(f".{beside.name}.{os.getpid()}.tmp")
    try:
        temp.unlink(missing_ok=True)
        os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        raise UsageError(f"cannot write {beside}: {(exc.strerror or str(exc)).lower()}") from None
    return temp


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy(source: sqlite3.Connection, target: Path) -> None:
    """Copy ``source`` with SQLite's backup API (one read transaction: a consistent snapshot,
    WAL included) into the empty file ``target``, as one self-contained file, synced."""
    dest = sqlite3.connect(target)
    try:
        source.backup(dest)
        dest.execute("PRAGMA journal_mode=DELETE")
    finally:
        dest.close()
    _fsync(target)


def _install(temp: Path, target: Path) -> None:
    os.replace(temp, target)
    _fsync(target.parent)


def _open_existing(path: Path, what: str, read_only: bool = False) -> sqlite3.Connection:
    if not path.is_file():
        raise UsageError(f"no {what} at {path}")
    mode = "ro" if read_only else "rw"
    return sqlite3.connect(f"file:{path}?mode={mode}", uri=True, timeout=IN_USE_TIMEOUT_SECONDS,
                           isolation_level=None)


def backup_sqlite(db: Path, target: Path, force: bool = False) -> None:
    """Write a consistent copy of the database at ``db`` to ``target`` (mode 0600) while it is in use."""
    if target.exists() and not force:
        raise UsageError(f"{target} exists: give another file or --force to overwrite it")
    source = _open_existing(db, "database")
    temp = _private_temp(target)
    try:
        _copy(source, temp)
        _install(temp, target)
    except sqlite3.DatabaseError as exc:
        raise UsageError(f"cannot back up {db}: {exc}") from None
    finally:
        source.close()
        temp.unlink(missing_ok=True)


def _revision(copy: Path, source: Path) -> str:
    """The schema revision of a mailcase database; refuses any other file."""
    conn = sqlite3.connect(copy)
    try:
        if conn.execute("PRAGMA quick_check").fetchone() != ("ok",):
            raise UsageError(f"{source} is damaged (PRAGMA quick_check fails): not restored")
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError as exc:
        raise UsageError(f"{source} is not a mailcase database ({exc})") from None
    finally:
        conn.close()
    if row is None or row[0] not in known_revisions():
        raise UsageError(f"{source} is not a mailcase database this version knows "
                         f"(schema {row[0] if row else 'none'})")
    return str(row[0])


def check_no_leases(db: Path) -> None:
    """Refuse while a process holds a live lease on the database (a running daemon)."""
    engine = make_engine(f"sqlite:///{db}", IN_USE_TIMEOUT_SECONDS)
    try:
        held = holders(engine)
    except sa.exc.OperationalError:
        held = []  # no lease table: not a daemon's database yet
    finally:
        engine.dispose()
    if held:
        name, holder, until = held[0]
        raise LeaseHeld(f"{name} is held by {holder} until {until:%Y-%m-%d %H:%M:%S} UTC: stop mailcase "
                        "first (--force if that process is gone)")


def _retire(db: Path) -> Path:
    """Copy the current database to ``<db>.before-restore`` and leave ``db`` without a WAL file
    (a stale ``-wal`` beside the restored file would be replayed into it)."""
    before = db.with_name(db.name + ".before-restore")
    current = _open_existing(db, "database")
    temp = _private_temp(before)
    try:
        _copy(current, temp)
        _install(temp, before)
        mode = current.execute("PRAGMA journal_mode=DELETE").fetchone()
    except sqlite3.OperationalError as exc:
        raise LeaseHeld(f"{db} is in use ({exc}): stop mailcase first") from None
    finally:
        current.close()
        temp.unlink(missing_ok=True)
    if mode != ("delete",) or Path(f"{db}-wal").exists():
        raise LeaseHeld(f"{db} is in use by another process: stop mailcase first")
    return before


def restore_sqlite(source: Path, db: Path, force: bool = False) -> Restored:
    """Replace the database at ``db`` by the mailcase database ``source``, atomically; the one
    replaced is kept as ``<db>.before-restore``."""
    if not source.is_file():
        raise UsageError(f"no backup at {source}")
    with source.open("rb") as f:
        if f.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise UsageError(f"{source} is not a mailcase database (not an SQLite file)")
    if db.exists() and not force:
        check_no_leases(db)
    db.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = _private_temp(db)
    try:
        backup = _open_existing(source, "backup", read_only=True)
        try:
            _copy(backup, temp)
        except sqlite3.DatabaseError as exc:
            raise UsageError(f"{source} is not a mailcase database ({exc})") from None
        finally:
            backup.close()
        revision = _revision(temp, source)
        before = _retire(db) if db.exists() else None
        _install(temp, db)
    finally:
        temp.unlink(missing_ok=True)
    return Restored(revision, before)
