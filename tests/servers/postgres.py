"""Fresh PostgreSQL databases on the server at $MAILCASE_TEST_PG (default 127.0.0.1:5432)."""

from __future__ import annotations

import os
import uuid

import psycopg

ADMIN_URL = os.environ.get("MAILCASE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def available() -> str | None:
    """None if the server answers, else why not."""
    try:
        with psycopg.connect(ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]


def create_database() -> str:
    name = f"mc_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_URL.rsplit("/", 1)[0]
    return f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
