"""Rendering mail from Jinja2 templates.

Each kind has ``KIND.txt.j2`` (its first line is ``Subject: ...``, then a
blank line, then the text body) and ``KIND.html.j2`` (the HTML body).  The
environment is sandboxed, undefined variables are errors (StrictUndefined),
and HTML templates autoescape.  What a sender wrote (subject, name, body)
only ever arrives as a *variable*: it is never compiled as template source,
so it cannot run template code, and in HTML it is escaped.

The templates ship inside the package (``mailcase/templates``) and are read
through :mod:`importlib.resources`, so they are found wherever mailcase is
imported from: a source checkout, a virtualenv, ``pip install --user`` or
``--target``.  ``outgoing.templates_dir``, if set, is an override folder in
front of them: a file there replaces the packaged template of the same name,
every other template still comes from the package.
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import jinja2
from jinja2.loaders import split_template_path
from jinja2.sandbox import SandboxedEnvironment

from mailcase.core.errors import ConfigError
from mailcase.mail.subjects import format_case_token, format_survey_token

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def clean_header_text(text: str, limit: int = 200) -> str:
    """Display text safe in a header: no CR/LF or control characters, bounded."""
    text = _CONTROL.sub(" ", text or "")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def packaged() -> Traversable:
    """The templates shipped inside the package (a folder, or a place in a zip)."""
    return importlib.resources.files("mailcase") / "templates"


class PackagedLoader(jinja2.BaseLoader):
    """Loads the packaged templates through importlib.resources rather than a file
    system path, so an install that is not a plain folder (a zip) works too."""

    def __init__(self, root: Traversable) -> None:
        self.root = root

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        path = self.root
        for piece in split_template_path(template):  # refuses "..", as FileSystemLoader does
            path = path / piece
        if not path.is_file():
            raise jinja2.TemplateNotFound(template)
        return path.read_text(encoding="utf-8"), str(path), lambda: True  # shipped files do not change

    def list_templates(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_file() and p.name.endswith(".j2"))


@lru_cache(maxsize=8)
def environment(override: str | None) -> jinja2.Environment:
    """One environment per override folder (None: the packaged templates alone), cached
    so compiled templates are reused; the daemon clears the cache on reload."""
    loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(override)] if override else []
    loaders.append(PackagedLoader(packaged()))
    env = SandboxedEnvironment(
        loader=jinja2.ChoiceLoader(loaders),
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
class Templates:
    """The templates mail is rendered from: the override folder, if any, in front of the packaged set."""

    override: Path | None
    env: jinja2.Environment = field(repr=False, compare=False)

    def where(self) -> str:
        shipped = f"packaged ({packaged()})"
        return f"override {self.override}, then {shipped}" if self.override else shipped

    def compile_all(self) -> list[str]:
        """Compile every template (override and packaged): a syntax error shows now, not at a
        cutoff.  Returns the names that come from the override folder."""
        names = sorted({n for n in self.env.list_templates() if n.endswith(".j2")})
        for name in names:
            try:
                self.env.get_template(name)
            except jinja2.TemplateError as exc:
                raise ConfigError(f"templates: {name}: {type(exc).__name__}: {exc}") from None
        return [n for n in names if self.override and (self.override / n).is_file()]


def templates(override: str | None) -> Templates:
    """The templates to render with, ``override`` being ``outgoing.templates_dir``.

    A configured override folder that is not there is a configuration error
    naming the key: the operator set it, and mail would otherwise silently go
    out with the packaged templates.
    """
    if not override:
        return Templates(None, environment(None))
    folder = Path(override)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ConfigError(f"outgoing.templates_dir: {folder} {what} (remove the key to use the packaged templates)")
    return Templates(folder, environment(str(folder)))


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def render(source: Templates, kind: str, variables: dict[str, Any]) -> Rendered:
    env = source.env
    try:
        text = env.get_template(f"{kind}.txt.j2").render(variables)
        html = env.get_template(f"{kind}.html.j2").render(variables)
    except jinja2.TemplateNotFound as exc:
        raise ConfigError(f"templates: {exc.name} is missing (looked in {source.where()})") from None
    except jinja2.TemplateError as exc:
        raise ConfigError(f"templates: {kind}: {type(exc).__name__}: {exc}") from None
    first, _, body = text.partition("\n")
    if not first.lower().startswith("subject:"):
        raise ConfigError(f"templates: {kind}.txt.j2 must start with a 'Subject:' line")
    return Rendered(clean_header_text(first[8:].strip(), 250), body.lstrip("\n"), html)
