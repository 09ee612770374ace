"""Stored mail: ``mailcase messages list``, ``mailcase message show|raw|attachments``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mailcase.cli.context import AnyCase, Ctx, pass_ctx
from mailcase.cli.output import as_data, echo, echo_json, fmt_time, json_option, printable, short
from mailcase.core.states import MessageState
from mailcase.ops.attachments import attachments, raw_mail, save_attachments
from mailcase.ops.messages import list_messages, message_detail


@click.group()
def messages() -> None:
    """Stored mail."""


@messages.command("list")
@click.option("--state", type=AnyCase([s.value for s in MessageState]), help="Only this state.")
@click.option("--mailbox", help="Only mail from this mailbox.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@json_option
@pass_ctx
def messages_list(c: Ctx, state: str | None, mailbox: str | None, limit: int, as_json: bool) -> None:
    """The most recent stored mails."""
    with c.engine.connect() as conn:
        rows = list_messages(conn, state, limit, mailbox)
    if as_json:
        echo_json(as_data(rows), ensure_ascii=False)
        return
    for r in rows:
        echo(
            f"#{r.id:<6} {r.state:<12} {'hist' if r.historical else '    '} "
            f"{fmt_time(r.received_at):<21} {short(r.from_addr, 30):<30} {short(r.subject, 50)}"
        )
    if not rows:
        echo("no messages")


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
    echo(f"message #{m['id']}  state {m['state']}{'  (historical)' if m['historical'] else ''}")
    echo(f"  Message-ID: {printable(m['message_id'])}{' (derived)' if m['message_id_derived'] else ''}")
    echo(f"  From:       {printable(m['from_addr']) or '-'}{'' if m['from_strict'] else '  (not a single well-formed mailbox: never trusted)'}")
    echo(f"  Subject:    {printable(m['subject'])}")
    echo(f"  Date:       {fmt_time(m['date_at'])}")
    echo(f"  Received:   {fmt_time(m['received_at'])} (from {m['received_source']})")
    if m["in_reply_to"]:
        echo(f"  In-Reply-To: {printable(m['in_reply_to'])}")
    echo("copies:")
    for cp in d["copies"]:
        post = ""
        if cp["post_action"]:
            post = f", post-action {cp['post_action']} " + ("done" if cp["post_action_done_at"] else "owed")
        trunc = f", headers only (server size {cp['truncated_from']})" if cp["truncated_from"] else ""
        echo(f"  {cp['source']} {cp['source_key']}: {cp['size']} bytes{trunc}{post}")
    p = d["parsed"]
    if p:
        echo(f"parsed by {p['parser']}: {len(p['text_body'])} characters"
                   f"{' (from HTML)' if p['body_from_html'] else ''}, {len(p['attachments'])} attachments")
        for a in p["attachments"]:
            echo(f"  attachment {printable(a['name'])} ({printable(a['content_type'])}, {a['size']} bytes)")
        if p["defects"]:
            echo(f"  defects: {'; '.join(p['defects'])}")
    for q in d["quarantine"]:
        echo(f"quarantine {q['id']}: {q['stage']}: {q['error_type']}: {short(q['error'], 80)}"
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
        echo(f"disposition: {cls['disposition']} ({cls['phase']}): " + "; ".join(extra))
    for o in d["outgoing"]:
        echo(f"outgoing #{o['id']}: {o['kind']} to {o['to_addr']}: {o['status']}"
                   + (f" ({o['status_reason']})" if o["status_reason"] else ""))
    phase = None
    for v in d["verdicts"]:
        if v["phase"] != phase:
            phase = v["phase"]
            echo(f"verdicts ({phase}):")
        disp = f" -> {v['disposition']}" if v["disposition"] else ""
        echo(f"  {v['rule']}: {v['name']}{disp}: {printable(v['reason'])}")


@message.command("raw")
@click.argument("message_id", type=int)
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Write to this file (default: standard output).")
@pass_ctx
def message_raw(c: Ctx, message_id: int, output: Path | None) -> None:
    """The original mail, byte for byte (PINs included: it is what the sender wrote)."""
    with c.engine.connect() as conn:
        data = raw_mail(conn, message_id)
    if output is None:
        sys.stdout.flush()  # binary-safe: the bytes as they are, past any text encoding
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    output.write_bytes(data)
    echo(f"message #{message_id}: {len(data):,} bytes written to {output}", err=True)


@message.command("attachments")
@click.argument("message_id", type=int)
@click.option("--save", "save_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write them into this directory (safe names, never overwriting a file).")
@json_option
@pass_ctx
def message_attachments(c: Ctx, message_id: int, save_dir: Path | None, as_json: bool) -> None:
    """A mail's attachments (name, type, size); with --save, written out."""
    with c.engine.connect() as conn:
        items = attachments(conn, message_id)
    saved = save_attachments(items, save_dir) if save_dir is not None else [(a, None) for a in items]
    if as_json:
        echo_json([{"name": a.name, "content_type": a.content_type, "size": a.size,
                    **({"saved_as": str(save_dir / f) if f else None} if save_dir is not None else {})}
                   for a, f in saved], ensure_ascii=False)
        return
    if not items:
        echo(f"message #{message_id} has no attachments")
    for a, f in saved:
        where = ""
        if save_dir is not None:
            where = f"  -> {save_dir / f}" if f else "  (not saved: its bytes were not read into memory)"
        echo(f"{printable(a.name)}  ({printable(a.content_type)}, {a.size:,} bytes){where}")


COMMANDS: list[click.Command] = [messages, message]
