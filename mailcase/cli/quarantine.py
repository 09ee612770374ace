"""``mailcase quarantine``: mail that failed at some stage."""

from __future__ import annotations

import click

from mailcase.cli.context import Ctx, pass_ctx
from mailcase.cli.output import as_data, echo, echo_json, fmt_time, json_option, short
from mailcase.core.errors import UsageError
from mailcase.domain.db import transaction
from mailcase.ingest.quarantine import get_entry, open_entries, retry, retry_all


@click.group()
def quarantine() -> None:
    """Mail that failed at some stage: list, show, retry."""


@quarantine.command("list")
@json_option
@pass_ctx
def quarantine_list(c: Ctx, as_json: bool) -> None:
    """Open quarantine entries."""
    with c.engine.connect() as conn:
        entries = open_entries(conn)
    if as_json:
        echo_json(as_data(list(entries)), ensure_ascii=False)
        return
    if not entries:
        echo("quarantine is empty")
        return
    for e in entries:
        echo(
            f"{e.id:>5}  message #{e.message_pk:<6} {e.stage:<8} {fmt_time(e.created_at)}  "
            f"{short(e.error_type + ': ' + e.error, 70)}"
        )


@quarantine.command("show")
@click.argument("entry_id", type=int)
@json_option
@pass_ctx
def quarantine_show(c: Ctx, entry_id: int, as_json: bool) -> None:
    """One entry with its error and traceback."""
    with c.engine.connect() as conn:
        e = get_entry(conn, entry_id)
    if as_json:
        echo_json(as_data(e), ensure_ascii=False)
        return
    echo(f"entry:     {e.id}")
    echo(f"message:   #{e.message_pk}  from {e.from_addr or '-'}  subject {short(e.subject, 60)!r}")
    echo(f"stage:     {e.stage}")
    echo(f"error:     {e.error_type}: {e.error}")
    echo(f"at:        {fmt_time(e.created_at)} (attempt {e.attempts})")
    echo(f"resolved:  {fmt_time(e.resolved_at)}")
    if e.traceback:
        echo("traceback:")
        echo(e.traceback.rstrip())


@quarantine.command("retry")
@click.argument("entry_id", type=int, required=False)
@click.option("--all", "all_", is_flag=True, help="Retry every open entry.")
@pass_ctx
def quarantine_retry(c: Ctx, entry_id: int | None, all_: bool) -> None:
    """Put a quarantined mail back before the stage that failed; the next run retries it."""
    if all_ == (entry_id is not None):
        raise UsageError("give an ENTRY_ID or --all")
    with transaction(c.engine) as conn:
        if all_:
            echo(f"{retry_all(conn, c.clock.now())} entries put back for retry")
        else:
            assert entry_id is not None
            state = retry(conn, entry_id, c.clock.now())
            echo(f"entry {entry_id}: message back in state {state}")


COMMANDS: list[click.Command] = [quarantine]
