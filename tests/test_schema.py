"""The schema: the migrations build exactly what the models declare, and every table has one handle."""

from __future__ import annotations

import importlib
import pkgutil

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

import mailcase.domain.models
from mailcase.domain import tables
from mailcase.domain.db import head_revision, in_models, make_engine, upgrade


def _all_model_modules() -> list[str]:
    """Every module of the models package, imported: a module tables.py forgot still declares its tables."""
    names = [m.name for m in pkgutil.iter_modules(mailcase.domain.models.__path__, "mailcase.domain.models.")]
    for name in names:
        importlib.import_module(name)
    return names


def test_migrations_head_is_the_models_schema(db_url: str) -> None:
    _all_model_modules()
    engine = make_engine(db_url)
    try:
        assert upgrade(engine) == (None, head_revision())
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"include_object": in_models, "compare_type": True}
            )
            diff = compare_metadata(context, SQLModel.metadata)
    finally:
        engine.dispose()
    assert diff == [], "the migrations' head differs from the models (write a migration):\n" + "\n".join(
        map(str, diff)
    )


def test_every_table_has_exactly_one_handle() -> None:
    assert len(_all_model_modules()) >= 2
    handles: dict[str, list[str]] = {}
    for attr, value in vars(tables).items():
        if isinstance(value, sa.Table):
            handles.setdefault(value.name, []).append(attr)
    declared = set(SQLModel.metadata.tables)
    assert declared, "no tables declared"
    missing = declared - set(handles)
    assert not missing, f"tables without a handle in mailcase/domain/tables.py: {sorted(missing)}"
    twice = {name: attrs for name, attrs in handles.items() if len(attrs) > 1}
    assert not twice, f"tables with more than one handle: {twice}"
    unknown = set(handles) - declared
    assert not unknown, f"handles of tables no model declares: {sorted(unknown)}"
