"""Helpers for cutoff tests: store mail at given times, classify it, run cutoffs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from helpers import config, make_mail

from mailcase.config.settings import Config
from mailcase.core.states import ReceivedSource
from mailcase.cutoff.batch import run_due
from mailcase.domain.db import open_engine, transaction
from mailcase.domain.directory import import_csv
from mailcase.ingest.ledger import Incoming, store
from mailcase.ingest.stages import run_parse_stage
from mailcase.outbound.effects import EFFECTS
from mailcase.rules.classify import run_classify_stage

NY = ZoneInfo("America/New_York")
AUTH = ("Authentication-Results", "mx.support.example; spf=pass smtp.mailfrom={d}; dkim=pass header.d={d}; "
        "dmarc=pass header.from={d}")

DIRECTORY = """account,account_name,standing,pin_required,address,name,role,pin
ACME,Acme Clinic,good,no,alice@acme.example,Alice Admin,administrator,
ACME,Acme Clinic,,,erin@acme.example,Erin User,user,
ACME,Acme Clinic,,,monitor@acme.example,Acme Monitoring,representative,
GLOBEX,Globex,good,no,bob@globex.example,Bob Builder,representative,
UMBRELLA,Umbrella,hold,no,dave@umbrella.example,Dave,representative,
"""


def ny(y: int, m: int, d: int, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=NY).astimezone(UTC)


@dataclass
class MovingClock:
    at: datetime

    def now(self) -> datetime:
        return self.at


class Desk:
    """A support desk on a real database: store, classify and batch mail at chosen times."""

    def __init__(self, db_url: str, tmp: Path, **sections: Any) -> None:
        sections.setdefault("rules", {"sender_authentication": "authserv-id", "authserv_id": "mx.support.example"})
        sections.setdefault("outgoing", {"from_address": "support@support.example",
                                         "file_dir": str(tmp / "outbox")})
        self.config: Config = config(db_url, tmp, [], **sections)
        self.engine = open_engine(self.config.database_url)
        self.clock = MovingClock(datetime(2026, 1, 1, tzinfo=UTC))
        self.n = 0

    def directory(self, csv_text: str = DIRECTORY, at: datetime | None = None) -> None:
        with transaction(self.engine) as conn:
            report = import_csv(conn, csv_text, at or datetime(2025, 1, 1, tzinfo=UTC), self.config.hmac_key())
        assert not report.bad_rows, report.bad_rows

    def mail(self, at: datetime, sender: str = "alice@acme.example", subject: str | None = None,
             body: str | None = None, authenticated: bool = True, headers: dict[str, str] | None = None,
             msgid: str | None = None, historical: bool = False) -> str:
        self.n += 1
        h = dict(headers or {})
        if authenticated:
            name, value = AUTH
            h[name] = value.format(d=sender.rpartition("@")[2])
        mid = msgid or f"<m{self.n}.{at.timestamp():.0f}@{sender.rpartition('@')[2]}>"
        raw = make_mail(self.n, sender=sender, subject=subject, body=body, date=at, msgid=mid, headers=h)
        with transaction(self.engine) as conn:
            store(conn, [Incoming("eml:/test", f"k{self.n}", raw, at, ReceivedSource.DATE_HEADER, historical)], at)
        return mid

    def process(self, now: datetime) -> Any:
        """Parse, classify, then close what is due at ``now``."""
        self.clock.at = now
        run_parse_stage(self.engine, now, self.config.hmac_key())
        run_classify_stage(self.engine, self.config, self.clock, EFFECTS)
        return run_due(self.engine, self.config, self.clock)

    def rows(self, query: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(query).all())

    def scalar(self, query: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(query).scalar()

    def case_of(self, message_id: str) -> int | None:
        from mailcase.domain.tables import CASE, CASE_MESSAGE, MESSAGE

        number: int | None = self.scalar(
            sa.select(CASE.c.number).join(CASE_MESSAGE, CASE_MESSAGE.c.case_id == CASE.c.id)
            .join(MESSAGE, MESSAGE.c.id == CASE_MESSAGE.c.message_pk).where(MESSAGE.c.message_id == message_id)
        )
        return number

    def outbox(self) -> list[Any]:
        from mailcase.domain.tables import OUTBOX

        return self.rows(sa.select(OUTBOX).order_by(OUTBOX.c.id))
