"""How cutoffs close: the ``[batch]`` table (when they are is :mod:`mailcase.config.calendar`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field, model_validator

from mailcase.config.base import Frozen, tuples


class BatchConfig(Frozen):
    #: a mailbox unreachable this long after a cutoff no longer holds it back
    #: (the cutoff closes with an alert; its late mail joins the next one)
    mailbox_grace_minutes: int = Field(default=15, ge=0)
    #: a fresh database (no cutoff closed yet) closes cutoffs from the first one
    #: after this time (ISO date-time with offset); unset: after the moment it
    #: first ran the cutoff stage -- never from the oldest mail it holds
    start_at: str | None = None
    #: more than this many business days of missed cutoffs (an outage, a fresh
    #: database with old mail) close as one catch-up batch, with an alert
    catch_up_business_days: int = Field(default=10, ge=1)
    #: subjects too generic to group a requester's mails into one case
    generic_subjects: tuple[str, ...] = (
        "", "help", "question", "questions", "support", "problem", "issue", "urgent", "request",
        "hello", "hi", "(no subject)", "no subject", "hilfe", "frage", "anfrage",
    )

    @model_validator(mode="before")
    @classmethod
    def _lists(cls, data: Any) -> Any:
        return tuples(data, ("generic_subjects",))

    @model_validator(mode="after")
    def _check(self) -> BatchConfig:
        if self.start_at is not None:
            self.start()
        return self

    def start(self) -> datetime | None:
        if self.start_at is None:
            return None
        try:
            value = datetime.fromisoformat(self.start_at.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("start_at: give an ISO date-time with a UTC offset") from None
        if value.tzinfo is None:
            raise ValueError("start_at: give a UTC offset")
        return value
