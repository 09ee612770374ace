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
from mailcase import log as logsetup
from mailcase.clock import Clock, is_test_clock, process_clock
from mailcase.config import Config, find_config
from mailcase.db import current_revision, head_revision, make_engine, open_engine, transaction
from mailcase.db import upgrade as db_upgrade
from mailcase.errors import MailcaseError, UsageError
from mailcase.states import MessageState

EXIT_INTERNAL = 70  # EX_SOFTWARE


class Ctx:
    def __init__(self, config_path: str | None, debug: bool) -> None:
        self.config_path = config_path
        self.debug = debug
        self._config: Config | None = None
        self._engine: Engine | None = None
        self.clock: Clock = process_clock()

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
    from mailcase.fetch import record_failure, sync_mailbox

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
    from mailcase.stages import BackgroundParser, run_headers_stage, run_parse_stage

    n = workers or c.config.ingest.parse_workers
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
    from mailcase.daemon import Daemon, run_pass

    config = c.config
    if config.source is None:
        click.echo(
            f"no configuration file: using embedded defaults (database {config.database_url}, "
            "sample mailbox)", err=True,
        )
    if is_test_clock(c.clock):
        logging.getLogger("mailcase").warning("event=test-clock now=%s", c.clock.now().isoformat())
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
    sys.exit(Daemon(c.engine, config, c.clock).run())


def _print_ledger(c: Ctx) -> None:
    from mailcase.messages import list_messages, state_counts

    with c.engine.connect() as conn:
        counts = state_counts(conn)
        rows = list_messages(conn, limit=20)
    total = sum(counts.values())
    click.echo(f"stored: {total} mails (" + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ")")
    for r in rows:
        click.echo(
            f"  #{r.id:<5} {r.state:<12} {'hist' if r.historical else '    '} "
            f"{_fmt_time(r.received_at):<21} {_short(r.from_addr, 28):<28} {_short(r.subject, 40)}"
        )
    if total > len(rows):
        click.echo(f"  ... ({total - len(rows)} more: mailcase messages list --limit N)")


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

    from mailcase.calendar import BusinessCalendar

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
    from mailcase.reprocess import ReprocessRequest, parse_uid_range
    from mailcase.reprocess import reprocess as do_reprocess

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
    from mailcase.quarantine import open_entries

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
    from mailcase.quarantine import get_entry

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
    from mailcase.quarantine import retry, retry_all

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
    from mailcase.messages import list_messages

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
    from mailcase.messages import message_detail

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
            extra.append(f"notice {cls['notice']} " + ("allowed" if cls["notice_allowed"] else "withheld"))
        extra.append(f"severity {cls['severity']}")
        if cls["flags"]:
            extra.append("flags " + ", ".join(cls["flags"]))
        click.echo(f"disposition: {cls['disposition']} ({cls['phase']}): " + "; ".join(extra))
    phase = None
    for v in d["verdicts"]:
        if v["phase"] != phase:
            phase = v["phase"]
            click.echo(f"verdicts ({phase}):")
        disp = f" -> {v['disposition']}" if v["disposition"] else ""
        click.echo(f"  {v['rule']}: {v['name']}{disp}: {v['reason']}")


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
