"""``mailcase db``: create, upgrade and show the database schema; back it up and restore it."""

from __future__ import annotations

from pathlib import Path

import click

from mailcase.cli.context import Ctx, pass_ctx
from mailcase.cli.output import echo
from mailcase.domain.db import current_revision, head_revision, make_engine
from mailcase.domain.db import upgrade as db_upgrade
from mailcase.ops.backup import backup_sqlite, pg_backup_command, pg_restore_commands, restore_sqlite, sqlite_path


@click.group()
def db() -> None:
    """Database schema: create, upgrade, show version; backup and restore."""


@db.command("upgrade")
@pass_ctx
def db_upgrade_cmd(c: Ctx) -> None:
    """Create the schema or migrate it to this version of mailcase."""
    engine = make_engine(c.config.database_url, c.config.database.busy_timeout_seconds)
    before, after = db_upgrade(engine)
    if before == after:
        echo(f"database already at {after}")
    else:
        echo(f"database upgraded from {before or 'empty'} to {after}")


@db.command("status")
@pass_ctx
def db_status(c: Ctx) -> None:
    """Show the database URL, its schema version and the version this code needs."""
    engine = make_engine(c.config.database_url, c.config.database.busy_timeout_seconds)
    echo(f"url:      {engine.url.render_as_string(hide_password=True)}")
    echo(f"schema:   {current_revision(engine) or 'empty'}")
    echo(f"needs:    {head_revision()}")


@db.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@pass_ctx
def db_backup(c: Ctx, file: Path, force: bool) -> None:
    """Copy the database to FILE (mode 0600), consistent while mailcase runs.

    With PostgreSQL, print the pg_dump command to run instead."""
    url = c.config.database_url
    db_file = sqlite_path(url)
    if db_file is None:
        echo("PostgreSQL: back up with pg_dump (the password is masked: give it in ~/.pgpass or PGPASSWORD):")
        echo(pg_backup_command(url, file))
        return
    backup_sqlite(db_file, file, force)
    echo(f"backed up {db_file} to {file}")


@db.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Restore even though a mailcase process holds a lease.")
@pass_ctx
def db_restore(c: Ctx, file: Path, force: bool) -> None:
    """Replace the database by the backup FILE; the current one is kept as <db>.before-restore.

    Stop mailcase first.  With PostgreSQL, print the pg_restore and psql commands instead."""
    url = c.config.database_url
    db_file = sqlite_path(url)
    if db_file is None:
        echo("PostgreSQL: restore a pg_dump --format=custom file with pg_restore, a plain SQL dump with psql "
             "(the password is masked):")
        for command in pg_restore_commands(url, file):
            echo(command)
        return
    restored = restore_sqlite(file, db_file, force)
    echo(f"restored {file} (schema {restored.revision}) into {db_file}")
    if restored.before is not None:
        echo(f"the database it replaced is kept as {restored.before}")
    if restored.revision != head_revision():
        echo(f"this mailcase needs schema {head_revision()}: run `mailcase db upgrade` before starting it")


COMMANDS: list[click.Command] = [db]
