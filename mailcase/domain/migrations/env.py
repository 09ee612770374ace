"""Alembic environment: runs on the connection mailcase hands over."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from mailcase.domain import models  # noqa: F401  (registers the tables)

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    from mailcase.domain.db import make_engine

    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set sqlalchemy.url or pass a connection")
    connection = make_engine(url).connect()

def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    # the full-text search objects are made by hand in migration 0004
    return not (name or "").startswith(("kb_fts", "ix_kb_article_fts"))


context.configure(
    connection=connection,
    include_object=include_object,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
