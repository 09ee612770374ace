"""Every state and kind is defined once (mailcase/core/states.py): the sets are
sound, and what the code stores fits the schema the migrations build."""

from __future__ import annotations

import ast
import inspect
import re
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mailcase.core import states
from mailcase.core.states import (
    BounceKind,
    CaseEventKind,
    CaseMessageRole,
    CaseStatus,
    MailKind,
    MessageState,
    OutboxStatus,
    PromiseState,
    ReceivedSource,
    Stage,
    Standing,
    Tier,
    WorkerMode,
    WorkerState,
    notice_kind,
    report_kind,
)
from mailcase.domain import tables
from mailcase.domain.people import Role
from mailcase.rules.base import Disposition, Notice

MIGRATIONS = Path(states.__file__).resolve().parents[1] / "domain" / "migrations" / "versions"


def _enums() -> list[type[StrEnum]]:
    return [obj for _, obj in inspect.getmembers(states, inspect.isclass)
            if issubclass(obj, StrEnum) and obj is not StrEnum and obj.__module__ == states.__name__]


#: every column that stores one of the sets, with every value the code writes there
STORED: dict[tuple[str, str], set[str]] = {
    ("message", "state"): {s.value for s in MessageState},
    ("message", "received_source"): {s.value for s in ReceivedSource},
    ("raw_copy", "received_source"): {s.value for s in ReceivedSource},
    ("quarantine", "stage"): {s.value for s in Stage},
    ("support_case", "status"): {s.value for s in CaseStatus},
    ("support_case", "tier"): {t.value for t in Tier},
    ("specialist", "tier"): {t.value for t in Tier},
    ("case_message", "role"): {r.value for r in CaseMessageRole},
    ("case_event", "kind"): ({k.value for k in CaseEventKind} | {s.value for s in CaseStatus}
                             | {p.value for p in PromiseState}),
    ("standing_change", "standing"): {s.value for s in Standing},
    ("outbox", "status"): {s.value for s in OutboxStatus},
    ("outbox", "kind"): {k.value for k in MailKind} | {notice_kind(n) for n in Notice},
    ("bounce", "kind"): {k.value for k in BounceKind},
    ("mailbox_state", "worker_state"): {s.value for s in WorkerState if s is not WorkerState.DEAD},
    ("mailbox_state", "mode"): {m.value for m in WorkerMode},
    ("person", "role"): {r.value for r in Role},
    ("verdict", "disposition"): {d.value for d in Disposition},
    ("classification", "disposition"): {d.value for d in Disposition},
    ("classification", "notice"): {n.value for n in Notice},
}


def test_the_sets_are_found() -> None:
    names = {e.__name__ for e in _enums()}
    assert {"MessageState", "CaseStatus", "OutboxStatus", "MailKind", "BounceKind", "WorkerState",
            "CaseEventKind", "PromiseState"} <= names


def test_every_set_has_unique_values() -> None:
    for enum in _enums():
        values = [m.value for m in enum]
        assert values, f"{enum.__name__} is empty"
        assert len(values) == len(set(values)), f"{enum.__name__} repeats a value: {values}"
        for value in values:
            # kebab-case (tiers are upper case): what the database, the log and the CLI show
            assert re.fullmatch(r"[a-z]+(-[a-z]+)*|[A-Z]+", value), f"{enum.__name__}: {value!r}"


def test_a_case_event_is_named_once() -> None:
    """A status change and the promise are case events under their own names: no event kind may mean
    something else under the same name."""
    events = {k.value for k in CaseEventKind}
    assert not events & {s.value for s in CaseStatus}
    assert not events & {p.value for p in PromiseState}


def test_derived_kinds() -> None:
    assert notice_kind(Notice.HOLD) == "notice/hold"
    assert report_kind("delivery-status") == "report-delivery-status"
    assert len(report_kind("x" * 100)) == 32
    assert states.FAILURE_BOUNCE_KINDS == ("dsn", "vendor")


def test_what_is_stored_fits_its_column() -> None:
    for (table, column), values in STORED.items():
        length = _length(table, column)
        too_long = sorted(v for v in values if len(v) > length)
        assert not too_long, f"{table}.{column} holds {length} characters: {too_long}"
    assert len(report_kind("y" * 200)) <= _length("bounce", "kind")


def _length(table: str, column: str) -> int:
    """The width of a string column (VARCHAR(n), or sqlmodel's AutoString(n))."""
    length = getattr(_column(table, column).type, "length", None)
    assert isinstance(length, int), f"{table}.{column} is not a string column of fixed width"
    return length


def _column(table: str, column: str) -> sa.Column[Any]:
    for value in vars(tables).values():
        if isinstance(value, sa.Table) and value.name == table:
            found: sa.Column[Any] = value.c[column]
            return found
    raise AssertionError(f"no table {table}")


def _migration_constraints() -> tuple[list[tuple[str, str, str]], list[str]]:
    """(table, column, server default) of every enum column and the text of every CHECK, from the migrations."""
    defaults: list[tuple[str, str, str]] = []
    checks: list[str] = []
    for path in sorted(MIGRATIONS.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in ("CheckConstraint", "create_check_constraint"):
                checks += [a.value for a in ast.walk(node) if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            if name == "create_table" and node.args and isinstance(node.args[0], ast.Constant):
                table = str(node.args[0].value)
                for col in node.args[1:]:
                    defaults += _default(table, col)
        for with_node in (n for n in ast.walk(tree) if isinstance(n, ast.With)):
            call = with_node.items[0].context_expr
            if not (isinstance(call, ast.Call) and getattr(call.func, "attr", "") == "batch_alter_table"
                    and call.args and isinstance(call.args[0], ast.Constant)):
                continue
            table = str(call.args[0].value)
            for node in ast.walk(with_node):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in ("add_column", "alter_column"):
                    for arg in node.args:
                        defaults += _default(table, arg)
                    if getattr(node.func, "attr", "") == "alter_column" and node.args:
                        defaults += _default(table, node, column=node.args[0])
    return defaults, checks


def _default(table: str, node: ast.expr, column: ast.expr | None = None) -> list[tuple[str, str, str]]:
    if not isinstance(node, ast.Call):
        return []
    if column is None:
        if getattr(node.func, "attr", "") != "Column" or not node.args or not isinstance(node.args[0], ast.Constant):
            return []
        column = node.args[0]
    assert isinstance(column, ast.Constant)
    out = []
    for kw in node.keywords:
        if kw.arg in ("server_default", "existing_server_default") and isinstance(kw.value, ast.Constant) \
                and isinstance(kw.value.value, str):
            out.append((table, str(column.value), kw.value.value))
    return out


def test_the_migrations_write_only_known_values() -> None:
    """A server default or CHECK constraint on a column of states must name the same values the code writes."""
    assert MIGRATIONS.is_dir()
    defaults, checks = _migration_constraints()
    for table, column, default in defaults:
        if (table, column) in STORED:
            assert default in STORED[table, column], f"migration default {table}.{column} = {default!r}"
    known = {v for values in STORED.values() for v in values}
    for text in checks:
        listed = set(re.findall(r"'([^']*)'", text))
        if listed and listed & known:
            match = [cols for cols, values in STORED.items() if listed == values]
            assert match, f"CHECK constraint {text!r} lists values no set of states.py has exactly"
