"""What the rules judge mail by: the ``[rules]``, ``[staff]`` and ``[directory]`` tables."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, model_validator

from mailcase.config.base import ConfigPath, Frozen, tuples
from mailcase.core.states import Tier

#: phrases an operator adds to the concept rules (scope_concepts.py); none by
#: default -- a bare phrase like "cpt code" fires on "the CPT code field is empty"
DEFAULT_SCOPE: dict[str, tuple[str, ...]] = {"coding": (), "billing": (), "payer": ()}
#: keywords give high at most: critical comes from an explicit marker ("Severity: 1",
#: "[S1]") or from a critical phrase the operator configures on purpose
DEFAULT_SEVERITY: dict[str, tuple[str, ...]] = {
    "critical": (),
    "high": (
        "system down", "system is down", "completely down", "is down for everyone", "nobody can log in",
        "no one can log in", "nobody can work", "outage", "data loss", "production down",
        "cannot submit claims", "can't submit claims", "unable to submit claims", "claims are rejected",
        "cannot print", "urgent", "asap", "emergency", "error 500", "error 503",
        "dringend", "ausfall", "urgente", "en panne", "sistema caído", "spoed",
    ),
    "low": ("feature request", "suggestion", "documentation", "typo", "nice to have", "when you have time"),
}
SEVERITY_LEVELS = {"critical": 1, "high": 2, "normal": 3, "low": 4}


class RulesConfig(Frozen):
    #: required: "authserv-id" (trust the topmost Authentication-Results our
    #: own server adds; it must strip forged copies, RFC 8601 §5) or
    #: "insecure-off" (no sender authentication; `status` says so)
    sender_authentication: Literal["authserv-id", "insecure-off"] | None = None
    authserv_id: str | None = None
    #: a header our spam filter sets, and the values that mean spam
    spam_header: str | None = None
    spam_values: tuple[str, ...] = ("yes",)
    reopen_window_days: int = Field(default=14, ge=0)
    notice_period_days: int = Field(default=7, ge=0)
    flood_same_count: int = Field(default=15, ge=1)
    flood_same_seconds: int = Field(default=60, ge=1)
    flood_sender_count: int = Field(default=50, ge=1)
    flood_sender_minutes: int = Field(default=30, ge=1)
    #: more than this many requests from one address with the same subject and a
    #: near-identical text within repeat_request_hours (an autoresponder that
    #: does not thread, a loop across cutoffs) go to review, flagged; the window
    #: spans several days because such a loop turns once per cutoff, twice a day
    repeat_request_count: int = Field(default=3, ge=1)
    repeat_request_hours: int = Field(default=72, ge=1)
    weekly_request_threshold: int = Field(default=25, ge=1)
    #: cosine similarity (0-1) over content words between a request and one of
    #: the account's resolved cases that flags it as a repeat
    repeat_similarity: float = Field(default=0.75, gt=0, le=1)
    pin_max_failures: int = Field(default=5, ge=1)
    pin_failure_hours: int = Field(default=24, ge=1)
    scope: dict[str, tuple[str, ...]] = Field(default_factory=lambda: dict(DEFAULT_SCOPE))
    severity: dict[str, tuple[str, ...]] = Field(default_factory=lambda: dict(DEFAULT_SEVERITY))

    @model_validator(mode="before")
    @classmethod
    def _lists(cls, data: Any) -> Any:
        return tuples(data, ("spam_values", "scope", "severity"))

    @model_validator(mode="after")
    def _check(self) -> RulesConfig:
        if self.sender_authentication == "authserv-id" and not self.authserv_id:
            raise ValueError("authserv_id: required when sender_authentication = authserv-id")
        bad = set(self.severity) - set(SEVERITY_LEVELS)
        if bad:
            raise ValueError(f"severity: unknown level {sorted(bad)[0]!r} (use critical, high, normal, low)")
        return self


#: a plain mail address (local@domain, no spaces, no display name)
_ADDRESS = re.compile(r"^[^@\s<>(),;:\"]+@[^@\s<>(),;:\"]+\.[^@\s<>(),;:\"]+$")
#: the support tiers, in escalation order (core.states.Tier)
STAFF_TIERS: tuple[str, ...] = tuple(t.value for t in Tier)


class StaffConfig(Frozen):
    #: staff are never customers: their mail on a case is a staff note
    addresses: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    #: mail the owner of a case about it (assigned, the customer wrote again,
    #: reopened, due soon / overdue / breached); escalation mails the new tier
    notify: bool = True
    #: an owner given more than this many new cases at one cutoff gets one mail
    #: listing them all (each with its token, requester, subject and the start
    #: of its text) instead of a mail per case
    digest_over: int = Field(default=10, ge=1)
    #: staff mail whose subject starts with this, or with a line of only this,
    #: is a reply to the customer (the line is removed); otherwise a private note
    reply_marker: str = Field(default="#reply", min_length=1)
    #: staff mail sent To/Cc this address is a reply to the customer (RT's
    #: correspond address; mail to any other address is a comment)
    reply_address: str | None = None
    #: the address each tier is mailed at when a case is escalated to it (SSI, SSII, SSIII, DEV)
    tier_addresses: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _lists(cls, data: Any) -> Any:
        data = tuples(data, ("addresses", "domains"))
        if isinstance(data, dict) and isinstance(data.get("tier_addresses"), dict):
            data = {**data, "tier_addresses": {str(k).upper(): v for k, v in data["tier_addresses"].items()}}
        return data

    @model_validator(mode="after")
    def _check(self) -> StaffConfig:
        for tier, address in self.tier_addresses.items():
            if tier not in STAFF_TIERS:
                raise ValueError(f"tier_addresses: unknown tier {tier!r} (use {', '.join(STAFF_TIERS)})")
            if not _ADDRESS.match(address):
                raise ValueError(f"tier_addresses: {tier} = {address!r} is not a mail address")
        if self.reply_address is not None and not _ADDRESS.match(self.reply_address):
            raise ValueError(f"reply_address: {self.reply_address!r} is not a mail address")
        if not self.reply_marker.strip():
            raise ValueError("reply_marker: must not be blank")
        return self

    def tier_address(self, tier: str) -> str | None:
        """The address of ``tier`` (any case), or None."""
        address = self.tier_addresses.get(tier.upper())
        return address.lower() if address else None


class DirectoryConfig(Frozen):
    #: a CSV of accounts and people (see `mailcase accounts import --help`)
    #: the service imports at start and whenever the file changes; idempotent
    csv: ConfigPath | None = None
    #: people of the file's accounts missing from the file are removed
    replace: bool = False
    #: when the file's rows take effect: "import" (when imported) or an ISO
    #: date-time with offset, to backdate a first import so mail already
    #: waiting for a cutoff is judged against it (rules read the directory
    #: as of each cutoff)
    effective: str = "import"

    @model_validator(mode="after")
    def _check(self) -> DirectoryConfig:
        if self.effective != "import":
            try:
                value = datetime.fromisoformat(self.effective.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError("effective: use import or an ISO date-time with offset") from None
            if value.tzinfo is None:
                raise ValueError("effective: give a UTC offset")
        return self

    def effective_at(self, now: datetime) -> datetime:
        if self.effective == "import":
            return now
        return datetime.fromisoformat(self.effective.replace("Z", "+00:00"))
