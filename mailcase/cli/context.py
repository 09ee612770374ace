"""What every command is given: the configuration and database (loaded on first use), the clock."""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterable
from datetime import date

import click
from sqlalchemy.engine import Engine

from mailcase.config.loader import find_config
from mailcase.config.settings import Config
from mailcase.core.clock import Clock, process_clock
from mailcase.domain.db import open_engine


class Ctx:
    def __init__(self, config_path: str | None, debug: bool, demo: bool = False) -> None:
        self.config_path = config_path
        self.debug = debug
        #: run on the embedded demo (``--demo``) instead of a configuration file
        self.demo = demo
        self._config: Config | None = None
        self._engine: Engine | None = None
        self.clock: Clock = process_clock()
        self.verbose = 0

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = find_config(self.config_path, self.demo)
        return self._config

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = open_engine(
                self.config.database_url, self.config.database.busy_timeout_seconds
            )
        return self._engine


pass_ctx = click.make_pass_decorator(Ctx)


def actor() -> str:
    """Who did it, for the case and account events: the user behind sudo, else the login."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


def parse_date(_ctx: click.Context, _param: click.Parameter, value: str | None) -> date | None:
    """Option callback: YYYY-MM-DD."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


class AnyCase(click.Choice[str]):
    """A fixed set of values (an enum's), accepted in any case; the command gets, and the error
    lists, each value as stored (``ssii`` -> ``SSII``)."""

    def __init__(self, values: Iterable[str]) -> None:
        super().__init__(list(values), case_sensitive=False)

    def get_invalid_choice_message(self, value: object, ctx: click.Context | None) -> str:
        return f"{value!r} is not one of {', '.join(map(repr, self.choices))}."
