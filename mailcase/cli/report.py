"""``mailcase report``: cutoffs, the promise, breaches, severities, tiers, abuse flags."""

from __future__ import annotations

from datetime import UTC, date, datetime

import click

from mailcase.cli.context import AnyCase, Ctx, parse_date, pass_ctx
from mailcase.cli.output import echo
from mailcase.ops import report as reports


@click.command()
@click.option("--since", callback=parse_date, metavar="DATE", help="Only from DATE (YYYY-MM-DD).")
@click.option("--format", "fmt", type=AnyCase(["text", "csv", "json"]), default="text", show_default=True)
@pass_ctx
def report(c: Ctx, since: date | None, fmt: str) -> None:
    """Cutoffs, the 24/48-hour promise, breaches, severities, tiers, abuse flags."""
    start = datetime(since.year, since.month, since.day, tzinfo=UTC) if since else None
    with c.engine.connect() as conn:
        r = reports.build(conn, c.clock.now(), start)
    echo({"text": reports.as_text, "csv": reports.as_csv, "json": reports.as_json}[fmt](r))


COMMANDS: list[click.Command] = [report]
