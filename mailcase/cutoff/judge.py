"""The rules chain again at the cutoff, for every claimed mail, against the directory *as of* the cutoff.

Mails are loaded in chunks (a cutoff after a long outage can hold tens of
thousands; :func:`load_mails` reads only the head of each, no attachment is
held).  What the chain decides is recorded as at classification, with the
cutoff as the phase.

What depends on the mail alone (bounce, auto-reply, machine mail, the advice
it asks for) was worked out when it was classified: :func:`load_mails` hands
those results to the rules with the mail (rules/content.py), as it does the
sender authentication, and the rules work out only what depends on the
directory, the cases, the clock and other mail as of the cutoff.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcase.config.settings import Config
from mailcase.cutoff.make import Batch
from mailcase.domain.calendar import BusinessCalendar
from mailcase.domain.cases import staff_addresses
from mailcase.domain.directory import DbDirectory
from mailcase.domain.tables import VERDICT
from mailcase.outbound.effects import EFFECTS
from mailcase.rules.base import Mail, Outcome, RuleSettings
from mailcase.rules.chain import run_chain
from mailcase.rules.context import DbContext, PassCache
from mailcase.rules.loading import load_mails
from mailcase.rules.record import Recorder
from mailcase.rules.review import RELEASED

CHUNK = 500  # mails loaded at once


def released_from_review(conn: Connection, pks: Sequence[int]) -> set[int]:
    """The mails staff released from review (the flood rules do not hold them again)."""
    if not pks:
        return set()
    return {r[0] for r in conn.execute(
        sa.select(VERDICT.c.message_pk).where(VERDICT.c.message_pk.in_(list(pks)), VERDICT.c.name == RELEASED)
    )}


class Judge:
    """Judges a cutoff's claimed mail and records the outcomes."""

    def __init__(self, conn: Connection, config: Config, cal: BusinessCalendar, batch: Batch,
                 claimed: Sequence[int]) -> None:
        self.conn, self.cal, self.cutoff = conn, cal, batch.cutoff
        self.key = config.hmac_key()
        self.settings = RuleSettings.from_config(config)
        self.directory = DbDirectory(conn, batch.cutoff, config.staff, staff_addresses(conn))
        self.released = released_from_review(conn, claimed)
        self.cache = PassCache()
        self.recorder = Recorder(conn, f"cutoff {batch.cutoff:%Y-%m-%dT%H:%MZ}", batch.now, config, EFFECTS,
                                 self.cache, self.settings)

    def chunks(self, claimed: Sequence[int]) -> Iterator[Iterator[tuple[int, Mail]]]:
        """The claimed mails, loaded a chunk at a time, oldest first."""
        for start in range(0, len(claimed), CHUNK):
            chunk = claimed[start : start + CHUNK]
            mails = load_mails(self.conn, list(chunk), reread_headers=False, settings=self.settings)
            self.cache.prefetch(self.conn, list(mails.values()), self.directory)
            yield ((pk, mails.pop(pk)) for pk in chunk)

    def judge(self, pk: int, mail: Mail) -> Outcome:
        """The chain's outcome for one mail at the cutoff (recorded by :meth:`record`)."""
        ctx = DbContext(self.conn, self.cutoff, self.settings, self.directory, self.key, self.cache,
                        message_pk=pk, cutoff_of=self.cal.cutoff_for)
        disabled = frozenset({"floods"}) if pk in self.released else frozenset()
        return run_chain(mail, ctx, disabled=disabled)

    def record(self, mail: Mail, outcome: Outcome) -> None:
        self.recorder.add(mail, outcome)

    def noticed(self, requester: str, kind: str) -> None:
        """A notice is queued: the next mails of this cutoff count it."""
        self.cache.add_notice(requester, kind, self.cutoff)

    def flush(self) -> None:
        self.recorder.flush()
