"""``mailcase kb``: the knowledge base behind suggested solutions."""

from __future__ import annotations

from pathlib import Path

import click

from mailcase.cli.context import Ctx, pass_ctx
from mailcase.cli.output import echo
from mailcase.core.errors import UsageError
from mailcase.domain.db import transaction
from mailcase.outbound.kb import load_articles, reindex, suggest


@click.group()
def kb() -> None:
    """The knowledge base behind suggested solutions."""


@kb.command("reindex")
@click.option("--path", help="Folder of Markdown articles or a CSV (default: kb.path).")
@pass_ctx
def kb_reindex(c: Ctx, path: str | None) -> None:
    """Load the articles and rebuild the full-text index."""
    source = path or c.config.kb.path
    if not source:
        raise UsageError("no knowledge base configured (kb.path) and no --path")
    articles = load_articles(Path(source))
    with transaction(c.engine) as conn:
        n = reindex(conn, articles)
    echo(f"indexed {n} articles from {source}")


@kb.command("search")
@click.argument("text", nargs=-1, required=True)
@pass_ctx
def kb_search(c: Ctx, text: tuple[str, ...]) -> None:
    """The articles an acknowledgement would suggest for TEXT."""
    with c.engine.connect() as conn:
        found = suggest(conn, " ".join(text), c.config.kb.suggestions or 3, c.config.kb.min_score)
    if not found:
        echo("no article matches")
    for s in found:
        echo(f"{s.score:.2f}  {s.title}  {s.url}")


COMMANDS: list[click.Command] = [kb]
