"""In-memory fakes of the rules' Context: rule tests need no database or server.

``directory.toml`` in a corpus folder describes accounts, people, staff,
existing cases and counters; a mail's sidecar may override counters.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mailcase.config.loader import parse_config
from mailcase.domain.people import Account, Person, Role
from mailcase.mail.addresses import domain_of
from mailcase.mail.header_info import read_headers
from mailcase.mail.headers import split_headers
from mailcase.mail.msgid import make_message_id, parse_our_message_id
from mailcase.mail.parse.message import parse_email
from mailcase.mail.pins import find_pins, pin_hmac, redact
from mailcase.rules.base import CaseRef, Mail, ResolvedCase, RuleSettings

KEY = b"rules-corpus-test-key-0123456789"
OUR_DOMAIN = "support.example"


@dataclass
class FakeDirectory:
    accounts: dict[int, Account] = field(default_factory=dict)
    people_by_addr: dict[str, list[Person]] = field(default_factory=dict)
    staff_addresses: set[str] = field(default_factory=set)
    staff_domains: set[str] = field(default_factory=set)

    def people(self, address: str) -> Sequence[Person]:
        return self.people_by_addr.get(address.lower(), [])

    def account(self, account_id: int) -> Account | None:
        return self.accounts.get(account_id)

    def is_staff(self, address: str) -> bool:
        a = address.lower()
        return a in self.staff_addresses or domain_of(a) in self.staff_domains


@dataclass
class FakeContext:
    now: datetime
    settings: RuleSettings
    directory: FakeDirectory
    cases: dict[int, CaseRef] = field(default_factory=dict)
    case_message_ids: dict[str, int] = field(default_factory=dict)  # Message-ID -> case number
    similar_before: int = 0
    sender_before: int = 0
    notices: dict[tuple[str, str], int] = field(default_factory=dict)
    pin_failures_before: int = 0
    repeated_before: int = 0
    account_requests_before: int = 0
    resolved: dict[int, list[ResolvedCase]] = field(default_factory=dict)

    def case_for_message_ids(self, ids: Sequence[str]) -> CaseRef | None:
        for mid in ids:
            ours = parse_our_message_id(KEY, mid)
            if ours is not None and ours.case_number in self.cases:
                return self.cases[ours.case_number]
            if mid in self.case_message_ids:
                return self.cases.get(self.case_message_ids[mid])
        return None

    def case_by_number(self, number: int) -> CaseRef | None:
        return self.cases.get(number)

    def survey_for(self, ids: Sequence[str], token_case: int | None, sender: str) -> tuple[CaseRef, int] | None:
        for mid in ids:
            ours = parse_our_message_id(KEY, mid)
            if ours is not None and ours.kind == "survey" and ours.case_number in self.cases:
                return self.cases[ours.case_number], 1
        if token_case in self.cases and self.cases[token_case].requester == sender:
            return self.cases[token_case], 1
        return None

    def is_our_message_id(self, message_id: str) -> bool:
        return parse_our_message_id(KEY, message_id) is not None

    def similar_mails_before(self, sender: str, subject: str, body_hash: str, since: datetime, until: datetime) -> int:
        return self.similar_before

    def sender_mails_before(self, sender: str, since: datetime, until: datetime) -> int:
        return self.sender_before

    def repeated_requests(self, sender: str, subject: str, loose_hash: str, since: datetime,
                          until: datetime) -> int:
        return self.repeated_before

    def notices_sent(self, address: str, kind: str, since: datetime) -> int:
        return self.notices.get((address, kind), 0)

    def pin_failures(self, account_id: int, since: datetime) -> int:
        return self.pin_failures_before

    def account_requests(self, account_id: int, since: datetime, until: datetime) -> int:
        return self.account_requests_before

    def resolved_cases(self, account_id: int) -> Sequence[ResolvedCase]:
        return self.resolved.get(account_id, [])


def settings(authserv_id: str | None = "mx.support.example", **rules: Any) -> RuleSettings:
    """The rules' settings of a configuration with these ``[rules]`` entries."""
    cfg = parse_config({
        "rules": {"sender_authentication": "authserv-id" if authserv_id else "insecure-off",
                  **({"authserv_id": authserv_id} if authserv_id else {}), **rules},
        "outgoing": {"from_address": f"support@{OUR_DOMAIN}"},
    }, "test")
    return RuleSettings.from_config(cfg)


def our_message_id(case_number: int | None, kind: str = "ack") -> str:
    return make_message_id(KEY, OUR_DOMAIN, kind, case_number)


def load_directory(path: Path) -> tuple[FakeDirectory, dict[int, CaseRef], dict[str, int], dict[int, list[ResolvedCase]]]:
    data = tomllib.loads(path.read_text())
    d = FakeDirectory()
    codes: dict[str, int] = {}
    for i, acc in enumerate(data.get("accounts", []), start=1):
        codes[acc["code"]] = i
        people = acc.get("people", [])
        d.accounts[i] = Account(
            i, acc["code"], acc.get("name", acc["code"]), acc.get("standing", "good"),
            acc.get("pin_required", False), acc.get("pin_locked", False),
            administrators=tuple(p.get("name", p["address"]) for p in people if p["role"] != "user"),
        )
    pid = 0
    for acc in data.get("accounts", []):
        for p in acc.get("people", []):
            pid += 1
            person = Person(pid, codes[acc["code"]], p["address"].lower(), p.get("name", ""), Role(p["role"]),
                            pin_hmac(KEY, p["pin"]) if p.get("pin") else None)
            d.people_by_addr.setdefault(person.address, []).append(person)
    staff = data.get("staff", {})
    d.staff_addresses = {a.lower() for a in staff.get("addresses", [])}
    d.staff_domains = {a.lower() for a in staff.get("domains", [])}
    cases: dict[int, CaseRef] = {}
    msgids: dict[str, int] = {}
    resolved: dict[int, list[ResolvedCase]] = {}
    for c in data.get("cases", []):
        acc_id = codes.get(c.get("account", ""))
        closed = c.get("closed_at")
        cases[c["number"]] = CaseRef(c["number"] + 1000, c["number"], acc_id, c["requester"].lower(),
                                     c.get("status", "acknowledged"),
                                     closed.replace(tzinfo=UTC) if isinstance(closed, datetime) and closed.tzinfo is None else closed)
        for mid in c.get("message_ids", []):
            msgids[mid] = c["number"]
        if c.get("status") in ("resolved", "closed") and acc_id is not None:
            resolved.setdefault(acc_id, []).append(ResolvedCase(c["number"], c.get("subject", ""), c.get("text", "")))
    return d, cases, msgids, resolved


def mail_from_bytes(raw: bytes, received_at: datetime | None = None, key: bytes = KEY) -> Mail:
    block = split_headers(raw)
    info = read_headers(raw, block)
    parsed = parse_email(raw, info)
    pins = find_pins(parsed.text_body, subject=block.text("subject") or "")
    return Mail(
        raw=raw, block=block, info=info, body=redact(parsed.text_body),
        received_at=received_at or info.date_at or datetime(2026, 11, 23, 13, 0, tzinfo=UTC),
        to=parsed.to, cc=parsed.cc, pin_hmacs=tuple(pin_hmac(key, p) for p in pins),
    )
