"""The service: ``mailcase run`` (the daemon, or one pass), ``status`` and ``check``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

import click

from mailcase.cli.context import Ctx, pass_ctx
from mailcase.cli.output import echo, echo_json, fmt_time, short
from mailcase.core import log as logsetup
from mailcase.core.clock import is_test_clock
from mailcase.core.errors import AuthError, ConfigError, DatabaseUnavailable, TransientError
from mailcase.domain.cases import list_cases
from mailcase.mail.subjects import case_label
from mailcase.ops.check import run_checks
from mailcase.ops.daemon import Daemon, run_pass
from mailcase.ops.messages import list_messages, state_counts
from mailcase.ops.preflight import preflight
from mailcase.ops.status import EXIT_DATABASE, collect, smtp_line
from mailcase.outbound.outbox import list_outbox

EXIT_TEMPFAIL, EXIT_NOPERM, EXIT_CONFIG = TransientError.exit_code, AuthError.exit_code, ConfigError.exit_code


@click.command()
@click.option("--once", is_flag=True, help="One pass over every mailbox and stage, print what is stored, exit.")
@pass_ctx
def run(c: Ctx, once: bool) -> None:
    """Run the service: sync mailboxes, parse, repeat (ops run this under systemd).

    With ``mailcase --demo run`` it runs on embedded defaults: SQLite in
    ./mailcase-data and the sample mailbox shipped with mailcase.
    """
    config = c.config
    preflight(config)  # a path or template mistake is exit 78 now, not an error at the first cutoff
    if config.source is None:
        echo(
            f"--demo: embedded defaults (database {config.database_url}, sample mailbox)", err=True,
        )
    if is_test_clock(c.clock):
        logging.getLogger("mailcase").warning("event=test-clock now=%s", c.clock.now().isoformat())
    if not once:
        logsetup.service_level(c.verbose)
    if once:
        result = run_pass(c.engine, config, c.clock)
        for sync in result.syncs:
            echo(sync.summary())
        for name, error in result.failures.items():
            echo(f"{name}: failed: {error}", err=True)
        echo(f"parse stage: parsed {result.parsed.done}, quarantined {result.parsed.quarantined}")
        echo(f"rules: classified {result.classified.done}, quarantined {result.classified.quarantined}")
        echo("")
        _print_ledger(c)
        if result.failures:
            sys.exit(once_exit_code(result.failure_codes.values()))
        return
    sys.exit(Daemon(c.engine, config, c.clock, config_path=config.source).run())


def once_exit_code(codes: Iterable[int]) -> int:
    """``run --once`` after failed mailboxes: the gravest documented status (78 configuration,
    77 login refused, else 75 temporary), never a bare 1."""
    return max((code if code in (EXIT_NOPERM, EXIT_CONFIG) else EXIT_TEMPFAIL for code in codes),
               default=EXIT_TEMPFAIL)


def _print_ledger(c: Ctx) -> None:
    with c.engine.connect() as conn:
        counts = state_counts(conn)
        rows = list_messages(conn, limit=20)
        case_rows = list_cases(conn, limit=20)
        out_rows = list_outbox(conn, limit=20)
    total = sum(counts.values())
    echo(f"stored: {total} mails (" + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ")")
    for r in rows:
        echo(
            f"  #{r.id:<5} {r.state:<12} {'hist' if r.historical else '    '} "
            f"{fmt_time(r.received_at):<21} {short(r.from_addr, 28):<28} {short(r.subject, 40)}"
        )
    if total > len(rows):
        echo(f"  ... ({total - len(rows)} more: mailcase messages list --limit N)")
    echo(f"cases: {len(case_rows)}")
    for cv in case_rows:
        echo(f"  {case_label(cv.number)} {cv.status:<13} S{cv.severity} {short(cv.account or '-', 9):<9} "
                   f"{short(cv.requester, 28):<28} {short(cv.subject, 40)}")
    where = c.config.outgoing.file_dir or f"{c.config.data_dir}/outbox"
    echo(f"outgoing mail: {len(out_rows)}" + (f" (file transport: {where})" if out_rows else ""))
    for o in out_rows:
        echo(f"  {o.status:<6} {o.kind:<24} to {short(o.to_addr, 30):<30} {short(o.subject, 40)}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def status(c: Ctx, as_json: bool) -> None:
    """What the service is doing: mailboxes, tokens, pending mail, the next cutoff, backlogs."""
    try:
        st = collect(c.engine, c.config, c.clock)
    except DatabaseUnavailable as exc:
        if as_json:
            echo_json({"database": f"unreachable: {exc}", "health": "unknown", "exit_code": EXIT_DATABASE})
        else:
            echo(f"database: unreachable: {exc}")
        sys.exit(EXIT_DATABASE)
    if as_json:
        echo_json(asdict(st))
        sys.exit(st.exit_code)
    _print_status(st)
    sys.exit(st.exit_code)


def _print_status(st: Any) -> None:
    echo(f"health: {st.health}" + "".join(f"\n  - {p}" for p in st.problems))
    for d in st.daemons:
        echo(f"service: {d.holder} ({'alive' if d.alive else 'gone'}, registered until "
                   f"{d.expires_at:%H:%M:%S} UTC)")
    if st.test_clock:
        echo(f"TEST CLOCK in effect: now is {st.now:%Y-%m-%d %H:%M} UTC")
    echo(f"sender authentication: {st.sender_authentication}")
    for m in st.mailboxes:
        state = m.state or "never run"
        since = f" since {fmt_time(m.state_since)}" if m.state_since else ""
        beat = "never" if m.heartbeat_age_seconds is None else f"{m.heartbeat_age_seconds:.0f} s ago"
        echo(f"mailbox {m.name} ({m.kind}{', disabled' if not m.enabled else ''}): {state}{since}, "
                   f"{m.mode or '-'}; last sync {fmt_time(m.last_sync_ok_at)}; heartbeat {beat}"
                   f"{' (STALE)' if m.stale else ''}; {m.pending} pending"
                   + (f"; worker {m.worker}" if m.worker else ""))
        if m.last_error:
            echo(f"    last error ({fmt_time(m.last_error_at)}): {m.last_error}")
        if m.token is not None:
            echo(f"    token: {'ok' if m.token.ok else 'WARNING'}: {m.token.detail}")
    echo(f"mail: {st.pending_mail} pending for the next cutoff, {st.unclassified_mail} not yet classified, "
               f"{st.held_for_review} held for review, {st.quarantined} quarantined")
    if st.due_cutoff:
        echo(f"cutoff {fmt_time(st.due_cutoff)} is due" +
                   (f" but blocked: {st.cutoff_blocked}" if st.cutoff_blocked else ""))
    echo(f"next cutoff: {fmt_time(st.next_cutoff)}")
    echo(f"outbox: {st.outbox_queued} queued ({st.outbox_deferred} deferred), {st.outbox_failed} failed, "
               f"{st.outbox_capped} capped, {st.outbox_suppressed} suppressed; {st.open_cases} open cases")
    smtp = smtp_line(st)
    if smtp:
        echo(smtp)
    for note in st.notes:
        echo(f"note: {note}")


@click.command()
@pass_ctx
def check(c: Ctx) -> None:
    """Validate the configuration and try every connection, one line per check with the fix.

    Read-only: it creates no database, schema, data folder or Maildir folder.
    """
    codes = []
    for ch in run_checks(c.config, c.clock):
        mark = "ok  " if ch.ok else "FAIL"
        echo(f"{mark} {ch.what}: {ch.detail}" + (f" -- fix: {ch.fix}" if ch.fix and not ch.ok else ""))
        if not ch.ok:
            codes.append(ch.code)
    if codes:
        # the gravest first: configuration (78) over credentials (77) over an unreachable server (75)
        sys.exit(max(codes))


COMMANDS: list[click.Command] = [run, status, check]
