"""The ``mailcase`` command: the only place that prints or exits.

This module is the root: its global options, and the one-line error
handling of ``main``.  Each command group lives in its own module and lists
its commands in ``COMMANDS``; this module adds them all (the group modules
never import this one).

A mistake (bad option, bad config, unreachable server, unknown id) prints one
line on stderr and exits non-zero; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import logging
import sys
from typing import NoReturn

import click
from click.core import ParameterSource

from mailcase import __version__
from mailcase.cli import (
    cases,
    cutoff,
    db,
    directory,
    ingest,
    kb,
    messages,
    outbox,
    quarantine,
    render,
    report,
    retention,
    review,
    service,
)
from mailcase.cli.context import Ctx
from mailcase.cli.output import echo
from mailcase.core import log as logsetup
from mailcase.core.errors import MailcaseError

EXIT_INTERNAL = 70  # EX_SOFTWARE

#: every command group, in the order mail flows (``--help`` lists commands by name)
GROUPS = (db, ingest, service, quarantine, messages, review, directory, cutoff, cases, outbox, kb, render,
          report, retention)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config", "config_path", metavar="FILE", envvar="MAILCASE_CONFIG",
    help="Configuration file (default: $MAILCASE_CONFIG, else /etc/mailcase/mailcase.toml).",
)
@click.option("--demo", is_flag=True,
              help="Run on the embedded demo instead: SQLite in ./mailcase-data, the sample mailbox and "
              "directory, outgoing mail as files.")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(__version__, prog_name="mailcase")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, demo: bool, verbose: int, debug: bool) -> None:
    """mailcase turns a support mailbox into cases, following the support agreement.

    Mail is stored as it arrives (IMAP or a Maildir), parsed behind ingestion,
    and kept forever in a ledger; see `mailcase COMMAND --help`.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logsetup.setup(level)
    if demo and config_path and ctx.get_parameter_source("config_path") is ParameterSource.COMMANDLINE:
        raise click.UsageError("--demo and --config exclude each other")
    ctx.obj = Ctx(config_path, debug, demo)
    ctx.obj.verbose = verbose


for _group in GROUPS:
    for _command in _group.COMMANDS:
        cli.add_command(_command)


def _fail(message: str, code: int) -> NoReturn:
    echo(f"mailcase: {message}", err=True)
    sys.exit(code)


def _config_after_command(exc: click.UsageError) -> bool:
    """``mailcase cases list --config x.toml``: the global option given to a subcommand."""
    return (isinstance(exc, click.NoSuchOption) and exc.option_name in ("--config", "-c")
            and exc.ctx is not None and exc.ctx.parent is not None)


def main(argv: list[str] | None = None) -> None:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        rv = cli.main(args=argv, prog_name="mailcase", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(0)
    except click.UsageError as exc:
        if _config_after_command(exc):
            where = exc.ctx.command_path.removeprefix("mailcase").strip() if exc.ctx else "COMMAND"
            _fail(f"--config goes before the command: mailcase --config FILE {where} ...", exc.exit_code)
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
