"""Small facts about the desk as a whole, kept in the database (``service_state``).

``batch-start``: when this database first ran the cutoff stage (a fresh
database's first cutoff is the next one after it); ``cutoff-error``: the
last failure of a cutoff as a whole, shown by ``status``.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcase.domain.db import insert_ignore
from mailcase.domain.tables import SERVICE_STATE


def get(conn: Connection, key: str) -> tuple[str, datetime] | None:
    row = conn.execute(sa.select(SERVICE_STATE.c.value, SERVICE_STATE.c.at).where(SERVICE_STATE.c.key == key)).first()
    return (str(row[0]), row[1]) if row else None


def put(conn: Connection, key: str, value: str, at: datetime) -> None:
    if conn.execute(sa.update(SERVICE_STATE).where(SERVICE_STATE.c.key == key).values(value=value, at=at)).rowcount:
        return
    insert_ignore(conn, SERVICE_STATE, [{"key": key, "value": value, "at": at}], ["key"])


def put_once(conn: Connection, key: str, value: str, at: datetime) -> tuple[str, datetime]:
    """Set ``key`` unless it is set; its value either way."""
    insert_ignore(conn, SERVICE_STATE, [{"key": key, "value": value, "at": at}], ["key"])
    found = get(conn, key)
    assert found is not None
    return found


def delete(conn: Connection, key: str) -> None:
    conn.execute(sa.delete(SERVICE_STATE).where(SERVICE_STATE.c.key == key))
