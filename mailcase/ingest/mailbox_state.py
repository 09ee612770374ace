"""A mailbox's rows: its sync position in ``mailbox_state`` and the source name its raw copies carry."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mailcase.domain.db import insert_ignore, transaction
from mailcase.domain.tables import MAILBOX_STATE


def mailbox_source(name: str) -> str:
    return f"mailbox:{name}"


def load_state(conn: Connection, name: str) -> dict[str, Any]:
    insert_ignore(
        conn, MAILBOX_STATE, [{"name": name, "last_uid": 0, "historical_below_uid": 0}], ["name"]
    )
    row = conn.execute(sa.select(MAILBOX_STATE).where(MAILBOX_STATE.c.name == name)).one()
    return dict(row._mapping)


def update_state(conn: Connection, name: str, **values: Any) -> None:
    conn.execute(sa.update(MAILBOX_STATE).where(MAILBOX_STATE.c.name == name).values(**values))


def record_failure(engine: Engine, name: str, error: str, now: datetime) -> None:
    with transaction(engine) as conn:
        load_state(conn, name)
        update_state(conn, name, last_error=error, last_error_at=now)
