"""How the commands print: times, shortened text, ``--json``."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click


def fmt_time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"


def short(text: str | None, width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def echo_json(value: Any, *, ensure_ascii: bool = True) -> None:
    """``--json`` output: indented, anything not JSON (times, paths) as its ``str``."""
    click.echo(json.dumps(value, default=str, indent=2, ensure_ascii=ensure_ascii))
