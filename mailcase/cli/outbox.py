"""Mail out: ``mailcase outbox`` (what we owe or sent) and ``mailcase suppress`` (hard bounces)."""

from __future__ import annotations

import sys

import click

from mailcase.cli.context import AnyCase, Ctx, actor, pass_ctx
from mailcase.cli.output import as_data, echo, echo_json, fmt_time, json_option, short
from mailcase.core.errors import UsageError
from mailcase.core.states import OutboxStatus
from mailcase.domain.db import transaction
from mailcase.outbound.bounces import clear, suppressed
from mailcase.outbound.deliver import deliver_due
from mailcase.outbound.outbox import cancel_rows, get_row, list_outbox, retry_rows
from mailcase.outbound.transport import transport_for


@click.group()
def outbox() -> None:
    """Mail we owe or sent."""


@outbox.command("list")
@click.option("--status", type=AnyCase([s.value for s in OutboxStatus]))
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@json_option
@pass_ctx
def outbox_list(c: Ctx, status: str | None, limit: int, as_json: bool) -> None:
    """Outbox rows, newest last."""
    with c.engine.connect() as conn:
        rows = list_outbox(conn, status, limit)
    if as_json:
        echo_json(as_data(rows), ensure_ascii=False)
        return
    if not rows:
        echo("outbox is empty")
    for r in rows:
        echo(f"{r.id:>6} {r.status:<9} {r.kind:<24} {short(r.to_addr, 30):<30} {short(r.subject, 40)}"
                   + (f"  ({short(r.last_error, 50)})" if r.last_error else ""))


@outbox.command("show")
@click.argument("row_id", type=int)
@click.option("--raw", is_flag=True, help="Print the exact bytes queued.")
@json_option
@pass_ctx
def outbox_show(c: Ctx, row_id: int, raw: bool, as_json: bool) -> None:
    """One outbox row."""
    with c.engine.connect() as conn:
        r = get_row(conn, row_id)
    if as_json:  # the bytes only with --raw (as text)
        echo_json(as_data(r) | ({"raw": r.raw.decode("utf-8", "replace")} if raw else {}), ensure_ascii=False)
        return
    if raw:
        echo(r.raw.decode("utf-8", "replace"))
        return
    for label, value in (("key", r.key), ("kind", r.kind), ("status", r.status), ("to", r.to_addr),
                         ("envelope", r.envelope_from), ("message-id", r.message_id), ("subject", r.subject),
                         ("attempts", r.attempts), ("next attempt", fmt_time(r.next_attempt_at)),
                         ("created", fmt_time(r.created_at)), ("sent", fmt_time(r.sent_at)),
                         ("reason", r.status_reason or "-"), ("last error", r.last_error or "-")):
        echo(f"{label + ':':<14}{value}")


@outbox.command("retry")
@click.argument("row_ids", type=int, nargs=-1)
@click.option("--failed", "all_failed", is_flag=True, help="Every failed row.")
@pass_ctx
def outbox_retry(c: Ctx, row_ids: tuple[int, ...], all_failed: bool) -> None:
    """Queue rows again now (failed, capped or waiting for a retry)."""
    if all_failed == bool(row_ids):
        raise UsageError("give ROW_IDS or --failed")
    with transaction(c.engine) as conn:
        n = retry_rows(conn, None if all_failed else list(row_ids), c.clock.now())
    echo(f"{n} rows queued again")


@outbox.command("cancel")
@click.argument("row_ids", type=int, nargs=-1, required=True)
@pass_ctx
def outbox_cancel(c: Ctx, row_ids: tuple[int, ...]) -> None:
    """Never send these rows (queued, failed or capped ones)."""
    with transaction(c.engine) as conn:
        n = cancel_rows(conn, list(row_ids), actor())
    echo(f"{n} rows cancelled")


@outbox.command("deliver")
@pass_ctx
def outbox_deliver(c: Ctx) -> None:
    """Send what is due now through the configured transport (the service does this on its own)."""
    r = deliver_due(c.engine, transport_for(c.config, c.engine, c.clock), c.clock.now(), c.config)
    echo(f"sent {r.sent}, deferred {r.retried}, failed {r.failed}, capped {r.capped}, suppressed {r.suppressed}")
    if r.failed:
        sys.exit(1)


@click.group()
def suppress() -> None:
    """Addresses we never send to (hard bounces)."""


@suppress.command("list")
@json_option
@pass_ctx
def suppress_list(c: Ctx, as_json: bool) -> None:
    """Suppressed addresses with why and since when."""
    with c.engine.connect() as conn:
        rows = suppressed(conn)
    if as_json:
        echo_json(as_data(list(rows)), ensure_ascii=False)
        return
    if not rows:
        echo("no address is suppressed")
    for r in rows:
        echo(f"{r.address:<40} since {fmt_time(r.since_at)}  {r.reason}")


@suppress.command("clear")
@click.argument("address")
@pass_ctx
def suppress_clear(c: Ctx, address: str) -> None:
    """Send to ADDRESS again."""
    with transaction(c.engine) as conn:
        done = clear(conn, address, actor(), c.clock.now())
    if not done:
        raise UsageError(f"{address} is not suppressed")
    echo(f"{address}: no longer suppressed")


COMMANDS: list[click.Command] = [outbox, suppress]
