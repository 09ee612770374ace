"""Cutoffs: ``mailcase calendar`` (when they fall) and ``batch`` (close the due ones)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import click

from mailcase.cli.context import Ctx, parse_date, pass_ctx
from mailcase.cli.output import echo
from mailcase.core.errors import UsageError
from mailcase.cutoff.batch import run_due
from mailcase.domain.calendar import BusinessCalendar
from mailcase.mail.subjects import case_label


@click.command("calendar")
@click.option("--from", "from_date", callback=parse_date, metavar="DATE",
              help="List cutoffs from the start of DATE (YYYY-MM-DD, calendar zone); default: now.")
@click.option("--count", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="How many cutoffs to list.")
@pass_ctx
def calendar_cmd(c: Ctx, from_date: date | None, count: int) -> None:
    """The next cutoffs: when pending mail becomes cases (local time and UTC)."""
    cal = BusinessCalendar(c.config.calendar)
    if from_date is None:
        start = c.clock.now()
    else:
        # upcoming() is strictly after start: back off 1 µs so a 00:00 cutoff is listed
        start = datetime(from_date.year, from_date.month, from_date.day, tzinfo=cal.zone)
        start = start.astimezone(UTC) - timedelta(microseconds=1)
    cfg = cal.config
    echo(f"zone {cfg.zone}; cutoffs {', '.join(cfg.cutoffs)}; holidays {cfg.holidays or 'none'}")
    for local, at in cal.upcoming(start, count):
        echo(f"{local:%a %Y-%m-%d %H:%M %Z (UTC%z)}   {at:%Y-%m-%d %H:%M} UTC")


@click.command()
@click.option("--dry-run", is_flag=True, help="Show what the next due cutoff would do; change nothing.")
@click.option("--now", "now_", is_flag=True, help="Run every due cutoff now (the service does this on its own).")
@pass_ctx
def batch(c: Ctx, dry_run: bool, now_: bool) -> None:
    """Close due cutoffs: pending mail becomes cases, acknowledgements and notices are queued."""
    if dry_run == now_:
        raise UsageError("give --dry-run or --now")
    run = run_due(c.engine, c.config, c.clock, dry_run=dry_run)
    for r in run.results:
        echo(("dry run: " if dry_run else "") + r.summary())
        if dry_run and r.cases:
            echo(f"  would create cases {case_label(r.cases[0])}..{case_label(r.cases[-1])}")
    if run.waiting:
        echo(run.waiting)
    elif not run.results:
        nxt = run.next_cutoff
        echo("no cutoff is due" + (f"; next at {nxt:%Y-%m-%d %H:%M} UTC" if nxt else ""))


COMMANDS: list[click.Command] = [calendar_cmd, batch]
