"""``mailcase render``: preview a mail for a case from the templates."""

from __future__ import annotations

import click

from mailcase.cli.context import AnyCase, Ctx, pass_ctx
from mailcase.cli.output import echo
from mailcase.core.states import MailKind
from mailcase.outbound.staffmail import preview
from mailcase.rules.base import Notice


@click.command()
@click.argument("kind", type=AnyCase([MailKind.ACK.value, MailKind.NOTICE.value, MailKind.REPLY.value]))
@click.option("--case", "number", type=int, required=True, help="Render for this case.")
@click.option("--notice", "notice_kind", default=Notice.UNKNOWN_SENDER.value, show_default=True,
              type=AnyCase([n.value for n in Notice]), help="For KIND=notice: which notice.")
@click.option("--html", is_flag=True, help="Print the HTML part instead of the text.")
@pass_ctx
def render(c: Ctx, kind: str, number: int, notice_kind: str, html: bool) -> None:
    """Preview a mail for a case from the templates (nothing is queued)."""
    with c.engine.connect() as conn:
        rendered = preview(conn, c.config, MailKind(kind), number, notice_kind, c.clock.now())
    echo(f"Subject: {rendered.subject}")
    echo("")
    echo(rendered.html if html else rendered.text)


COMMANDS: list[click.Command] = [render]
