"""Applying a verdict's effects: who handles which effect, and what they are given.

The classify stage (and the cutoff's second judgement) apply every effect of an
outcome in the mail's transaction through an :data:`EffectHandlers` table keyed
by the effect's type.  :data:`BASE_EFFECTS` handles what the rules and the
domain own (case links and reopening, PIN locks, alerts); a caller that may
meet bounces and survey scores passes the outbound stage's larger table.  An
effect without a handler raises, which quarantines that one mail.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from mailcase.config.settings import Config
from mailcase.core.log import kv
from mailcase.domain.cases import reopen_case
from mailcase.domain.directory import lock_pin
from mailcase.rules.base import Mail
from mailcase.rules.effects import Alert, LinkCase, LockPin, ReopenCase

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Applying:
    """What a handler is given: the transaction, the configuration and the mail the effect came from."""

    conn: Connection
    config: Config
    key: bytes
    now: datetime
    mail: Mail


Handler = Callable[[Applying, Any], None]
EffectHandlers = Mapping[type, Handler]


def _linked(applying: Applying, effect: LinkCase) -> None:
    """Nothing to do: the link is stored with the classification."""


def _reopen(applying: Applying, effect: ReopenCase) -> None:
    mail = applying.mail
    reopen_case(applying.conn, effect.case_id, applying.now, "mailcase", f"reply from {mail.sender} (mail #{mail.pk})")


def _lock_pin(applying: Applying, effect: LockPin) -> None:
    lock_pin(applying.conn, effect.account_id, applying.now)


def _alert(applying: Applying, effect: Alert) -> None:
    log.warning("event=alert message=%s what=%s", applying.mail.pk, kv(effect.what))


BASE_EFFECTS: EffectHandlers = {LinkCase: _linked, ReopenCase: _reopen, LockPin: _lock_pin, Alert: _alert}
