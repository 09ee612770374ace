"""Who may ask and who answers: ``mailcase accounts`` and ``mailcase specialists``."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import click

from mailcase.cli.context import AnyCase, Ctx, actor, pass_ctx
from mailcase.cli.output import as_data, echo, echo_json, json_option
from mailcase.core.errors import UsageError
from mailcase.core.states import Standing, Tier
from mailcase.domain.cases import add_specialist, deactivate_specialist, list_specialists, release_held
from mailcase.domain.db import transaction
from mailcase.domain.directory import get_account, import_csv, list_accounts, set_standing, unlock_pin


@click.group()
def accounts() -> None:
    """Accounts and their representatives, administrators and users."""


@accounts.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--replace", is_flag=True, help="Remove people of the file's accounts who are not in the file.")
@click.option("--effective", metavar="DATETIME", help="Backdate the rows (ISO date-time with offset); default: now.")
@pass_ctx
def accounts_import(c: Ctx, csv_file: str, replace: bool, effective: str | None) -> None:
    """Import accounts and people from CSV (idempotent; bad rows are reported).

    Columns: account, account_name, standing (good|hold), pin_required (yes|no),
    address, name, role (representative|administrator|user), pin (4 digits,
    stored only as a keyed hash).  UTF-8 or Windows-1252; commas, or the
    semicolons or tabs of the header.  Exits 1 if any row was bad, 2 if the
    file cannot be read or lacks the columns.
    """
    at = c.clock.now()
    if effective:
        try:
            at = datetime.fromisoformat(effective.replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(f"--effective {effective!r}: not an ISO date-time") from None
        if at.tzinfo is None:
            raise UsageError("--effective: give a UTC offset")
    key = c.config.hmac_key()
    with transaction(c.engine) as conn:
        report = import_csv(conn, Path(csv_file), at, key, replace=replace, actor=f"import by {actor()}")
        released = sum(release_held(conn, account_id, c.clock.now(), actor()) for account_id in report.restored)
    for note in report.notes:
        echo(f"{csv_file}: {note}")
    for bad in report.bad_rows:
        echo(f"{csv_file}: {bad}", err=True)
    echo(report.summary() + (f"; {released} held cases join the next cutoff" if released else ""))
    if report.bad_rows:
        sys.exit(1)


@accounts.command("list")
@click.argument("code", required=False)
@json_option
@pass_ctx
def accounts_list(c: Ctx, code: str | None, as_json: bool) -> None:
    """Accounts with their standing and people (or one account)."""
    with c.engine.connect() as conn:
        rows = list_accounts(conn, c.clock.now(), code)
    if as_json:
        echo_json([{**as_data(a), "people": [{"address": p[0], "name": p[1], "role": p[2]} for p in a.people]}
                   for a in rows], ensure_ascii=False)
        return
    if not rows:
        echo("no accounts (mailcase accounts import FILE)")
    for a in rows:
        pin = " PIN required" + (" (LOCKED)" if a.pin_locked else "") if a.pin_required else ""
        echo(f"{a.code:<12} {a.name}  [{a.standing}]{pin}")
        for address, name, role in a.people:
            echo(f"    {role:<15} {address}  {name}")


@accounts.command("standing")
@click.argument("code")
@click.argument("standing", type=AnyCase([s.value for s in Standing]))
@pass_ctx
def accounts_standing(c: Ctx, code: str, standing: str) -> None:
    """Set an account's financial standing; 'good' releases its held cases into the next cutoff."""
    now = c.clock.now()
    with transaction(c.engine) as conn:
        changed = set_standing(conn, code, standing, now, actor())
        released = 0
        if standing == Standing.GOOD:
            released = release_held(conn, int(get_account(conn, code).id), now, actor())
    echo(f"{code}: standing {standing}" + ("" if changed else " (unchanged)")
               + (f"; {released} held cases join the next cutoff" if released else ""))


@accounts.command("pin-unlock")
@click.argument("code")
@pass_ctx
def accounts_pin_unlock(c: Ctx, code: str) -> None:
    """Accept PINs again for an account locked after repeated failures."""
    with transaction(c.engine) as conn:
        done = unlock_pin(conn, code)
    echo(f"{code}: PIN acceptance unlocked" if done else f"{code}: was not locked")


@click.group()
def specialists() -> None:
    """Support specialists (case owners)."""


@specialists.command("add")
@click.argument("name")
@click.option("--address", help="Their mail address (their mail on a case is a staff note).")
@click.option("--tier", default=Tier.SSI.value, show_default=True, type=AnyCase([t.value for t in Tier]))
@pass_ctx
def specialists_add(c: Ctx, name: str, address: str | None, tier: str) -> None:
    """Add (or reactivate) a specialist; new cases go to active SSI specialists."""
    with transaction(c.engine) as conn:
        add_specialist(conn, name, address.lower() if address else None, tier, c.clock.now())
    echo(f"specialist {name} ({tier}) active")


@specialists.command("list")
@json_option
@pass_ctx
def specialists_list(c: Ctx, as_json: bool) -> None:
    """Specialists with their open cases."""
    with c.engine.connect() as conn:
        rows = list_specialists(conn)
    if as_json:
        echo_json([{"name": n, "address": a, "tier": t, "active": act, "open_cases": k}
                   for n, a, t, act, k in rows], ensure_ascii=False)
        return
    if not rows:
        echo("no specialists (mailcase specialists add NAME)")
    for name, address, tier, active, n in rows:
        echo(f"{name:<20} {tier:<5} {'active' if active else 'inactive':<8} {n:>4} open  {address or ''}")


@specialists.command("deactivate")
@click.argument("name")
@pass_ctx
def specialists_deactivate(c: Ctx, name: str) -> None:
    """Stop assigning new cases to a specialist (their cases stay theirs)."""
    with transaction(c.engine) as conn:
        deactivate_specialist(conn, name)
    echo(f"specialist {name} deactivated")


COMMANDS: list[click.Command] = [accounts, specialists]
