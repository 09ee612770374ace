"""Who a cutoff's case copies: the requester's colleagues in To and Cc, and why other addresses are dropped.

The addresses a request names in Cc (and in To, besides our own support
address) become copies of the case's acknowledgement, staff replies and
resolution when they are known users of the requester's account in the
directory *as of the cutoff*.  Every other address is dropped with its
reason (not a known user of the account, a user of another account, our own
or a staff address, suppressed), and nothing is taken from mail that failed
authentication.  The facts come from the database in one pass
(:func:`lookup`); the choice is pure (:func:`choose`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcase.config.settings import Config
from mailcase.domain.directory import DbDirectory
from mailcase.domain.tables import SUPPRESSION
from mailcase.mail.addresses import domain_of
from mailcase.rules.base import Mail, Outcome

#: colleagues one case copies at most (the Cc header stays readable; each is a mail)
MAX_COPIES = 10
OUR_OWN = "our own address"
STAFF = "a staff address"
UNAUTHENTICATED = "the mail is not authenticated"


@dataclass(frozen=True)
class CcLookup:
    """What the directory (as of the cutoff), the configuration and the suppressions
    say of the addresses the requests name."""

    #: address -> the accounts it is a known user of
    accounts: Mapping[str, frozenset[int]] = field(default_factory=dict)
    #: account id -> its code (for the reasons)
    codes: Mapping[int, str] = field(default_factory=dict)
    #: our own addresses among them -> why they are ours
    ours: Mapping[str, str] = field(default_factory=dict)
    #: suppressed addresses among them -> the suppression's reason
    suppressed: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CcChoice:
    """The colleagues a case copies, and the addresses dropped with why."""

    kept: tuple[str, ...] = ()
    dropped: tuple[tuple[str, str], ...] = ()

    def detail(self) -> str:
        """The case event's text: who is copied, what was dropped and why."""
        parts = []
        if self.kept:
            parts.append(f"copied: {', '.join(self.kept)}")
        if self.dropped:
            parts.append("dropped: " + "; ".join(f"{a} ({why})" for a, why in self.dropped))
        return "; ".join(parts)

    def __bool__(self) -> bool:
        return bool(self.kept or self.dropped)


def named(mail: Mail) -> list[str]:
    """The addresses a mail names in To and Cc, lower-cased, once each, in order."""
    return list(dict.fromkeys(a.lower() for a in (*mail.to, *mail.cc) if a))


def authenticated(outcome: Outcome) -> bool:
    """The mail passed DMARC aligned with its From (or authentication is off)."""
    auth = outcome.auth
    return auth is not None and (auth.dmarc_pass or not auth.checked)


def choose(mails: Sequence[tuple[Mail, Outcome]], requester: str, account_id: int | None,
           lookup: CcLookup) -> CcChoice:
    """The colleagues a case of ``requester`` (of ``account_id``) copies, from its requests' To and Cc."""
    kept: list[str] = []
    dropped: list[tuple[str, str]] = []
    seen = {requester.lower()}
    code = lookup.codes.get(account_id, str(account_id)) if account_id is not None else "no account"
    for mail, outcome in mails:
        to = {a.lower() for a in mail.to}
        trusted = authenticated(outcome)
        for address in named(mail):
            if address in seen:
                continue
            seen.add(address)
            ours = lookup.ours.get(address)
            if ours is not None:
                if address not in to:  # the support address a request is sent to is no copy
                    dropped.append((address, ours))
                continue
            accounts = lookup.accounts.get(address, frozenset())
            if not trusted:
                dropped.append((address, UNAUTHENTICATED))
            elif account_id is None or account_id not in accounts:
                if accounts:
                    others = ", ".join(sorted(lookup.codes.get(a, str(a)) for a in accounts))
                    dropped.append((address, f"another account ({others})"))
                else:
                    dropped.append((address, f"not a known user of {code}"))
            elif address in lookup.suppressed:
                dropped.append((address, f"suppressed ({lookup.suppressed[address]})"))
            elif len(kept) >= MAX_COPIES:
                dropped.append((address, f"more than {MAX_COPIES} colleagues"))
            else:
                kept.append(address)
    return CcChoice(tuple(kept), tuple(dropped))


def own_addresses(config: Config) -> tuple[frozenset[str], frozenset[str]]:
    """(our own addresses, our own domains): what we send from, bounces come back to,
    the mailboxes we read."""
    out = config.outgoing
    addresses = {out.from_address.lower(), out.bounce_base.lower()}
    addresses |= {m.username.lower() for m in config.mailboxes if m.username and "@" in m.username}
    domains = {domain_of(out.from_address.lower()), out.domain.lower()}
    return frozenset(addresses), frozenset(d for d in domains if d)


def lookup(conn: Connection, config: Config, directory: DbDirectory, mails: Iterable[Mail],
           account_ids: Iterable[int]) -> CcLookup:
    """The facts :func:`choose` needs about every address ``mails`` name."""
    addresses = sorted({a for mail in mails for a in named(mail)})
    if not addresses:
        return CcLookup()
    directory.prefetch(addresses)
    accounts = {a: frozenset(p.account_id for p in directory.people(a)) for a in addresses}
    codes: dict[int, str] = {}
    wanted = {*account_ids, *(i for ids in accounts.values() for i in ids)}
    directory.prefetch_accounts(sorted(wanted))
    for account_id in wanted:
        account = directory.account(account_id)
        codes[account_id] = account.code if account is not None else str(account_id)
    own, domains = own_addresses(config)
    ours: dict[str, str] = {}
    for a in addresses:
        if a in own or domain_of(a) in domains:
            ours[a] = OUR_OWN
        elif directory.is_staff(a):
            ours[a] = STAFF
    suppressed: dict[str, str] = {}
    for i in range(0, len(addresses), 500):
        suppressed.update((r[0], r[1]) for r in conn.execute(
            sa.select(SUPPRESSION.c.address, SUPPRESSION.c.reason).where(
                SUPPRESSION.c.address.in_(addresses[i : i + 500]), SUPPRESSION.c.cleared_at.is_(None))))
    return CcLookup(accounts, codes, ours, suppressed)
