"""``mailcase db``: create, upgrade and show the database schema."""

from __future__ import annotations

import click

from mailcase.cli.context import Ctx, pass_ctx
from mailcase.cli.output import echo
from mailcase.domain.db import current_revision, head_revision, make_engine
from mailcase.domain.db import upgrade as db_upgrade


@click.group()
def db() -> None:
    """Database schema: create, upgrade, show version."""


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


COMMANDS: list[click.Command] = [db]
