"""Alembic environment: runs on the connection mailcase hands over."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from mailcase.domain import tables  # noqa: F401  (imports every model module: registers the tables)
from mailcase.domain.db import in_models, make_engine

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set sqlalchemy.url or pass a connection")
    connection = make_engine(url).connect()

context.configure(
    connection=connection,
    include_object=in_models,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
