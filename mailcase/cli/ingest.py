"""Mail in: ``mailcase fetch`` (sync mailboxes once), ``parse`` and ``reprocess`` (import a source)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import date
from typing import Any

import click

from mailcase.cli.context import Ctx, parse_date, pass_ctx
from mailcase.cli.output import echo
from mailcase.core.errors import MailcaseError, UsageError
from mailcase.ingest.fetch import sync_mailbox
from mailcase.ingest.mailbox_state import record_failure
from mailcase.ingest.reprocess import ReprocessRequest, parse_uid_range
from mailcase.ingest.reprocess import reprocess as do_reprocess
from mailcase.ingest.stages import BackgroundParser, run_headers_stage, run_parse_stage


def _selected_mailboxes(c: Ctx, names: tuple[str, ...]) -> list[Any]:
    boxes = [m for m in c.config.mailboxes if m.enabled]
    if names:
        known = {m.name: m for m in c.config.mailboxes}
        missing = [n for n in names if n not in known]
        if missing:
            raise UsageError(f"no mailbox named {missing[0]!r} (configured: {', '.join(known) or 'none'})")
        boxes = [known[n] for n in names]
    if not boxes:
        raise UsageError("no mailbox configured")
    return boxes


@click.command()
@click.argument("mailboxes", nargs=-1, metavar="[MAILBOX]...")
@pass_ctx
def fetch(c: Ctx, mailboxes: tuple[str, ...]) -> None:
    """Sync configured mailboxes once: store new mail, do post-actions.

    With no MAILBOX, every enabled mailbox.  Exits non-zero if any failed.
    """
    failed: MailcaseError | None = None
    for cfg in _selected_mailboxes(c, mailboxes):
        now = c.clock.now()
        try:
            result = sync_mailbox(c.engine, c.config, cfg, now)
        except MailcaseError as exc:
            record_failure(c.engine, cfg.name, str(exc), now)
            if len(mailboxes) == 1 or len(c.config.mailboxes) == 1:
                raise
            echo(f"{cfg.name}: failed: {exc}", err=True)
            failed = exc
            continue
        echo(result.summary())
    if failed is not None:
        raise failed


@click.command()
@click.option("--workers", type=click.IntRange(1, 64), help="Parse worker processes (default: ingest.parse_workers).")
@pass_ctx
def parse(c: Ctx, workers: int | None) -> None:
    """Run the parse stage over stored mail that is not parsed yet."""
    n = workers or c.config.ingest.workers
    headers = run_headers_stage(c.engine, c.clock.now())
    if n > 1:
        with BackgroundParser(c.engine, c.clock, workers=n, pin_key=c.config.hmac_key()) as parser:
            result = parser.drain()
    else:
        result = run_parse_stage(c.engine, c.clock.now(), c.config.hmac_key())
    echo(
        f"parsed {result.done}, quarantined {result.quarantined + headers.quarantined}"
        + (f", headers re-read {headers.done}" if headers.done else "")
    )


@click.command()
@click.argument("source")
@click.option("--since", callback=parse_date, metavar="DATE", help="Only mail received on or after DATE (YYYY-MM-DD).")
@click.option("--uids", metavar="N[:M]", help="Only these UIDs (a configured IMAP mailbox).")
@click.option("--dry-run", is_flag=True, help="Show what would be stored; store nothing.")
@click.option(
    "--create-cases", is_flag=True,
    help="Treat imported mail as new requests instead of history (it may then be answered).",
)
@pass_ctx
def reprocess(
    c: Ctx, source: str, since: date | None, uids: str | None, dry_run: bool, create_cases: bool
) -> None:
    """Import SOURCE into the ledger: a configured mailbox, a Maildir, an mbox or a folder of .eml.

    Idempotent: mail already stored from the same source is counted as a
    duplicate and adds nothing.  Imported mail is historical (never a case,
    never answered) unless --create-cases.
    """
    req = ReprocessRequest(
        source=source, since=since, uid_range=parse_uid_range(uids) if uids else None,
        dry_run=dry_run, create_cases=create_cases,
    )
    progress: Callable[[int], None] | None = None
    bar = None
    on_total = None
    if sys.stderr.isatty():
        bar = click.progressbar(length=0, label="reprocessing", file=sys.stderr)
        bar.__enter__()

        def progress(n: int) -> None:
            bar.update(n)

        def on_total(n: int) -> None:
            bar.length = n

    try:
        what, tally = do_reprocess(c.engine, c.config, req, c.clock.now(), progress, on_total)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    prefix = "dry run, nothing stored: " if dry_run else ""
    echo(f"{prefix}{what}: {tally.summary()}")


COMMANDS: list[click.Command] = [fetch, parse, reprocess]
