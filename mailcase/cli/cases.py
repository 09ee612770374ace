"""Cases: ``mailcase cases`` (list, show) and ``mailcase case`` (work one)."""

from __future__ import annotations

import mimetypes
import sys
from pathlib import Path
from typing import Any

import click

from mailcase.cli.context import AnyCase, Ctx, actor, pass_ctx
from mailcase.cli.output import echo, echo_json, fmt_time, json_option, printable, short
from mailcase.core.errors import UsageError
from mailcase.core.states import CaseEventKind, CaseStatus, Tier
from mailcase.domain.cases import assign, escalate, get_case, list_cases, reopen, set_status
from mailcase.domain.casework import add_note, merge_cases, set_severity, waiting_cases
from mailcase.domain.db import transaction
from mailcase.mail.subjects import case_label
from mailcase.ops.conversation import case_dict, conversation
from mailcase.outbound.compose import OutgoingAttachment
from mailcase.outbound.staffmail import queue_reply
from mailcase.outbound.staffnews import notify_assigned, notify_escalated
from mailcase.outbound.surveys import resolve


@click.group()
def cases() -> None:
    """Cases: list and show."""


@cases.command("list")
@click.option("--status", type=AnyCase([s.value for s in CaseStatus]))
@click.option("--account", help="Account code.")
@click.option("--owner", help="Specialist name.")
@click.option("--severity", type=click.IntRange(1, 4))
@click.option("--breached", is_flag=True, help="Only cases past the 48-hour promise without a receipt in time.")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
@json_option
@pass_ctx
def cases_list(c: Ctx, status: str | None, account: str | None, owner: str | None, severity: int | None,
               breached: bool, limit: int, as_json: bool) -> None:
    """Cases, open ones first, by when the answer is due (then priority and number).
    WAIT: the case waits for a human reply (never answered, or the customer wrote since)."""
    with c.engine.connect() as conn:
        rows = list_cases(conn, status=status, account=account, owner=owner, severity=severity,
                          breached=breached, now=c.clock.now(), limit=limit)
        waiting = waiting_cases(conn, [r.id for r in rows])
    if as_json:
        echo_json([{**case_dict(r), "waiting": r.id in waiting} for r in rows], ensure_ascii=False)
        return
    if not rows:
        echo("no cases")
    for r in rows:
        echo(f"{case_label(r.number)} {r.status:<13} {'WAIT' if r.id in waiting else '    '} S{r.severity} "
                   f"{r.tier:<5} due {fmt_time(r.ack_due_at):<21} {short(r.account or '-', 10):<10} "
                   f"{short(r.owner or '-', 12):<12} {short(r.requester, 28):<28} {short(r.subject, 40)}"
                   + (f"  [{', '.join(r.flags)}]" if r.flags else ""))


@cases.command("show")
@click.argument("number", type=int)
@click.option("--full", is_flag=True, help="Each mail's whole text, quoted history included.")
@json_option
@pass_ctx
def cases_show(c: Ctx, number: int, full: bool, as_json: bool) -> None:
    """One case: fields, the conversation in order (what the customer wrote, staff notes,
    what was sent, attachments), events.  PINs are never shown."""
    with c.engine.connect() as conn:
        d = conversation(conn, number, full)
        waiting = bool(waiting_cases(conn, [d["case"].id]))
    if as_json:
        echo_json({"case": {**case_dict(d["case"]), "waiting": waiting, "merged_into": d["merged_into"]},
                   "conversation": d["conversation"], "events": d["events"]}, ensure_ascii=False)
        return
    v = d["case"]
    echo(f"case {case_label(v.number)}  {v.status}  severity {v.severity}  priority {v.priority}  tier {v.tier}")
    echo(f"  subject:    {v.subject}")
    echo(f"  requester:  {v.requester}  account {v.account or '-'}  owner {v.owner or '-'}")
    if v.flags:
        echo(f"  flags:      {', '.join(v.flags)}")
    for label, value in (("received", v.received_at), ("processed", v.processed_at), ("answer due", v.ack_due_at),
                         ("answer by", v.ack_breach_at), ("ack sent", v.receipt_sent_at),
                         ("answered", v.first_response_at), ("first staff", v.first_staff_action_at),
                         ("resolved", v.resolved_at), ("closed", v.closed_at)):
        echo(f"  {label + ':':<12}{fmt_time(value)}")
    if waiting:
        echo("  waiting:    for a human reply")
    if d["merged_into"] is not None:
        echo(f"  merged:     into {case_label(d['merged_into'])} (its mail and replies are there)")
    echo("conversation:")
    for item in d["conversation"]:
        _echo_item(item)
    echo("events:")
    for e in d["events"]:
        detail = short(e["detail"], 100) if e["kind"] == CaseEventKind.NOTE else e["detail"]
        echo(f"  {fmt_time(e['at'])}  {e['actor']:<12} {e['kind']}{': ' + detail if detail else ''}")


def _echo_text(text: str) -> None:
    for line in printable(text or "(no text)").splitlines() or [""]:
        echo(f"    | {line}")


def _echo_item(item: dict[str, Any]) -> None:
    at = fmt_time(item["at"])
    if item["type"] == "mail":
        echo(f"  {at}  mail #{item['message']} ({item['role']}) from {item['from'] or '-'}: "
                   f"{short(item['subject'], 60)}" + ("  [quoted history trimmed: --full]" if item["trimmed"] else ""))
        _echo_text(item["text"])
        for a in item["attachments"]:
            echo(f"    attachment {printable(a['name'])} ({printable(a['content_type'])}, {a['size']:,} bytes)")
    elif item["type"] == "note":
        echo(f"  {at}  note by {item['by']}")
        _echo_text(item["text"])
    else:
        echo(f"  {at}  sent #{item['outbox']} {item['kind']} to {item['to']}: {item['status']}: "
                   f"{short(item['subject'], 60)}")
        _echo_text(item["text"])


@click.group()
def case() -> None:
    """Work a case: assign, reply, escalate, resolve, close, reopen."""


@case.command("assign")
@click.argument("number", type=int)
@click.argument("specialist")
@pass_ctx
def case_assign(c: Ctx, number: int, specialist: str) -> None:
    """Give the case to a specialist."""
    with transaction(c.engine) as conn:
        assign(conn, number, specialist, c.clock.now(), actor())
        notify_assigned(conn, c.config, get_case(conn, number).id, c.clock.now())
    echo(f"case {case_label(number)}: owner {specialist}")


@case.command("escalate")
@click.argument("number", type=int)
@click.option("--to", "tier", required=True,
              type=AnyCase([t.value for t in Tier if t is not Tier.SSI]))
@click.option("--note", default="", help="Why.")
@pass_ctx
def case_escalate(c: Ctx, number: int, tier: str, note: str) -> None:
    """Raise the case's tier; the owner stays (the first specialist keeps ownership)."""
    with transaction(c.engine) as conn:
        before = escalate(conn, number, tier, c.clock.now(), actor(), note)
        notify_escalated(conn, c.config, number, tier, c.clock.now())
    echo(f"case {case_label(number)}: {before} -> {tier.upper()}, owner unchanged")


@case.command("progress")
@click.argument("number", type=int)
@pass_ctx
def case_progress(c: Ctx, number: int) -> None:
    """Mark the case in progress."""
    with transaction(c.engine) as conn:
        set_status(conn, number, CaseStatus.IN_PROGRESS, c.clock.now(), actor())
    echo(f"case {case_label(number)}: in-progress")


@case.command("resolve")
@click.argument("number", type=int)
@click.option("--note", required=True, help="The resolution (sent to the requester).")
@pass_ctx
def case_resolve(c: Ctx, number: int, note: str) -> None:
    """Resolve the case: queue the resolution mail, and the survey after its delay."""
    with transaction(c.engine) as conn:
        _, no_survey = resolve(conn, c.config, number, note, c.clock.now(), actor())
    echo(f"case {case_label(number)}: resolved, resolution mail queued; "
               + (f"no survey: {no_survey}" if no_survey else
                  f"survey follows in {c.config.surveys.delay_hours:g} h"))


@case.command("close")
@click.argument("number", type=int)
@pass_ctx
def case_close(c: Ctx, number: int) -> None:
    """Close the case (its solution is verified)."""
    with transaction(c.engine) as conn:
        set_status(conn, number, CaseStatus.CLOSED, c.clock.now(), actor())
    echo(f"case {case_label(number)}: closed")


@case.command("reopen")
@click.argument("number", type=int)
@pass_ctx
def case_reopen(c: Ctx, number: int) -> None:
    """Reopen a resolved or closed case."""
    with transaction(c.engine) as conn:
        reopen(conn, number, c.clock.now(), actor())
    echo(f"case {case_label(number)}: reopened (in-progress)")


#: what one reply may attach, in all (a mail of more is refused by many servers)
MAX_ATTACH_BYTES = 20 * 1024 * 1024


def stdin_is_terminal() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def text_from_user(text: str | None, file_: Any, what: str) -> str:
    """The text of a reply or note: --text, --file, standard input when it is not a
    terminal, else $VISUAL/$EDITOR (vi) on a temporary file; empty is a one-line error."""
    if text is not None:
        body: str | None = text
    elif file_ is not None:
        body = file_.read()
    elif not stdin_is_terminal():
        body = sys.stdin.read()
    else:
        body = click.edit("", extension=".txt", require_save=True)
    if not body or not body.strip():
        raise UsageError(f"the {what} is empty: nothing done")
    return body


def read_attachments(paths: tuple[Path, ...]) -> tuple[OutgoingAttachment, ...]:
    files = tuple(OutgoingAttachment(p.name, mimetypes.guess_type(p.name)[0] or "application/octet-stream",
                                     p.read_bytes()) for p in paths)
    total = sum(len(f.data) for f in files)
    if total > MAX_ATTACH_BYTES:
        raise UsageError(f"attachments of {total:,} bytes: at most {MAX_ATTACH_BYTES:,} in one reply")
    return files


@case.command("reply")
@click.argument("number", type=int)
@click.option("--text", help="The reply (default: standard input, or $EDITOR when it is a terminal).")
@click.option("--file", "file_", type=click.File("r"), help="Read the reply from a file ('-' for stdin).")
@click.option("--attach", "attach", multiple=True, help="Attach this file (repeatable).",
              type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
@click.option("--as", "staff", help="Signed by this specialist (default: the case owner).")
@pass_ctx
def case_reply(c: Ctx, number: int, text: str | None, file_: Any, attach: tuple[Path, ...],
               staff: str | None) -> None:
    """Queue a staff reply in the case's thread (to the requester).  The same text (and
    files) again queues nothing."""
    body = text_from_user(text, file_, "reply")
    files = read_attachments(attach)
    with transaction(c.engine) as conn:
        row_key = queue_reply(conn, c.config, number, body, staff, c.clock.now(), actor(), files)
    echo(f"case {case_label(number)}: reply queued ({row_key})"
               + (f" with {len(files)} attachment(s)" if files else ""))


@case.command("note")
@click.argument("number", type=int)
@click.option("-m", "--message", "text", help="The note (default: standard input, or $EDITOR on a terminal).")
@click.option("--file", "file_", type=click.File("r"), help="Read the note from a file ('-' for stdin).")
@pass_ctx
def case_note(c: Ctx, number: int, text: str | None, file_: Any) -> None:
    """A private staff note on the case (never sent), shown in its conversation."""
    body = text_from_user(text, file_, "note")
    with transaction(c.engine) as conn:
        add_note(conn, number, body, c.clock.now(), actor())
    echo(f"case {case_label(number)}: note recorded")


@case.command("severity")
@click.argument("number", type=int)
@click.argument("severity", type=click.IntRange(1, 4))
@pass_ctx
def case_severity(c: Ctx, number: int, severity: int) -> None:
    """Correct the severity (1 most severe); the priority follows.  The due times do not
    depend on severity (one and two business days after processing)."""
    with transaction(c.engine) as conn:
        before, after = set_severity(conn, number, severity, c.clock.now(), actor())
    echo(f"case {case_label(number)}: severity " + (f"S{before} -> S{after}" if before != after
                                                          else f"S{after} (unchanged)"))


@case.command("merge")
@click.argument("into", type=int)
@click.argument("other", type=int)
@pass_ctx
def case_merge(c: Ctx, into: int, other: int) -> None:
    """Merge case OTHER into case INTO: its mail moves, it closes with a link, and
    replies to its mail land in INTO."""
    with transaction(c.engine) as conn:
        moved = merge_cases(conn, into, other, c.clock.now(), actor())
    echo(f"case {case_label(other)} merged into {case_label(into)}: {moved} mails moved, "
               f"{case_label(other)} closed")


COMMANDS: list[click.Command] = [cases, case]
