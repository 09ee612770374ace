"""Rendering mail from Jinja2 templates.

Each kind has ``KIND.txt.j2`` (its first line is ``Subject: ...``, then a
blank line, then the text body) and ``KIND.html.j2`` (the HTML body).  The
environment is sandboxed, undefined variables are errors (StrictUndefined),
and HTML templates autoescape.  What a sender wrote (subject, name, body)
only ever arrives as a *variable*: it is never compiled as template source,
so it cannot run template code, and in HTML it is escaped.

Templates are found in ``outgoing.templates_dir`` if set, else the
``templates/`` folder of a source checkout, else the copy installed with
mailcase (``<prefix>/share/mailcase/templates``).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from mailcase.core.errors import ConfigError
from mailcase.mail.subjects import format_case_token, format_survey_token

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def clean_header_text(text: str, limit: int = 200) -> str:
    """Display text safe in a header: no CR/LF or control characters, bounded."""
    text = _CONTROL.sub(" ", text or "")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def template_dirs(configured: str | None) -> list[Path]:
    if configured:
        return [Path(configured)]
    here = Path(__file__).resolve().parent.parent
    return [
        here.parent / "templates",                       # a source checkout
        Path(sys.prefix) / "share" / "mailcase" / "templates",  # installed
    ]


def find_templates(configured: str | None) -> Path:
    for d in template_dirs(configured):
        if (d / "ack.txt.j2").exists():
            return d
    where = ", ".join(str(d) for d in template_dirs(configured))
    raise ConfigError(f"outgoing.templates_dir: no mailcase templates found (looked in {where})")


@lru_cache(maxsize=8)
def environment(folder: str) -> jinja2.Environment:
    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(folder),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2", "html"), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["case_token"] = format_case_token
    env.filters["survey_token"] = format_survey_token
    env.filters["local_time"] = lambda d, fmt="%a %d %b %Y %H:%M %Z": d.strftime(fmt) if d else ""
    return env


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def render(folder: Path, kind: str, variables: dict[str, Any]) -> Rendered:
    env = environment(str(folder))
    try:
        text = env.get_template(f"{kind}.txt.j2").render(variables)
        html = env.get_template(f"{kind}.html.j2").render(variables)
    except jinja2.TemplateNotFound as exc:
        raise ConfigError(f"templates: {folder}/{exc.name} is missing") from None
    except jinja2.TemplateError as exc:
        raise ConfigError(f"templates: {kind}: {type(exc).__name__}: {exc}") from None
    first, _, body = text.partition("\n")
    if not first.lower().startswith("subject:"):
        raise ConfigError(f"templates: {kind}.txt.j2 must start with a 'Subject:' line")
    return Rendered(clean_header_text(first[8:].strip(), 250), body.lstrip("\n"), html)
