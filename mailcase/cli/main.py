"""The ``mailcase`` command: the only place that prints or exits.

A mistake (bad option, bad config, unreachable server, unknown id) prints one
line on stderr and exits non-zero; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, NoReturn

import click
from sqlalchemy.engine import Engine

from mailcase import __version__
from mailcase.config.settings import Config, find_config
from mailcase.core import log as logsetup
from mailcase.core.clock import Clock, is_test_clock, process_clock
from mailcase.core.errors import MailcaseError, UsageError
from mailcase.core.states import MessageState
from mailcase.domain.db import current_revision, head_revision, make_engine, open_engine, transaction
from mailcase.domain.db import upgrade as db_upgrade

EXIT_INTERNAL = 70  # EX_SOFTWARE


class Ctx:
    def __init__(self, config_path: str | None, debug: bool) -> None:
        self.config_path = config_path
        self.debug = debug
        self._config: Config | None = None
        self._engine: Engine | None = None
        self.clock: Clock = process_clock()
        self.verbose = 0

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = find_config(self.config_path)
        return self._config

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = open_engine(
                self.config.database_url, self.config.database.busy_timeout_seconds
            )
        return self._engine


pass_ctx = click.make_pass_decorator(Ctx)


def _fmt_time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"


def _short(text: str | None, width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config", "config_path", metavar="FILE", envvar="MAILCASE_CONFIG",
    help="Configuration file (default: $MAILCASE_CONFIG, /etc/mailcase/mailcase.toml, "
    "else the embedded demo defaults).",
)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(__version__, prog_name="mailcase")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: int, debug: bool) -> None:
    """mailcase turns a support mailbox into cases, following the support agreement.

    Mail is stored as it arrives (IMAP or a Maildir), parsed behind ingestion,
    and kept forever in a ledger; see `mailcase COMMAND --help`.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logsetup.setup(level)
    ctx.obj = Ctx(config_path, debug)
    ctx.obj.verbose = verbose


# -- db -------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """Database schema: create, upgrade, show version."""


@db.command("upgrade")
@pass_ctx
def db_upgrade_cmd(c: Ctx) -> None:
    """Create the schema or migrate it to this version of mailcase."""
    engine = make_engine(c.config.database_url, c.config.database.busy_timeout_seconds)
    before, after = db_upgrade(engine)
    if before == after:
        click.echo(f"database already at {after}")
    else:
        click.echo(f"database upgraded from {before or 'empty'} to {after}")


@db.command("status")
@pass_ctx
def db_status(c: Ctx) -> None:
    """Show the database URL, its schema version and the version this code needs."""
    engine = make_engine(c.config.database_url, c.config.database.busy_timeout_seconds)
    click.echo(f"url:      {engine.url.render_as_string(hide_password=True)}")
    click.echo(f"schema:   {current_revision(engine) or 'empty'}")
    click.echo(f"needs:    {head_revision()}")


# -- fetch, parse, run ---------------------------------------------------------------


def _selected_mailboxes(c: Ctx, names: tuple[str, ...]) -> list[Any]:
    boxes = [m for m in c.config.mailboxes if m.enabled]
    if names:
        known = {m.name: m for m in c.config.mailboxes}
        missing = [n for n in names if n not in known]
        if missing:
            raise UsageError(f"no mailbox named {missing[0]!r} (configured: {', '.join(known) or 'none'})")
        boxes = [known[n] for n in names]
    if not boxes:
        raise UsageError("no mailbox configured")
    return boxes


@cli.command()
@click.argument("mailboxes", nargs=-1, metavar="[MAILBOX]...")
@pass_ctx
def fetch(c: Ctx, mailboxes: tuple[str, ...]) -> None:
    """Sync configured mailboxes once: store new mail, do post-actions.

    With no MAILBOX, every enabled mailbox.  Exits non-zero if any failed.
    """
    from mailcase.ingest.fetch import record_failure, sync_mailbox

    failed: MailcaseError | None = None
    for cfg in _selected_mailboxes(c, mailboxes):
        now = c.clock.now()
        try:
            result = sync_mailbox(c.engine, c.config, cfg, now)
        except MailcaseError as exc:
            record_failure(c.engine, cfg.name, str(exc), now)
            if len(mailboxes) == 1 or len(c.config.mailboxes) == 1:
                raise
            click.echo(f"{cfg.name}: failed: {exc}", err=True)
            failed = exc
            continue
        click.echo(result.summary())
    if failed is not None:
        raise failed


@cli.command()
@click.option("--workers", type=click.IntRange(1, 64), help="Parse worker processes (default: ingest.parse_workers).")
@pass_ctx
def parse(c: Ctx, workers: int | None) -> None:
    """Run the parse stage over stored mail that is not parsed yet."""
    from mailcase.ingest.stages import BackgroundParser, run_headers_stage, run_parse_stage

    n = workers or c.config.ingest.workers
    headers = run_headers_stage(c.engine, c.clock.now())
    if n > 1:
        with BackgroundParser(c.engine, c.clock, workers=n, pin_key=c.config.hmac_key()) as parser:
            result = parser.drain()
    else:
        result = run_parse_stage(c.engine, c.clock.now(), c.config.hmac_key())
    click.echo(
        f"parsed {result.done}, quarantined {result.quarantined + headers.quarantined}"
        + (f", headers re-read {headers.done}" if headers.done else "")
    )


@cli.command()
@click.option("--once", is_flag=True, help="One pass over every mailbox and stage, print what is stored, exit.")
@pass_ctx
def run(c: Ctx, once: bool) -> None:
    """Run the service: sync mailboxes, parse, repeat (ops run this under systemd).

    Without a configuration file this runs on embedded defaults: SQLite in
    ./mailcase-data and the sample mailbox shipped with mailcase.
    """
    from mailcase.ops.daemon import Daemon, run_pass

    config = c.config
    if config.source is None:
        click.echo(
            f"no configuration file: using embedded defaults (database {config.database_url}, "
            "sample mailbox)", err=True,
        )
    if is_test_clock(c.clock):
        logging.getLogger("mailcase").warning("event=test-clock now=%s", c.clock.now().isoformat())
    if not once:
        logsetup.service_level(c.verbose)
    if once:
        result = run_pass(c.engine, config, c.clock)
        for sync in result.syncs:
            click.echo(sync.summary())
        for name, error in result.failures.items():
            click.echo(f"{name}: failed: {error}", err=True)
        click.echo(f"parse stage: parsed {result.parsed.done}, quarantined {result.parsed.quarantined}")
        click.echo(f"rules: classified {result.classified.done}, quarantined {result.classified.quarantined}")
        click.echo("")
        _print_ledger(c)
        if result.failures:
            sys.exit(1)
        return
    sys.exit(Daemon(c.engine, config, c.clock, config_path=config.source).run())


def _print_ledger(c: Ctx) -> None:
    from mailcase.domain.cases import list_cases
    from mailcase.ops.messages import list_messages, state_counts
    from mailcase.outbound.outbox import list_outbox

    with c.engine.connect() as conn:
        counts = state_counts(conn)
        rows = list_messages(conn, limit=20)
        case_rows = list_cases(conn, limit=20)
        out_rows = list_outbox(conn, limit=20)
    total = sum(counts.values())
    click.echo(f"stored: {total} mails (" + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ")")
    for r in rows:
        click.echo(
            f"  #{r.id:<5} {r.state:<12} {'hist' if r.historical else '    '} "
            f"{_fmt_time(r.received_at):<21} {_short(r.from_addr, 28):<28} {_short(r.subject, 40)}"
        )
    if total > len(rows):
        click.echo(f"  ... ({total - len(rows)} more: mailcase messages list --limit N)")
    click.echo(f"cases: {len(case_rows)}")
    for cv in case_rows:
        click.echo(f"  #{cv.number:06d} {cv.status:<13} S{cv.severity} {_short(cv.account or '-', 9):<9} "
                   f"{_short(cv.requester, 28):<28} {_short(cv.subject, 40)}")
    where = c.config.outgoing.file_dir or f"{c.config.data_dir}/outbox"
    click.echo(f"outgoing mail: {len(out_rows)}" + (f" (file transport: {where})" if out_rows else ""))
    for o in out_rows:
        click.echo(f"  {o.status:<6} {o.kind:<24} to {_short(o.to_addr, 30):<30} {_short(o.subject, 40)}")


# -- calendar ---------------------------------------------------------------------


@cli.command("calendar")
@click.option("--from", "from_date", callback=lambda c, p, v: _date(c, p, v), metavar="DATE",
              help="List cutoffs from the start of DATE (YYYY-MM-DD, calendar zone); default: now.")
@click.option("--count", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="How many cutoffs to list.")
@pass_ctx
def calendar_cmd(c: Ctx, from_date: date | None, count: int) -> None:
    """The next cutoffs: when pending mail becomes cases (local time and UTC)."""
    from datetime import UTC, timedelta

    from mailcase.domain.calendar import BusinessCalendar

    cal = BusinessCalendar(c.config.calendar)
    if from_date is None:
        start = c.clock.now()
    else:
        # upcoming() is strictly after start: back off 1 µs so a 00:00 cutoff is listed
        start = datetime(from_date.year, from_date.month, from_date.day, tzinfo=cal.zone)
        start = start.astimezone(UTC) - timedelta(microseconds=1)
    cfg = cal.config
    click.echo(f"zone {cfg.zone}; cutoffs {', '.join(cfg.cutoffs)}; holidays {cfg.holidays or 'none'}")
    for local, at in cal.upcoming(start, count):
        click.echo(f"{local:%a %Y-%m-%d %H:%M %Z (UTC%z)}   {at:%Y-%m-%d %H:%M} UTC")


# -- reprocess --------------------------------------------------------------------


def _date(_ctx: click.Context, _param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


@cli.command()
@click.argument("source")
@click.option("--since", callback=_date, metavar="DATE", help="Only mail received on or after DATE (YYYY-MM-DD).")
@click.option("--uids", metavar="N[:M]", help="Only these UIDs (a configured IMAP mailbox).")
@click.option("--dry-run", is_flag=True, help="Show what would be stored; store nothing.")
@click.option(
    "--create-cases", is_flag=True,
    help="Treat imported mail as new requests instead of history (it may then be answered).",
)
@pass_ctx
def reprocess(
    c: Ctx, source: str, since: date | None, uids: str | None, dry_run: bool, create_cases: bool
) -> None:
    """Import SOURCE into the ledger: a configured mailbox, a Maildir, an mbox or a folder of .eml.

    Idempotent: mail already stored from the same source is counted as a
    duplicate and adds nothing.  Imported mail is historical (never a case,
    never answered) unless --create-cases.
    """
    from mailcase.ingest.reprocess import ReprocessRequest, parse_uid_range
    from mailcase.ingest.reprocess import reprocess as do_reprocess

    req = ReprocessRequest(
        source=source, since=since, uid_range=parse_uid_range(uids) if uids else None,
        dry_run=dry_run, create_cases=create_cases,
    )
    progress: Callable[[int], None] | None = None
    bar = None
    on_total = None
    if sys.stderr.isatty():
        bar = click.progressbar(length=0, label="reprocessing", file=sys.stderr)
        bar.__enter__()

        def progress(n: int) -> None:
            bar.update(n)

        def on_total(n: int) -> None:
            bar.length = n

    try:
        what, tally = do_reprocess(c.engine, c.config, req, c.clock.now(), progress, on_total)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    prefix = "dry run, nothing stored: " if dry_run else ""
    click.echo(f"{prefix}{what}: {tally.summary()}")


# -- quarantine -------------------------------------------------------------------


@cli.group()
def quarantine() -> None:
    """Mail that failed at some stage: list, show, retry."""


@quarantine.command("list")
@pass_ctx
def quarantine_list(c: Ctx) -> None:
    """Open quarantine entries."""
    from mailcase.ingest.quarantine import open_entries

    with c.engine.connect() as conn:
        entries = open_entries(conn)
    if not entries:
        click.echo("quarantine is empty")
        return
    for e in entries:
        click.echo(
            f"{e.id:>5}  message #{e.message_pk:<6} {e.stage:<8} {_fmt_time(e.created_at)}  "
            f"{_short(e.error_type + ': ' + e.error, 70)}"
        )


@quarantine.command("show")
@click.argument("entry_id", type=int)
@pass_ctx
def quarantine_show(c: Ctx, entry_id: int) -> None:
    """One entry with its error and traceback."""
    from mailcase.ingest.quarantine import get_entry

    with c.engine.connect() as conn:
        e = get_entry(conn, entry_id)
    click.echo(f"entry:     {e.id}")
    click.echo(f"message:   #{e.message_pk}  from {e.from_addr or '-'}  subject {_short(e.subject, 60)!r}")
    click.echo(f"stage:     {e.stage}")
    click.echo(f"error:     {e.error_type}: {e.error}")
    click.echo(f"at:        {_fmt_time(e.created_at)} (attempt {e.attempts})")
    click.echo(f"resolved:  {_fmt_time(e.resolved_at)}")
    if e.traceback:
        click.echo("traceback:")
        click.echo(e.traceback.rstrip())


@quarantine.command("retry")
@click.argument("entry_id", type=int, required=False)
@click.option("--all", "all_", is_flag=True, help="Retry every open entry.")
@pass_ctx
def quarantine_retry(c: Ctx, entry_id: int | None, all_: bool) -> None:
    """Put a quarantined mail back before the stage that failed; the next run retries it."""
    from mailcase.ingest.quarantine import retry, retry_all

    if all_ == (entry_id is not None):
        raise UsageError("give an ENTRY_ID or --all")
    with transaction(c.engine) as conn:
        if all_:
            click.echo(f"{retry_all(conn, c.clock.now())} entries put back for retry")
        else:
            assert entry_id is not None
            state = retry(conn, entry_id, c.clock.now())
            click.echo(f"entry {entry_id}: message back in state {state}")


# -- messages ---------------------------------------------------------------------


@cli.group()
def messages() -> None:
    """Stored mail."""


@messages.command("list")
@click.option("--state", type=click.Choice([s.value for s in MessageState]), help="Only this state.")
@click.option("--mailbox", help="Only mail from this mailbox.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@pass_ctx
def messages_list(c: Ctx, state: str | None, mailbox: str | None, limit: int) -> None:
    """The most recent stored mails."""
    from mailcase.ops.messages import list_messages

    with c.engine.connect() as conn:
        rows = list_messages(conn, state, limit, mailbox)
    for r in rows:
        click.echo(
            f"#{r.id:<6} {r.state:<12} {'hist' if r.historical else '    '} "
            f"{_fmt_time(r.received_at):<21} {_short(r.from_addr, 30):<30} {_short(r.subject, 50)}"
        )
    if not rows:
        click.echo("no messages")


@cli.group()
def message() -> None:
    """One stored mail."""


@message.command("show")
@click.argument("message_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def message_show(c: Ctx, message_id: int, as_json: bool) -> None:
    """Everything stored about a mail: headers read, copies, parse, quarantine."""
    from mailcase.ops.messages import message_detail

    with c.engine.connect() as conn:
        d = message_detail(conn, message_id)
    if as_json:
        click.echo(json.dumps(d, default=str, indent=2, ensure_ascii=False))
        return
    m = d["message"]
    click.echo(f"message #{m['id']}  state {m['state']}{'  (historical)' if m['historical'] else ''}")
    click.echo(f"  Message-ID: {m['message_id']}{' (derived)' if m['message_id_derived'] else ''}")
    click.echo(f"  From:       {m['from_addr'] or '-'}{'' if m['from_strict'] else '  (not a single well-formed mailbox: never trusted)'}")
    click.echo(f"  Subject:    {m['subject'] or ''}")
    click.echo(f"  Date:       {_fmt_time(m['date_at'])}")
    click.echo(f"  Received:   {_fmt_time(m['received_at'])} (from {m['received_source']})")
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
        click.echo(f"quarantine {q['id']}: {q['stage']}: {q['error_type']}: {_short(q['error'], 80)}"
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


# -- accounts, review ---------------------------------------------------------------


def _actor() -> str:
    import getpass
    import os

    return os.environ.get("SUDO_USER") or getpass.getuser()


@cli.group()
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
    stored only as a keyed hash).  Exits 1 if any row was bad.
    """
    from pathlib import Path

    from mailcase.domain.directory import import_csv

    at = c.clock.now()
    if effective:
        try:
            at = datetime.fromisoformat(effective.replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(f"--effective {effective!r}: not an ISO date-time") from None
        if at.tzinfo is None:
            raise UsageError("--effective: give a UTC offset")
    key = c.config.hmac_key()
    from mailcase.domain.cases import release_held

    with transaction(c.engine) as conn:
        report = import_csv(conn, Path(csv_file), at, key, replace=replace, actor=f"import by {_actor()}")
        released = sum(release_held(conn, account_id, c.clock.now(), _actor()) for account_id in report.restored)
    for bad in report.bad_rows:
        click.echo(f"{csv_file}: {bad}", err=True)
    click.echo(report.summary() + (f"; {released} held cases join the next cutoff" if released else ""))
    if report.bad_rows:
        sys.exit(1)


@accounts.command("list")
@click.argument("code", required=False)
@pass_ctx
def accounts_list(c: Ctx, code: str | None) -> None:
    """Accounts with their standing and people (or one account)."""
    from mailcase.domain.directory import list_accounts

    with c.engine.connect() as conn:
        rows = list_accounts(conn, c.clock.now(), code)
    if not rows:
        click.echo("no accounts (mailcase accounts import FILE)")
    for a in rows:
        pin = " PIN required" + (" (LOCKED)" if a.pin_locked else "") if a.pin_required else ""
        click.echo(f"{a.code:<12} {a.name}  [{a.standing}]{pin}")
        for address, name, role in a.people:
            click.echo(f"    {role:<15} {address}  {name}")


@accounts.command("standing")
@click.argument("code")
@click.argument("standing", type=click.Choice(["good", "hold"]))
@pass_ctx
def accounts_standing(c: Ctx, code: str, standing: str) -> None:
    """Set an account's financial standing; 'good' releases its held cases into the next cutoff."""
    from mailcase.domain.cases import release_held
    from mailcase.domain.directory import get_account, set_standing

    now = c.clock.now()
    with transaction(c.engine) as conn:
        changed = set_standing(conn, code, standing, now, _actor())
        released = 0
        if standing == "good":
            released = release_held(conn, int(get_account(conn, code).id), now, _actor())
    click.echo(f"{code}: standing {standing}" + ("" if changed else " (unchanged)")
               + (f"; {released} held cases join the next cutoff" if released else ""))


@accounts.command("pin-unlock")
@click.argument("code")
@pass_ctx
def accounts_pin_unlock(c: Ctx, code: str) -> None:
    """Accept PINs again for an account locked after repeated failures."""
    from mailcase.domain.directory import unlock_pin

    with transaction(c.engine) as conn:
        done = unlock_pin(conn, code)
    click.echo(f"{code}: PIN acceptance unlocked" if done else f"{code}: was not locked")


@cli.group()
def review() -> None:
    """Mail held for review (floods): list, release, discard."""


@review.command("list")
@pass_ctx
def review_list(c: Ctx) -> None:
    """Mail held for review, oldest first."""
    from mailcase.rules.review import held

    with c.engine.connect() as conn:
        rows = held(conn)
    if not rows:
        click.echo("nothing is held for review")
    for r in rows:
        click.echo(f"#{r.id:<6} {_fmt_time(r.received_at)}  {_short(r.from_addr, 30):<30} "
                   f"{_short(r.subject, 40):<40} {_short(r.reason, 60)}")


@review.command("release")
@click.argument("message_ids", type=int, nargs=-1, required=True)
@pass_ctx
def review_release(c: Ctx, message_ids: tuple[int, ...]) -> None:
    """Release held mail: it joins the next cutoff as a request."""
    from mailcase.rules.review import release

    with transaction(c.engine) as conn:
        for pk in message_ids:
            release(conn, pk, c.clock.now(), _actor())
    click.echo(f"released {len(message_ids)}")


@review.command("discard")
@click.argument("message_ids", type=int, nargs=-1, required=True)
@pass_ctx
def review_discard(c: Ctx, message_ids: tuple[int, ...]) -> None:
    """Discard held mail: kept, suppressed, never answered."""
    from mailcase.rules.review import discard

    with transaction(c.engine) as conn:
        for pk in message_ids:
            discard(conn, pk, c.clock.now(), _actor())
    click.echo(f"discarded {len(message_ids)}")


# -- batches, cases, specialists ----------------------------------------------------


@cli.command()
@click.option("--dry-run", is_flag=True, help="Show what the next due cutoff would do; change nothing.")
@click.option("--now", "now_", is_flag=True, help="Run every due cutoff now (the service does this on its own).")
@pass_ctx
def batch(c: Ctx, dry_run: bool, now_: bool) -> None:
    """Close due cutoffs: pending mail becomes cases, acknowledgements and notices are queued."""
    from mailcase.cutoff.batch import run_due

    if dry_run == now_:
        raise UsageError("give --dry-run or --now")
    run = run_due(c.engine, c.config, c.clock, dry_run=dry_run)
    for r in run.results:
        click.echo(("dry run: " if dry_run else "") + r.summary())
        if dry_run and r.cases:
            click.echo(f"  would create cases #{r.cases[0]:06d}..#{r.cases[-1]:06d}")
    if run.waiting:
        click.echo(run.waiting)
    elif not run.results:
        nxt = run.next_cutoff
        click.echo("no cutoff is due" + (f"; next at {nxt:%Y-%m-%d %H:%M} UTC" if nxt else ""))


@cli.group()
def cases() -> None:
    """Cases: list and show."""


@cases.command("list")
@click.option("--status", help="new, acknowledged, in-progress, escalated, resolved, closed, held, out-of-scope")
@click.option("--account", help="Account code.")
@click.option("--owner", help="Specialist name.")
@click.option("--severity", type=click.IntRange(1, 4))
@click.option("--breached", is_flag=True, help="Only cases past the 48-hour promise without a receipt in time.")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
@pass_ctx
def cases_list(c: Ctx, status: str | None, account: str | None, owner: str | None, severity: int | None,
               breached: bool, limit: int) -> None:
    """Cases in queue order (priority, then number)."""
    from mailcase.domain.cases import list_cases

    with c.engine.connect() as conn:
        rows = list_cases(conn, status=status, account=account, owner=owner, severity=severity,
                          breached=breached, now=c.clock.now(), limit=limit)
    if not rows:
        click.echo("no cases")
    for r in rows:
        click.echo(f"#{r.number:06d} {r.status:<13} S{r.severity} {r.tier:<5} {_short(r.account or '-', 10):<10} "
                   f"{_short(r.owner or '-', 12):<12} {_short(r.requester, 28):<28} {_short(r.subject, 40)}"
                   + (f"  [{', '.join(r.flags)}]" if r.flags else ""))


@cases.command("show")
@click.argument("number", type=int)
@pass_ctx
def cases_show(c: Ctx, number: int) -> None:
    """One case: fields, mails, events."""
    from mailcase.domain.cases import case_detail

    with c.engine.connect() as conn:
        v, mails, events = case_detail(conn, number)
    click.echo(f"case #{v.number:06d}  {v.status}  severity {v.severity}  priority {v.priority}  tier {v.tier}")
    click.echo(f"  subject:    {v.subject}")
    click.echo(f"  requester:  {v.requester}  account {v.account or '-'}  owner {v.owner or '-'}")
    if v.flags:
        click.echo(f"  flags:      {', '.join(v.flags)}")
    for label, value in (("received", v.received_at), ("processed", v.processed_at), ("answer due", v.ack_due_at),
                         ("answer by", v.ack_breach_at), ("ack sent", v.receipt_sent_at),
                         ("answered", v.first_response_at), ("first staff", v.first_staff_action_at),
                         ("resolved", v.resolved_at), ("closed", v.closed_at)):
        click.echo(f"  {label + ':':<12}{_fmt_time(value)}")
    click.echo("mails:")
    for m in mails:
        click.echo(f"  #{m.id:<6} {m.role:<10} {_fmt_time(m.received_at)}  {_short(m.from_addr, 30):<30} {_short(m.subject, 40)}")
    click.echo("events:")
    for e in events:
        click.echo(f"  {_fmt_time(e.at)}  {e.actor:<12} {e.kind}{': ' + e.detail if e.detail else ''}")


@cli.group()
def case() -> None:
    """Work a case: assign, reply, escalate, resolve, close, reopen."""


@case.command("assign")
@click.argument("number", type=int)
@click.argument("specialist")
@pass_ctx
def case_assign(c: Ctx, number: int, specialist: str) -> None:
    """Give the case to a specialist."""
    from mailcase.domain.cases import assign

    with transaction(c.engine) as conn:
        assign(conn, number, specialist, c.clock.now(), _actor())
    click.echo(f"case #{number:06d}: owner {specialist}")


@case.command("escalate")
@click.argument("number", type=int)
@click.option("--to", "tier", required=True, type=click.Choice(["SSII", "SSIII", "DEV"], case_sensitive=False))
@click.option("--note", default="", help="Why.")
@pass_ctx
def case_escalate(c: Ctx, number: int, tier: str, note: str) -> None:
    """Raise the case's tier; the owner stays (the first specialist keeps ownership)."""
    from mailcase.domain.cases import escalate

    with transaction(c.engine) as conn:
        before = escalate(conn, number, tier, c.clock.now(), _actor(), note)
    click.echo(f"case #{number:06d}: {before} -> {tier.upper()}, owner unchanged")


@case.command("progress")
@click.argument("number", type=int)
@pass_ctx
def case_progress(c: Ctx, number: int) -> None:
    """Mark the case in progress."""
    from mailcase.domain.cases import CaseStatus, set_status

    with transaction(c.engine) as conn:
        set_status(conn, number, CaseStatus.IN_PROGRESS, c.clock.now(), _actor())
    click.echo(f"case #{number:06d}: in-progress")


@case.command("resolve")
@click.argument("number", type=int)
@click.option("--note", required=True, help="The resolution (sent to the requester).")
@pass_ctx
def case_resolve(c: Ctx, number: int, note: str) -> None:
    """Resolve the case: queue the resolution mail, and the survey after its delay."""
    from mailcase.outbound.surveys import resolve

    with transaction(c.engine) as conn:
        _, no_survey = resolve(conn, c.config, number, note, c.clock.now(), _actor())
    click.echo(f"case #{number:06d}: resolved, resolution mail queued; "
               + (f"no survey: {no_survey}" if no_survey else
                  f"survey follows in {c.config.surveys.delay_hours:g} h"))


@case.command("close")
@click.argument("number", type=int)
@pass_ctx
def case_close(c: Ctx, number: int) -> None:
    """Close the case (its solution is verified)."""
    from mailcase.domain.cases import CaseStatus, set_status

    with transaction(c.engine) as conn:
        set_status(conn, number, CaseStatus.CLOSED, c.clock.now(), _actor())
    click.echo(f"case #{number:06d}: closed")


@case.command("reopen")
@click.argument("number", type=int)
@pass_ctx
def case_reopen(c: Ctx, number: int) -> None:
    """Reopen a resolved or closed case."""
    from mailcase.domain.cases import reopen

    with transaction(c.engine) as conn:
        reopen(conn, number, c.clock.now(), _actor())
    click.echo(f"case #{number:06d}: reopened (in-progress)")


@case.command("reply")
@click.argument("number", type=int)
@click.option("--text", help="The reply; or --file, or standard input.")
@click.option("--file", "file_", type=click.File("r"), help="Read the reply from a file ('-' for stdin).")
@click.option("--as", "staff", help="Signed by this specialist (default: the case owner).")
@pass_ctx
def case_reply(c: Ctx, number: int, text: str | None, file_: Any, staff: str | None) -> None:
    """Queue a staff reply in the case's thread (to the requester)."""
    from mailcase.outbound.staffmail import queue_reply

    body = text if text is not None else (file_.read() if file_ else None)
    if not body or not body.strip():
        raise UsageError("give the reply with --text or --file")
    with transaction(c.engine) as conn:
        row_key = queue_reply(conn, c.config, number, body, staff, c.clock.now(), _actor())
    click.echo(f"case #{number:06d}: reply queued ({row_key})")


@cli.group()
def specialists() -> None:
    """Support specialists (case owners)."""


@specialists.command("add")
@click.argument("name")
@click.option("--address", help="Their mail address (their mail on a case is a staff note).")
@click.option("--tier", default="SSI", show_default=True, type=click.Choice(["SSI", "SSII", "SSIII", "DEV"]))
@pass_ctx
def specialists_add(c: Ctx, name: str, address: str | None, tier: str) -> None:
    """Add (or reactivate) a specialist; new cases go to active SSI specialists."""
    from mailcase.domain.cases import add_specialist

    with transaction(c.engine) as conn:
        add_specialist(conn, name, address.lower() if address else None, tier, c.clock.now())
    click.echo(f"specialist {name} ({tier}) active")


@specialists.command("list")
@pass_ctx
def specialists_list(c: Ctx) -> None:
    """Specialists with their open cases."""
    from mailcase.domain.cases import list_specialists

    with c.engine.connect() as conn:
        rows = list_specialists(conn)
    if not rows:
        click.echo("no specialists (mailcase specialists add NAME)")
    for name, address, tier, active, n in rows:
        click.echo(f"{name:<20} {tier:<5} {'active' if active else 'inactive':<8} {n:>4} open  {address or ''}")


@specialists.command("deactivate")
@click.argument("name")
@pass_ctx
def specialists_deactivate(c: Ctx, name: str) -> None:
    """Stop assigning new cases to a specialist (their cases stay theirs)."""
    from mailcase.domain.cases import deactivate_specialist

    with transaction(c.engine) as conn:
        deactivate_specialist(conn, name)
    click.echo(f"specialist {name} deactivated")


# -- outbox, render, report -------------------------------------------------------------


@cli.group()
def outbox() -> None:
    """Mail we owe or sent."""


@outbox.command("list")
@click.option("--status", type=click.Choice(["queued", "sending", "sent", "failed", "cancelled", "capped", "suppressed"]))
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@pass_ctx
def outbox_list(c: Ctx, status: str | None, limit: int) -> None:
    """Outbox rows, newest last."""
    from mailcase.outbound.outbox import list_outbox

    with c.engine.connect() as conn:
        rows = list_outbox(conn, status, limit)
    if not rows:
        click.echo("outbox is empty")
    for r in rows:
        click.echo(f"{r.id:>6} {r.status:<9} {r.kind:<24} {_short(r.to_addr, 30):<30} {_short(r.subject, 40)}"
                   + (f"  ({_short(r.last_error, 50)})" if r.last_error else ""))


@outbox.command("retry")
@click.argument("row_ids", type=int, nargs=-1)
@click.option("--failed", "all_failed", is_flag=True, help="Every failed row.")
@pass_ctx
def outbox_retry(c: Ctx, row_ids: tuple[int, ...], all_failed: bool) -> None:
    """Queue rows again now (failed, capped or waiting for a retry)."""
    from mailcase.outbound.outbox import retry_rows

    if all_failed == bool(row_ids):
        raise UsageError("give ROW_IDS or --failed")
    with transaction(c.engine) as conn:
        n = retry_rows(conn, None if all_failed else list(row_ids), c.clock.now())
    click.echo(f"{n} rows queued again")


@outbox.command("cancel")
@click.argument("row_ids", type=int, nargs=-1, required=True)
@pass_ctx
def outbox_cancel(c: Ctx, row_ids: tuple[int, ...]) -> None:
    """Never send these rows (queued, failed or capped ones)."""
    from mailcase.outbound.outbox import cancel_rows

    with transaction(c.engine) as conn:
        n = cancel_rows(conn, list(row_ids), _actor())
    click.echo(f"{n} rows cancelled")


@outbox.command("deliver")
@pass_ctx
def outbox_deliver(c: Ctx) -> None:
    """Send what is due now through the configured transport (the service does this on its own)."""
    from mailcase.outbound.outbox import deliver_due, transport_for

    r = deliver_due(c.engine, transport_for(c.config, c.engine, c.clock), c.clock.now(), c.config)
    click.echo(f"sent {r.sent}, deferred {r.retried}, failed {r.failed}, capped {r.capped}, suppressed {r.suppressed}")
    if r.failed:
        sys.exit(1)


@cli.group()
def suppress() -> None:
    """Addresses we never send to (hard bounces)."""


@suppress.command("list")
@pass_ctx
def suppress_list(c: Ctx) -> None:
    """Suppressed addresses with why and since when."""
    from mailcase.outbound.bounces import suppressed

    with c.engine.connect() as conn:
        rows = suppressed(conn)
    if not rows:
        click.echo("no address is suppressed")
    for r in rows:
        click.echo(f"{r.address:<40} since {_fmt_time(r.since_at)}  {r.reason}")


@suppress.command("clear")
@click.argument("address")
@pass_ctx
def suppress_clear(c: Ctx, address: str) -> None:
    """Send to ADDRESS again."""
    from mailcase.outbound.bounces import clear

    with transaction(c.engine) as conn:
        done = clear(conn, address, _actor(), c.clock.now())
    if not done:
        raise UsageError(f"{address} is not suppressed")
    click.echo(f"{address}: no longer suppressed")


@cli.group()
def kb() -> None:
    """The knowledge base behind suggested solutions."""


@kb.command("reindex")
@click.option("--path", help="Folder of Markdown articles or a CSV (default: kb.path).")
@pass_ctx
def kb_reindex(c: Ctx, path: str | None) -> None:
    """Load the articles and rebuild the full-text index."""
    from pathlib import Path

    from mailcase.outbound.kb import load_articles, reindex

    source = path or c.config.kb.path
    if not source:
        raise UsageError("no knowledge base configured (kb.path) and no --path")
    articles = load_articles(Path(source))
    with transaction(c.engine) as conn:
        n = reindex(conn, articles)
    click.echo(f"indexed {n} articles from {source}")


@kb.command("search")
@click.argument("text", nargs=-1, required=True)
@pass_ctx
def kb_search(c: Ctx, text: tuple[str, ...]) -> None:
    """The articles an acknowledgement would suggest for TEXT."""
    from mailcase.outbound.kb import suggest

    with c.engine.connect() as conn:
        found = suggest(conn, " ".join(text), c.config.kb.suggestions or 3, c.config.kb.min_score)
    if not found:
        click.echo("no article matches")
    for s in found:
        click.echo(f"{s.score:.2f}  {s.title}  {s.url}")


@outbox.command("show")
@click.argument("row_id", type=int)
@click.option("--raw", is_flag=True, help="Print the exact bytes queued.")
@pass_ctx
def outbox_show(c: Ctx, row_id: int, raw: bool) -> None:
    """One outbox row."""
    from mailcase.outbound.outbox import get_row

    with c.engine.connect() as conn:
        r = get_row(conn, row_id)
    if raw:
        click.echo(r.raw.decode("utf-8", "replace"))
        return
    for label, value in (("key", r.key), ("kind", r.kind), ("status", r.status), ("to", r.to_addr),
                         ("envelope", r.envelope_from), ("message-id", r.message_id), ("subject", r.subject),
                         ("attempts", r.attempts), ("next attempt", _fmt_time(r.next_attempt_at)),
                         ("created", _fmt_time(r.created_at)), ("sent", _fmt_time(r.sent_at)),
                         ("reason", r.status_reason or "-"), ("last error", r.last_error or "-")):
        click.echo(f"{label + ':':<14}{value}")


@cli.command()
@click.argument("kind", type=click.Choice(["ack", "notice", "reply"]))
@click.option("--case", "number", type=int, required=True, help="Render for this case.")
@click.option("--notice", "notice_kind", default="unknown-sender", show_default=True,
              help="For KIND=notice: unknown-sender, not-authorized, unverified-sender, which-account, pin, hold, out-of-scope.")
@click.option("--html", is_flag=True, help="Print the HTML part instead of the text.")
@pass_ctx
def render(c: Ctx, kind: str, number: int, notice_kind: str, html: bool) -> None:
    """Preview a mail for a case from the templates (nothing is queued)."""
    from mailcase.outbound.staffmail import preview

    with c.engine.connect() as conn:
        rendered = preview(conn, c.config, kind, number, notice_kind, c.clock.now())
    click.echo(f"Subject: {rendered.subject}")
    click.echo("")
    click.echo(rendered.html if html else rendered.text)


@cli.command()
@click.option("--since", callback=lambda c, p, v: _date(c, p, v), metavar="DATE", help="Only from DATE (YYYY-MM-DD).")
@click.option("--format", "fmt", type=click.Choice(["text", "csv", "json"]), default="text", show_default=True)
@pass_ctx
def report(c: Ctx, since: date | None, fmt: str) -> None:
    """Cutoffs, the 24/48-hour promise, breaches, severities, tiers, abuse flags."""
    from datetime import UTC

    from mailcase.ops import report as reports

    start = datetime(since.year, since.month, since.day, tzinfo=UTC) if since else None
    with c.engine.connect() as conn:
        r = reports.build(conn, c.clock.now(), start)
    click.echo({"text": reports.as_text, "csv": reports.as_csv, "json": reports.as_json}[fmt](r))


# -- operations: status, check, purge, erase ----------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def status(c: Ctx, as_json: bool) -> None:
    """What the service is doing: mailboxes, tokens, pending mail, the next cutoff, backlogs."""
    from dataclasses import asdict

    from mailcase.core.errors import DatabaseUnavailable
    from mailcase.ops.status import EXIT_DATABASE, collect

    try:
        st = collect(c.engine, c.config, c.clock)
    except DatabaseUnavailable as exc:
        if as_json:
            click.echo(json.dumps({"database": f"unreachable: {exc}", "health": "unknown",
                                   "exit_code": EXIT_DATABASE}, indent=2))
        else:
            click.echo(f"database: unreachable: {exc}")
        sys.exit(EXIT_DATABASE)
    if as_json:
        click.echo(json.dumps(asdict(st), default=str, indent=2))
        sys.exit(st.exit_code)
    _print_status(st)
    sys.exit(st.exit_code)


def _print_status(st: Any) -> None:
    click.echo(f"health: {st.health}" + "".join(f"\n  - {p}" for p in st.problems))
    for d in st.daemons:
        click.echo(f"service: {d.holder} ({'alive' if d.alive else 'gone'}, registered until "
                   f"{d.expires_at:%H:%M:%S} UTC)")
    if st.test_clock:
        click.echo(f"TEST CLOCK in effect: now is {st.now:%Y-%m-%d %H:%M} UTC")
    click.echo(f"sender authentication: {st.sender_authentication}")
    for m in st.mailboxes:
        state = m.state or "never run"
        since = f" since {_fmt_time(m.state_since)}" if m.state_since else ""
        beat = "never" if m.heartbeat_age_seconds is None else f"{m.heartbeat_age_seconds:.0f} s ago"
        click.echo(f"mailbox {m.name} ({m.kind}{', disabled' if not m.enabled else ''}): {state}{since}, "
                   f"{m.mode or '-'}; last sync {_fmt_time(m.last_sync_ok_at)}; heartbeat {beat}"
                   f"{' (STALE)' if m.stale else ''}; {m.pending} pending"
                   + (f"; worker {m.worker}" if m.worker else ""))
        if m.last_error:
            click.echo(f"    last error ({_fmt_time(m.last_error_at)}): {m.last_error}")
        if m.token is not None:
            click.echo(f"    token: {'ok' if m.token.ok else 'WARNING'}: {m.token.detail}")
    click.echo(f"mail: {st.pending_mail} pending for the next cutoff, {st.unclassified_mail} not yet classified, "
               f"{st.held_for_review} held for review, {st.quarantined} quarantined")
    if st.due_cutoff:
        click.echo(f"cutoff {_fmt_time(st.due_cutoff)} is due" +
                   (f" but blocked: {st.cutoff_blocked}" if st.cutoff_blocked else ""))
    click.echo(f"next cutoff: {_fmt_time(st.next_cutoff)}")
    click.echo(f"outbox: {st.outbox_queued} queued ({st.outbox_deferred} deferred), {st.outbox_failed} failed, "
               f"{st.outbox_capped} capped, {st.outbox_suppressed} suppressed; {st.open_cases} open cases")
    for note in st.notes:
        click.echo(f"note: {note}")


@cli.command()
@pass_ctx
def check(c: Ctx) -> None:
    """Validate the configuration and try every connection, one line per check with the fix."""
    from mailcase.ops.check import run_checks

    engine = None
    try:
        engine = c.engine
    except MailcaseError:
        engine = None
    failed = 0
    for ch in run_checks(c.config, engine, c.clock):
        mark = "ok  " if ch.ok else "FAIL"
        click.echo(f"{mark} {ch.what}: {ch.detail}" + (f" -- fix: {ch.fix}" if ch.fix and not ch.ok else ""))
        failed += not ch.ok
    if failed:
        sys.exit(1)


@cli.command()
@click.option("--before", "before", callback=lambda c, p, v: _date(c, p, v), required=True, metavar="DATE",
              help="Mail received before DATE (YYYY-MM-DD).")
@click.option("--dry-run", is_flag=True, help="Count what would go; remove nothing.")
@click.option("--raw/--no-raw", default=True, help="Remove the raw mail (default yes).")
@click.option("--text/--no-text", default=True, help="Remove the parsed text (default yes).")
@pass_ctx
def purge(c: Ctx, before: date, dry_run: bool, raw: bool, text: bool) -> None:
    """Remove raw mail and text of mail received before DATE (never of an open case; counts stay)."""
    from datetime import UTC

    from mailcase.ops.retention import purge as do_purge
    from mailcase.ops.retention import purgeable

    when = datetime(before.year, before.month, before.day, tzinfo=UTC)
    if dry_run:
        with c.engine.connect() as conn:
            click.echo(f"dry run: {len(purgeable(conn, when))} mails received before {before} could be purged")
        return
    with transaction(c.engine) as conn:
        r = do_purge(conn, when, raw=raw, text=text)
    click.echo(f"purged {r.summary()}")


@cli.command()
@click.option("--address", required=True, help="The person's mail address.")
@click.option("--dry-run", is_flag=True, help="Count what would be erased.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def erase(c: Ctx, address: str, dry_run: bool, yes: bool) -> None:
    """Erase a person's mail and personal data (rows and counts stay, contents go)."""
    from mailcase.ops.retention import erase as do_erase

    if dry_run:
        from mailcase.domain.db import WRITE

        with c.engine.connect() as conn:
            conn = conn.execution_options(**{WRITE: True})
            trans = conn.begin()
            r = do_erase(conn, address, c.clock.now())
            trans.rollback()
        click.echo(f"dry run: would erase {r.summary()} of {address}")
        return
    if not yes and sys.stdin.isatty() and not click.confirm(f"erase everything about {address}?"):
        raise click.Abort()
    with transaction(c.engine) as conn:
        r = do_erase(conn, address, c.clock.now())
    click.echo(f"erased {r.summary()} of {address}")


# -- entry point ------------------------------------------------------------------


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"mailcase: {message}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        rv = cli.main(args=argv, prog_name="mailcase", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(0)
    except click.UsageError as exc:
        hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx else ""
        _fail(exc.format_message().replace("\n", " ") + hint, exc.exit_code)
    except click.Abort:
        _fail("aborted", 130)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except MailcaseError as exc:
        if debug:
            raise
        _fail(str(exc).replace("\n", " "), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as exc:
        if debug:
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", EXIT_INTERNAL)
    sys.exit(rv if isinstance(rv, int) else 0)
