"""How the commands print: times, shortened text, ``--json``."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import datetime
from typing import Any

import click


def fmt_time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"


#: what a sender's text must not send to a terminal: C0 and C1 controls but tab and
#: line ends (escape sequences clear screens and write clipboards), DEL, the line and
#: paragraph separators and the bidirectional overrides (text that reads backwards)
_UNPRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str | None) -> str:
    """A sender's text made safe for a terminal: every control character shown as U+FFFD."""
    return _UNPRINTABLE.sub("\ufffd", text or "")


def echo(message: Any = "", **kwargs: Any) -> None:
    """``click.echo`` for every line a command prints: a sender's text in it cannot drive the terminal."""
    click.echo(printable(message) if isinstance(message, str) else message, **kwargs)


def short(text: str | None, width: int) -> str:
    text = " ".join(printable(text).split())
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
