"""Retention: ``mailcase purge`` (old mail's contents) and ``mailcase erase`` (a person's data)."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime

import click

from mailcase.cli.context import Ctx, parse_date, pass_ctx
from mailcase.cli.output import echo
from mailcase.domain.db import WRITE, transaction
from mailcase.ops.retention import erase as do_erase
from mailcase.ops.retention import purge as do_purge
from mailcase.ops.retention import purgeable


@click.command()
@click.option("--before", "before", callback=parse_date, required=True, metavar="DATE",
              help="Mail received before DATE (YYYY-MM-DD).")
@click.option("--dry-run", is_flag=True, help="Count what would go; remove nothing.")
@click.option("--raw/--no-raw", default=True, help="Remove the raw mail (default yes).")
@click.option("--text/--no-text", default=True, help="Remove the parsed text (default yes).")
@pass_ctx
def purge(c: Ctx, before: date, dry_run: bool, raw: bool, text: bool) -> None:
    """Remove raw mail and text of mail received before DATE (never of an open case; counts stay)."""
    when = datetime(before.year, before.month, before.day, tzinfo=UTC)
    if dry_run:
        with c.engine.connect() as conn:
            echo(f"dry run: {len(purgeable(conn, when))} mails received before {before} could be purged")
        return
    with transaction(c.engine) as conn:
        r = do_purge(conn, when, raw=raw, text=text)
    echo(f"purged {r.summary()}")


@click.command()
@click.option("--address", required=True, help="The person's mail address.")
@click.option("--dry-run", is_flag=True, help="Count what would be erased.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def erase(c: Ctx, address: str, dry_run: bool, yes: bool) -> None:
    """Erase a person's mail and personal data (rows and counts stay, contents go)."""
    if dry_run:
        with c.engine.connect() as conn:
            conn = conn.execution_options(**{WRITE: True})
            trans = conn.begin()
            r = do_erase(conn, address, c.clock.now())
            trans.rollback()
        echo(f"dry run: would erase {r.summary()} of {address}")
        return
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("erase needs --yes when not run on a terminal")
        if not click.confirm(f"erase everything about {address}?"):
            raise click.Abort()
    with transaction(c.engine) as conn:
        r = do_erase(conn, address, c.clock.now())
    echo(f"erased {r.summary()} of {address}")


COMMANDS: list[click.Command] = [purge, erase]
