"""How the commands print: times, shortened text, ``--json``."""

from __future__ import annotations

import dataclasses
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


#: ``--json`` on a list or show command
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def as_data(value: Any) -> Any:
    """A row, a dataclass or a list of them as plain JSON-ready values (bytes left out)."""
    if isinstance(value, list | tuple) and not hasattr(value, "_mapping"):
        return [as_data(v) for v in value]
    if hasattr(value, "_mapping"):
        return {k: v for k, v in value._mapping.items() if not isinstance(v, bytes | memoryview)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: as_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value
