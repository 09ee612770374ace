"""Stored mail: ``mailcase messages list`` and ``mailcase message show``."""

from __future__ import annotations

import click

from mailcase.cli.context import Ctx, pass_ctx
from mailcase.cli.output import echo_json, fmt_time, short
from mailcase.core.states import MessageState
from mailcase.ops.messages import list_messages, message_detail


@click.group()
def messages() -> None:
    """Stored mail."""


@messages.command("list")
@click.option("--state", type=click.Choice([s.value for s in MessageState]), help="Only this state.")
@click.option("--mailbox", help="Only mail from this mailbox.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@pass_ctx
def messages_list(c: Ctx, state: str | None, mailbox: str | None, limit: int) -> None:
    """The most recent stored mails."""
    with c.engine.connect() as conn:
        rows = list_messages(conn, state, limit, mailbox)
    for r in rows:
        click.echo(
            f"#{r.id:<6} {r.state:<12} {'hist' if r.historical else '    '} "
            f"{fmt_time(r.received_at):<21} {short(r.from_addr, 30):<30} {short(r.subject, 50)}"
        )
    if not rows:
        click.echo("no messages")


@click.group()
def message() -> None:
    """One stored mail."""


@message.command("show")
@click.argument("message_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def message_show(c: Ctx, message_id: int, as_json: bool) -> None:
    """Everything stored about a mail: headers read, copies, parse, quarantine."""
    with c.engine.connect() as conn:
        d = message_detail(conn, message_id)
    if as_json:
        echo_json(d, ensure_ascii=False)
        return
    m = d["message"]
    click.echo(f"message #{m['id']}  state {m['state']}{'  (historical)' if m['historical'] else ''}")
    click.echo(f"  Message-ID: {m['message_id']}{' (derived)' if m['message_id_derived'] else ''}")
    click.echo(f"  From:       {m['from_addr'] or '-'}{'' if m['from_strict'] else '  (not a single well-formed mailbox: never trusted)'}")
    click.echo(f"  Subject:    {m['subject'] or ''}")
    click.echo(f"  Date:       {fmt_time(m['date_at'])}")
    click.echo(f"  Received:   {fmt_time(m['received_at'])} (from {m['received_source']})")
    if m["in_reply_to"]:
        click.echo(f"  In-Reply-To: {m['in_reply_to']}")
    click.echo("copies:")
    for cp in d["copies"]:
        post = ""
        if cp["post_action"]:
            post = f", post-action {cp['post_action']} " + ("done" if cp["post_action_done_at"] else "owed")
        trunc = f", headers only (server size {cp['truncated_from']})" if cp["truncated_from"] else ""
        click.echo(f"  {cp['source']} {cp['source_key']}: {cp['size']} bytes{trunc}{post}")
    p = d["parsed"]
    if p:
        click.echo(f"parsed by {p['parser']}: {len(p['text_body'])} characters"
                   f"{' (from HTML)' if p['body_from_html'] else ''}, {len(p['attachments'])} attachments")
        for a in p["attachments"]:
            click.echo(f"  attachment {a['name']} ({a['content_type']}, {a['size']} bytes)")
        if p["defects"]:
            click.echo(f"  defects: {'; '.join(p['defects'])}")
    for q in d["quarantine"]:
        click.echo(f"quarantine {q['id']}: {q['stage']}: {q['error_type']}: {short(q['error'], 80)}"
                   f"{' (retried)' if q['resolved_at'] else ''}")
    cls = d["classification"]
    if cls:
        extra = []
        if cls["sender"]:
            extra.append(f"requester {cls['sender']}{' (eligible)' if cls['eligible'] else ''}")
        if cls["no_auto_reply"]:
            extra.append("no automatic reply")
        if cls["notice"]:
            extra.append(f"notice {cls['notice']} " + ("allowed" if cls["notice_allowed"] else
                                                         f"withheld ({cls['notice_withheld_reason'] or 'no reason'})"))
        extra.append(f"severity {cls['severity']}")
        if cls["flags"]:
            extra.append("flags " + ", ".join(cls["flags"]))
        click.echo(f"disposition: {cls['disposition']} ({cls['phase']}): " + "; ".join(extra))
    for o in d["outgoing"]:
        click.echo(f"outgoing #{o['id']}: {o['kind']} to {o['to_addr']}: {o['status']}"
                   + (f" ({o['status_reason']})" if o["status_reason"] else ""))
    phase = None
    for v in d["verdicts"]:
        if v["phase"] != phase:
            phase = v["phase"]
            click.echo(f"verdicts ({phase}):")
        disp = f" -> {v['disposition']}" if v["disposition"] else ""
        click.echo(f"  {v['rule']}: {v['name']}{disp}: {v['reason']}")


COMMANDS: list[click.Command] = [messages, message]
