"""``mailcase review``: mail held for review (floods)."""

from __future__ import annotations

import click

from mailcase.cli.context import Ctx, actor, pass_ctx
from mailcase.cli.output import as_data, echo, echo_json, fmt_time, json_option, short
from mailcase.domain.db import transaction
from mailcase.rules.review import discard, held, release


@click.group()
def review() -> None:
    """Mail held for review (floods): list, release, discard."""


@review.command("list")
@json_option
@pass_ctx
def review_list(c: Ctx, as_json: bool) -> None:
    """Mail held for review, oldest first."""
    with c.engine.connect() as conn:
        rows = held(conn)
    if as_json:
        echo_json(as_data(list(rows)), ensure_ascii=False)
        return
    if not rows:
        echo("nothing is held for review")
    for r in rows:
        echo(f"#{r.id:<6} {fmt_time(r.received_at)}  {short(r.from_addr, 30):<30} "
                   f"{short(r.subject, 40):<40} {short(r.reason, 60)}")


@review.command("release")
@click.argument("message_ids", type=int, nargs=-1, required=True)
@pass_ctx
def review_release(c: Ctx, message_ids: tuple[int, ...]) -> None:
    """Release held mail: it joins the next cutoff as a request."""
    with transaction(c.engine) as conn:
        for pk in message_ids:
            release(conn, pk, c.clock.now(), actor())
    echo(f"released {len(message_ids)}")


@review.command("discard")
@click.argument("message_ids", type=int, nargs=-1, required=True)
@pass_ctx
def review_discard(c: Ctx, message_ids: tuple[int, ...]) -> None:
    """Discard held mail: kept, suppressed, never answered."""
    with transaction(c.engine) as conn:
        for pk in message_ids:
            discard(conn, pk, c.clock.now(), actor())
    echo(f"discarded {len(message_ids)}")


COMMANDS: list[click.Command] = [review]
