"""Who writes to the desk: accounts and their people, as the rules see them.

The directory (:mod:`mailcase.domain.directory`) stores them with history; the
rules receive these frozen values and never query the directory themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from mailcase.core.states import Standing


class Role(StrEnum):
    REPRESENTATIVE = "representative"
    ADMINISTRATOR = "administrator"
    USER = "user"


#: roles that speak for their account: their mail becomes cases
REPRESENTATIVE_ROLES: tuple[str, ...] = (Role.REPRESENTATIVE.value, Role.ADMINISTRATOR.value)


@dataclass(frozen=True)
class Person:
    id: int
    account_id: int
    address: str
    name: str
    role: Role
    pin_hash: str | None = None

    @property
    def is_representative(self) -> bool:
        return self.role in REPRESENTATIVE_ROLES


@dataclass(frozen=True)
class Account:
    id: int
    code: str
    name: str
    standing: str = Standing.GOOD.value  # a Standing
    pin_required: bool = False
    pin_locked: bool = False
    #: since when PIN acceptance is locked (the lock notice goes out once per lock)
    pin_locked_at: datetime | None = None
    #: names of the representatives/administrators (for "please go through ...")
    administrators: tuple[str, ...] = ()
