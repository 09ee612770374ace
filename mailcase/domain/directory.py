"""The directory: accounts, their people, staff -- with history.

People rows are valid from ``added_at`` until ``removed_at``; a change (role,
PIN) closes the old row and opens a new one; standing is a log of changes.
So the directory can be read *as of* any instant: a cutoff's batch sees the
directory as it was at the cutoff (a CSV imported at 09:00 counts for the
09:30 batch; one imported at 09:31 does not, even if the batch runs late).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal, TypeAlias

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcase.config.rules import StaffConfig
from mailcase.core.errors import UsageError
from mailcase.core.states import Standing
from mailcase.domain.csvfile import header_hint, read_csv
from mailcase.domain.people import REPRESENTATIVE_ROLES, Account, Person, Role
from mailcase.domain.tables import ACCOUNT, PERSON, STANDING
from mailcase.mail.addresses import domain_of, parse_address_list
from mailcase.mail.pins import pin_hmac, valid_pin

STANDINGS: tuple[str, ...] = tuple(s.value for s in Standing)
CSV_COLUMNS = ("account", "account_name", "standing", "pin_required", "address", "name", "role", "pin")


def _live(as_of: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(
        PERSON.c.added_at <= as_of,
        sa.or_(PERSON.c.removed_at.is_(None), PERSON.c.removed_at > as_of),
    )


def standing_as_of(conn: Connection, account_id: int, as_of: datetime) -> str:
    row = conn.execute(
        sa.select(STANDING.c.standing)
        .where(STANDING.c.account_id == account_id, STANDING.c.at <= as_of)
        .order_by(STANDING.c.at.desc(), STANDING.c.id.desc())
        .limit(1)
    ).first()
    return row[0] if row else Standing.GOOD.value


def standings_as_of(conn: Connection, account_ids: Sequence[int], as_of: datetime) -> dict[int, str]:
    """The standing of each account as of ``as_of`` (an account with no change is absent: good)."""
    latest = (
        sa.select(STANDING.c.account_id, STANDING.c.standing,
                  sa.func.row_number().over(partition_by=STANDING.c.account_id,
                                            order_by=(STANDING.c.at.desc(), STANDING.c.id.desc())).label("n"))
        .where(STANDING.c.account_id.in_(list(account_ids)), STANDING.c.at <= as_of)
        .subquery()
    )
    return {r.account_id: r.standing for r in conn.execute(
        sa.select(latest.c.account_id, latest.c.standing).where(latest.c.n == 1))}


@dataclass
class DbDirectory:
    """The Directory protocol over the database, as of one instant (cached)."""

    conn: Connection
    as_of: datetime
    staff: StaffConfig
    extra_staff: frozenset[str] = frozenset()
    _people: dict[str, list[Person]] = field(default_factory=dict)
    _accounts: dict[int, Account | None] = field(default_factory=dict)

    def people(self, address: str) -> Sequence[Person]:
        address = address.lower()
        if address not in self._people:
            self.prefetch([address])
        return self._people[address]

    def prefetch(self, addresses: Sequence[str]) -> None:
        """Look up the people behind many addresses in one query per 500."""
        wanted = sorted({a.lower() for a in addresses} - set(self._people))
        for i in range(0, len(wanted), 500):
            part = wanted[i : i + 500]
            found: dict[str, list[Person]] = {a: [] for a in part}
            for r in self.conn.execute(
                sa.select(PERSON).where(PERSON.c.address.in_(part), _live(self.as_of)).order_by(PERSON.c.id)
            ):
                found.setdefault(r.address, []).append(Person(r.id, r.account_id, r.address, r.name, Role(r.role), r.pin_hash))
            self._people.update(found)

    def account(self, account_id: int) -> Account | None:
        if account_id not in self._accounts:
            self.prefetch_accounts([account_id])
        return self._accounts[account_id]

    def prefetch_accounts(self, account_ids: Sequence[int]) -> None:
        """Read many accounts (their representatives' names, their standing) in three queries per 500."""
        wanted = sorted(set(account_ids) - set(self._accounts))
        for i in range(0, len(wanted), 500):
            part = wanted[i : i + 500]
            rows = {r.id: r for r in self.conn.execute(sa.select(ACCOUNT).where(ACCOUNT.c.id.in_(part)))}
            admins: dict[int, list[str]] = {}
            for a in self.conn.execute(
                sa.select(PERSON.c.account_id, PERSON.c.name, PERSON.c.address)
                .where(PERSON.c.account_id.in_(part), PERSON.c.role.in_(REPRESENTATIVE_ROLES), _live(self.as_of))
                .order_by(PERSON.c.id)
            ):
                admins.setdefault(a.account_id, []).append(a.name or a.address)
            # one account (asked for alone): the plain query; SQLAlchemy compiles the windowed one dearly
            standings = (standings_as_of(self.conn, part, self.as_of) if len(part) > 1
                         else {part[0]: standing_as_of(self.conn, part[0], self.as_of)})
            for account_id in part:
                row = rows.get(account_id)
                if row is None or row.created_at > self.as_of:
                    self._accounts[account_id] = None
                    continue
                self._accounts[account_id] = Account(
                    id=row.id, code=row.code, name=row.name,
                    standing=standings.get(account_id, Standing.GOOD.value),
                    pin_required=bool(row.pin_required),
                    pin_locked=row.pin_locked_at is not None and row.pin_locked_at <= self.as_of,
                    pin_locked_at=row.pin_locked_at,
                    administrators=tuple(admins.get(account_id, ())),
                )

    def is_staff(self, address: str) -> bool:
        address = address.lower()
        if address in {a.lower() for a in self.staff.addresses} or address in self.extra_staff:
            return True
        if address in {a.lower() for a in self.staff.tier_addresses.values()}:
            return True
        domain = domain_of(address)
        return any(domain == d.lower().lstrip("@") for d in self.staff.domains)


# -- changes ------------------------------------------------------------------------


@dataclass
class ImportReport:
    accounts_created: int = 0
    accounts_updated: int = 0
    people_added: int = 0
    people_changed: int = 0
    people_removed: int = 0
    unchanged: int = 0
    bad_rows: list[str] = field(default_factory=list)
    #: accounts whose standing this import set back to good (their held cases are released)
    restored: list[int] = field(default_factory=list)
    #: how the file was read when not UTF-8 with commas (``read as Windows-1252 ...``)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"accounts: {self.accounts_created} created, {self.accounts_updated} updated; "
            f"people: {self.people_added} added, {self.people_changed} changed, "
            f"{self.people_removed} removed, {self.unchanged} unchanged; "
            f"{len(self.bad_rows)} bad rows"
        )


def _bool(value: str) -> bool | None:
    v = value.strip().lower()
    if v == "":
        return None
    if v in ("1", "yes", "true", "y"):
        return True
    if v in ("0", "no", "false", "n"):
        return False
    raise ValueError(f"{value!r} is not yes or no")


def get_account(conn: Connection, code: str) -> sa.Row[tuple[object, ...]]:
    row = conn.execute(sa.select(ACCOUNT).where(ACCOUNT.c.code == code)).first()
    if row is None:
        raise UsageError(f"no account {code!r}")
    return row


def ensure_account(
    conn: Connection, code: str, name: str | None, now: datetime, actor: str,
    standing: str | None = None, pin_required: bool | None = None, report: ImportReport | None = None,
) -> int:
    row = conn.execute(sa.select(ACCOUNT).where(ACCOUNT.c.code == code)).first()
    if row is None:
        account_id = conn.execute(
            sa.insert(ACCOUNT).values(
                code=code, name=name or code, pin_required=bool(pin_required), pin_locked_at=None, created_at=now
            ).returning(ACCOUNT.c.id)
        ).scalar_one()
        conn.execute(sa.insert(STANDING).values(account_id=account_id, standing=standing or Standing.GOOD.value,
                                                at=now, actor=actor))
        if report:
            report.accounts_created += 1
        return int(account_id)
    changes: dict[str, object] = {}
    if name and name != row.name:
        changes["name"] = name
    if pin_required is not None and pin_required != bool(row.pin_required):
        changes["pin_required"] = pin_required
    if changes:
        conn.execute(sa.update(ACCOUNT).where(ACCOUNT.c.id == row.id).values(**changes))
    if standing and standing != standing_as_of(conn, row.id, now):
        conn.execute(sa.insert(STANDING).values(account_id=row.id, standing=standing, at=now, actor=actor))
        changes["standing"] = standing
        if standing == Standing.GOOD and report:
            report.restored.append(int(row.id))
    if changes and report:
        report.accounts_updated += 1
    return int(row.id)


#: what :func:`upsert_person` did
PersonChange: TypeAlias = Literal["added", "changed", "unchanged"]


def upsert_person(
    conn: Connection, account_id: int, address: str, name: str, role: Role, pin_hash: str | None,
    now: datetime, keep_pin: bool = True,
) -> PersonChange:
    """'added', 'changed' or 'unchanged'."""
    current = conn.execute(
        sa.select(PERSON).where(
            PERSON.c.account_id == account_id, PERSON.c.address == address, PERSON.c.removed_at.is_(None)
        )
    ).first()
    if current is not None:
        new_pin = current.pin_hash if (pin_hash is None and keep_pin) else pin_hash
        if current.name == name and current.role == role.value and current.pin_hash == new_pin:
            return "unchanged"
        conn.execute(sa.update(PERSON).where(PERSON.c.id == current.id).values(removed_at=now))
        pin_hash = new_pin
    conn.execute(
        sa.insert(PERSON).values(
            account_id=account_id, address=address, name=name, role=role.value,
            pin_hash=pin_hash, added_at=now, removed_at=None,
        )
    )
    return "added" if current is None else "changed"


def remove_person(conn: Connection, account_id: int, address: str, now: datetime) -> bool:
    result = conn.execute(
        sa.update(PERSON)
        .where(PERSON.c.account_id == account_id, PERSON.c.address == address, PERSON.c.removed_at.is_(None))
        .values(removed_at=now)
    )
    return bool(result.rowcount)


def normalise_address(value: str) -> str:
    parsed = parse_address_list(value)
    single = parsed.single
    if single is None:
        raise ValueError(f"{value!r} is not one valid address")
    return single.addr


def import_csv(
    conn: Connection, source: Path | str, now: datetime, key: bytes | None, *,
    replace: bool = False, actor: str = "csv import",
) -> ImportReport:
    """Import accounts and people from CSV; idempotent; bad rows are reported, not fatal.

    A file is read as UTF-8 or else Windows-1252, separated by commas or else
    by the semicolons or tabs of its header; ``report.notes`` says which.
    """
    label = str(source) if isinstance(source, Path) else "CSV"
    got = read_csv(source)
    reader = csv.DictReader(io.StringIO(got.text), delimiter=got.delimiter)
    report = ImportReport(notes=got.notes())
    missing = {"account", "address", "role"} - set(reader.fieldnames or ())
    if missing:
        raise UsageError(f"{label}: header lacks column(s) {', '.join(sorted(missing))}; "
                         f"expected: {', '.join(CSV_COLUMNS)}; {header_hint(reader.fieldnames, got.delimiter)}")
    unknown = set(reader.fieldnames or ()) - set(CSV_COLUMNS)
    if unknown:
        raise UsageError(f"{label}: header has unknown column(s) {', '.join(sorted(unknown))}; "
                         f"expected: {', '.join(CSV_COLUMNS)}; {header_hint(reader.fieldnames, got.delimiter)}")
    seen: dict[int, set[str]] = {}
    for line_no, row in enumerate(reader, start=2):
        try:
            code = (row.get("account") or "").strip()
            if not code:
                raise ValueError("account is empty")
            standing = (row.get("standing") or "").strip().lower() or None
            if standing is not None and standing not in STANDINGS:
                raise ValueError(f"standing {standing!r} is not good or hold")
            pin_required = _bool(row.get("pin_required") or "")
            address = normalise_address(row.get("address") or "")
            role_text = (row.get("role") or "").strip().lower()
            try:
                role = Role(role_text)
            except ValueError:
                raise ValueError(f"role {role_text!r} is not representative, administrator or user") from None
            pin = (row.get("pin") or "").strip()
            if pin and not valid_pin(pin):
                raise ValueError("pin is not 4 digits")
            if pin and key is None:
                raise ValueError("pin given but secrets.hmac_key is not configured")
        except ValueError as exc:
            report.bad_rows.append(f"line {line_no}: {exc}")
            continue
        account_id = ensure_account(
            conn, code, (row.get("account_name") or "").strip() or None, now, actor,
            standing, pin_required, report,
        )
        pin_hash = pin_hmac(key, pin) if pin and key else None
        outcome = upsert_person(conn, account_id, address, (row.get("name") or "").strip(), role, pin_hash, now)
        seen.setdefault(account_id, set()).add(address)
        if outcome == "added":
            report.people_added += 1
        elif outcome == "changed":
            report.people_changed += 1
        else:
            report.unchanged += 1
    if replace:
        for account_id, addresses in seen.items():
            stale = conn.execute(
                sa.select(PERSON.c.address).where(
                    PERSON.c.account_id == account_id, PERSON.c.removed_at.is_(None),
                    PERSON.c.address.not_in(sorted(addresses)),
                )
            ).scalars().all()
            for address in stale:
                remove_person(conn, account_id, address, now)
                report.people_removed += 1
    return report


def set_standing(conn: Connection, code: str, standing: str, now: datetime, actor: str) -> bool:
    """Record a standing change; False if it already was that."""
    if standing not in STANDINGS:
        raise UsageError(f"standing must be good or hold, not {standing!r}")
    row = get_account(conn, code)
    if standing_as_of(conn, int(row.id), now) == standing:
        return False
    conn.execute(sa.insert(STANDING).values(account_id=row.id, standing=standing, at=now, actor=actor))
    return True


def lock_pin(conn: Connection, account_id: int, now: datetime) -> None:
    """Too many wrong PINs: PIN acceptance stops until staff unlock it (the first lock time stays)."""
    conn.execute(sa.update(ACCOUNT).where(
        ACCOUNT.c.id == account_id, ACCOUNT.c.pin_locked_at.is_(None)
    ).values(pin_locked_at=now))


def unlock_pin(conn: Connection, code: str) -> bool:
    row = get_account(conn, code)
    result = conn.execute(
        sa.update(ACCOUNT).where(ACCOUNT.c.id == row.id, ACCOUNT.c.pin_locked_at.is_not(None))
        .values(pin_locked_at=None)
    )
    return bool(result.rowcount)


@dataclass(frozen=True)
class AccountSummary:
    code: str
    name: str
    standing: str
    pin_required: bool
    pin_locked: bool
    people: tuple[tuple[str, str, str], ...]  # (address, name, role)


def list_accounts(conn: Connection, now: datetime, code: str | None = None) -> list[AccountSummary]:
    q = sa.select(ACCOUNT).order_by(ACCOUNT.c.code)
    if code:
        q = q.where(ACCOUNT.c.code == code)
    out = []
    for row in conn.execute(q).all():
        people = conn.execute(
            sa.select(PERSON.c.address, PERSON.c.name, PERSON.c.role)
            .where(PERSON.c.account_id == row.id, _live(now)).order_by(PERSON.c.role, PERSON.c.address)
        ).all()
        out.append(AccountSummary(
            row.code, row.name, standing_as_of(conn, row.id, now), bool(row.pin_required),
            row.pin_locked_at is not None, tuple((p[0], p[1], p[2]) for p in people),
        ))
    if code and not out:
        raise UsageError(f"no account {code!r}")
    return out
