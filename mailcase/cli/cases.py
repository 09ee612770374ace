"""Cases: ``mailcase cases`` (list, show) and ``mailcase case`` (work one)."""

from __future__ import annotations

from typing import Any

import click

from mailcase.cli.context import Ctx, actor, pass_ctx
from mailcase.cli.output import fmt_time, short
from mailcase.core.errors import UsageError
from mailcase.core.states import CaseStatus, Tier
from mailcase.domain.cases import assign, case_detail, escalate, list_cases, reopen, set_status
from mailcase.domain.db import transaction
from mailcase.mail.subjects import case_label
from mailcase.outbound.staffmail import queue_reply
from mailcase.outbound.surveys import resolve


@click.group()
def cases() -> None:
    """Cases: list and show."""


@cases.command("list")
@click.option("--status", help=", ".join(s.value for s in CaseStatus))
@click.option("--account", help="Account code.")
@click.option("--owner", help="Specialist name.")
@click.option("--severity", type=click.IntRange(1, 4))
@click.option("--breached", is_flag=True, help="Only cases past the 48-hour promise without a receipt in time.")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
@pass_ctx
def cases_list(c: Ctx, status: str | None, account: str | None, owner: str | None, severity: int | None,
               breached: bool, limit: int) -> None:
    """Cases in queue order (priority, then number)."""
    with c.engine.connect() as conn:
        rows = list_cases(conn, status=status, account=account, owner=owner, severity=severity,
                          breached=breached, now=c.clock.now(), limit=limit)
    if not rows:
        click.echo("no cases")
    for r in rows:
        click.echo(f"{case_label(r.number)} {r.status:<13} S{r.severity} {r.tier:<5} {short(r.account or '-', 10):<10} "
                   f"{short(r.owner or '-', 12):<12} {short(r.requester, 28):<28} {short(r.subject, 40)}"
                   + (f"  [{', '.join(r.flags)}]" if r.flags else ""))


@cases.command("show")
@click.argument("number", type=int)
@pass_ctx
def cases_show(c: Ctx, number: int) -> None:
    """One case: fields, mails, events."""
    with c.engine.connect() as conn:
        v, mails, events = case_detail(conn, number)
    click.echo(f"case {case_label(v.number)}  {v.status}  severity {v.severity}  priority {v.priority}  tier {v.tier}")
    click.echo(f"  subject:    {v.subject}")
    click.echo(f"  requester:  {v.requester}  account {v.account or '-'}  owner {v.owner or '-'}")
    if v.flags:
        click.echo(f"  flags:      {', '.join(v.flags)}")
    for label, value in (("received", v.received_at), ("processed", v.processed_at), ("answer due", v.ack_due_at),
                         ("answer by", v.ack_breach_at), ("ack sent", v.receipt_sent_at),
                         ("answered", v.first_response_at), ("first staff", v.first_staff_action_at),
                         ("resolved", v.resolved_at), ("closed", v.closed_at)):
        click.echo(f"  {label + ':':<12}{fmt_time(value)}")
    click.echo("mails:")
    for m in mails:
        click.echo(f"  #{m.id:<6} {m.role:<10} {fmt_time(m.received_at)}  {short(m.from_addr, 30):<30} {short(m.subject, 40)}")
    click.echo("events:")
    for e in events:
        click.echo(f"  {fmt_time(e.at)}  {e.actor:<12} {e.kind}{': ' + e.detail if e.detail else ''}")


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
    click.echo(f"case {case_label(number)}: owner {specialist}")


@case.command("escalate")
@click.argument("number", type=int)
@click.option("--to", "tier", required=True,
              type=click.Choice([t.value for t in Tier if t is not Tier.SSI], case_sensitive=False))
@click.option("--note", default="", help="Why.")
@pass_ctx
def case_escalate(c: Ctx, number: int, tier: str, note: str) -> None:
    """Raise the case's tier; the owner stays (the first specialist keeps ownership)."""
    with transaction(c.engine) as conn:
        before = escalate(conn, number, tier, c.clock.now(), actor(), note)
    click.echo(f"case {case_label(number)}: {before} -> {tier.upper()}, owner unchanged")


@case.command("progress")
@click.argument("number", type=int)
@pass_ctx
def case_progress(c: Ctx, number: int) -> None:
    """Mark the case in progress."""
    with transaction(c.engine) as conn:
        set_status(conn, number, CaseStatus.IN_PROGRESS, c.clock.now(), actor())
    click.echo(f"case {case_label(number)}: in-progress")


@case.command("resolve")
@click.argument("number", type=int)
@click.option("--note", required=True, help="The resolution (sent to the requester).")
@pass_ctx
def case_resolve(c: Ctx, number: int, note: str) -> None:
    """Resolve the case: queue the resolution mail, and the survey after its delay."""
    with transaction(c.engine) as conn:
        _, no_survey = resolve(conn, c.config, number, note, c.clock.now(), actor())
    click.echo(f"case {case_label(number)}: resolved, resolution mail queued; "
               + (f"no survey: {no_survey}" if no_survey else
                  f"survey follows in {c.config.surveys.delay_hours:g} h"))


@case.command("close")
@click.argument("number", type=int)
@pass_ctx
def case_close(c: Ctx, number: int) -> None:
    """Close the case (its solution is verified)."""
    with transaction(c.engine) as conn:
        set_status(conn, number, CaseStatus.CLOSED, c.clock.now(), actor())
    click.echo(f"case {case_label(number)}: closed")


@case.command("reopen")
@click.argument("number", type=int)
@pass_ctx
def case_reopen(c: Ctx, number: int) -> None:
    """Reopen a resolved or closed case."""
    with transaction(c.engine) as conn:
        reopen(conn, number, c.clock.now(), actor())
    click.echo(f"case {case_label(number)}: reopened (in-progress)")


@case.command("reply")
@click.argument("number", type=int)
@click.option("--text", help="The reply; or --file, or standard input.")
@click.option("--file", "file_", type=click.File("r"), help="Read the reply from a file ('-' for stdin).")
@click.option("--as", "staff", help="Signed by this specialist (default: the case owner).")
@pass_ctx
def case_reply(c: Ctx, number: int, text: str | None, file_: Any, staff: str | None) -> None:
    """Queue a staff reply in the case's thread (to the requester)."""
    body = text if text is not None else (file_.read() if file_ else None)
    if not body or not body.strip():
        raise UsageError("give the reply with --text or --file")
    with transaction(c.engine) as conn:
        row_key = queue_reply(conn, c.config, number, body, staff, c.clock.now(), actor())
    click.echo(f"case {case_label(number)}: reply queued ({row_key})")


COMMANDS: list[click.Command] = [cases, case]
