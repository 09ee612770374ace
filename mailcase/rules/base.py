"""What a rule is: the mail it reads, the context it asks, the verdict it gives.

Rules are small pure functions with one signature (Mailman 3's rules are the
model)::

    def rule(mail: Mail, ctx: Context, so_far: Outcome) -> Verdict | None

They never touch the database or send mail: they read the mail, ask the
context (directory, known Message-IDs, counts, clock) through the
:class:`Context` protocol, and look at what earlier rules decided.  A verdict
has a stable kebab-case name and a human reason; every verdict is stored.
Effects a verdict asks for (record a bounce, lock PIN acceptance, reopen a
case) are data, applied by the impure runner in record.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cached_property
from typing import Any, Literal, Protocol, TypeAlias

from mailcase.config.rules import SEVERITY_LEVELS, RulesConfig, StaffConfig
from mailcase.config.settings import Config
from mailcase.domain.people import Account, Person
from mailcase.mail.fingerprints import fingerprint, loose_fingerprint
from mailcase.mail.header_info import HeaderInfo
from mailcase.mail.headers import HeaderBlock
from mailcase.mail.quoting import latest_reply
from mailcase.rules.effects import Effect


class Disposition(StrEnum):
    """Where a mail ends up (issue 4)."""

    SUPPRESSED = "suppressed"            # kept, no case, no reply
    FOLLOW_UP = "follow-up"              # attached to an existing case
    STAFF_NOTE = "staff-note"            # staff mail on a case
    NOTICE_ONLY = "notice-only"          # no case; a notice may be owed
    HELD_FOR_REVIEW = "held-for-review"  # floods: nothing until staff release it
    SURVEY_RESPONSE = "survey-response"  # a satisfaction score, recorded
    PENDING = "pending"                  # a request for the next cutoff


class Mark(StrEnum):
    NO_AUTO_REPLY = "no-auto-reply"  # RFC 3834: we may not reply automatically
    AUTOMATIC = "automatic"          # sent by a machine, not a person


class Notice(StrEnum):
    """Notices a mail can earn instead of (or besides) a case."""

    NOT_AUTHORIZED = "not-authorized"   # known user, not a representative
    UNKNOWN_SENDER = "unknown-sender"
    UNVERIFIED = "unverified-sender"    # a representative's address, not authenticated
    WHICH_ACCOUNT = "which-account"     # representative of several accounts
    PIN = "pin"                         # PIN missing or wrong
    PIN_LOCKED = "pin-locked"           # PIN acceptance locked after repeated failures (sent once)
    HOLD = "hold"                       # account not in good standing: case held
    OUT_OF_SCOPE = "out-of-scope"       # coding, billing, payer advice


@dataclass(frozen=True)
class CaseRef:
    id: int
    number: int
    account_id: int | None
    requester: str
    status: str
    closed_at: datetime | None = None
    resolved_at: datetime | None = None


@dataclass(frozen=True)
class ResolvedCase:
    number: int
    subject: str
    text: str


#: who the From address is in the directory (rules/identity.py)
SenderKind: TypeAlias = Literal["representative", "user", "unknown", "unparseable", "ambiguous"]


@dataclass(frozen=True)
class SenderMatch:
    kind: SenderKind
    address: str | None
    person: Person | None = None
    account: Account | None = None

    @property
    def eligible(self) -> bool:
        return self.kind == "representative" and self.account is not None


@dataclass(frozen=True)
class AuthResult:
    """What our own receiving server said (RFC 8601), for the From domain."""

    checked: bool             # False in insecure-off mode
    found: bool               # a header from our authserv-id was present
    dmarc_pass: bool          # dmarc=pass aligned with the From domain
    spf_aligned_pass: bool
    dkim_aligned_pass: bool
    spam: bool
    detail: str

    @property
    def may_receive_notice(self) -> bool:
        if not self.checked:
            return not self.spam
        return (self.spf_aligned_pass or self.dkim_aligned_pass) and not self.spam


@dataclass(frozen=True)
class Mail:
    """Everything the rules may read about one mail."""

    raw: bytes
    block: HeaderBlock
    info: HeaderInfo
    body: str
    received_at: datetime
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    pk: int | None = None
    historical: bool = False
    #: HMACs of the PIN candidates found at parse time (the digits are never kept)
    pin_hmacs: tuple[str, ...] = ()
    #: the authentication result an earlier pass computed under the same
    #: settings (parsing Authentication-Results is the chain's dearest step)
    auth_cache: AuthResult | None = None
    #: the newest part of the body as the parse worker found it (None: work it out)
    stored_reply: str | None = None
    #: the fingerprint the parse worker stored (of the text before PINs were
    #: redacted, as every other mail's stored fingerprint it is compared with)
    stored_body_hash: str | None = None
    #: the loose fingerprint of the newest part (numbers and punctuation blanked)
    stored_loose_hash: str | None = None
    #: where ``raw`` holds only the head of the mail (a cutoff reads no more
    #: than the header block needs), this fetches the whole of it
    load_raw: Callable[[], bytes] | None = field(default=None, compare=False, repr=False)
    #: what the content-only rules worked out from this mail alone, in JSON form
    #: (content.py): read from the classification at a cutoff, filled as they run
    facts: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    #: what a pass worked out about this mail and may ask again (the key of its facts), never stored
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def whole_raw(self) -> bytes:
        """All the bytes of the mail (the bounce rule reads the report parts)."""
        return self.load_raw() if self.load_raw is not None else self.raw

    @property
    def sender(self) -> str | None:
        return self.info.from_addr

    def header(self, name: str) -> str | None:
        return self.block.first(name)

    def headers(self, name: str) -> list[str]:
        return self.block.values(name)

    @property
    def subject(self) -> str:
        return self.info.subject

    @cached_property
    def reply_text(self) -> str:
        """The newest, unquoted part of the body (several rules read it: worked out once)."""
        return self.stored_reply if self.stored_reply is not None else latest_reply(self.body)

    @property
    def body_hash(self) -> str:
        return self.stored_body_hash or fingerprint(self.body)

    @property
    def loose_hash(self) -> str:
        """Equal for near-identical texts: an autoresponder's with a new date in it."""
        return self.stored_loose_hash or loose_fingerprint(self.reply_text)




class Directory(Protocol):
    """Accounts, their people and staff, as of the context's ``as_of``."""

    def people(self, address: str) -> Sequence[Person]: ...
    def account(self, account_id: int) -> Account | None: ...
    def is_staff(self, address: str) -> bool: ...


class Context(Protocol):
    """What rules may ask.  Implemented over the database and by test fakes."""

    @property
    def now(self) -> datetime: ...
    @property
    def settings(self) -> RuleSettings: ...
    @property
    def directory(self) -> Directory: ...

    def case_for_message_ids(self, ids: Sequence[str]) -> CaseRef | None: ...
    def case_by_number(self, number: int) -> CaseRef | None: ...
    def survey_for(self, ids: Sequence[str], token_case: int | None, sender: str) -> tuple[CaseRef, int] | None:
        """(case, outbox row) of a survey we sent that these ids or this token answer."""
        ...
    def is_our_message_id(self, message_id: str) -> bool: ...
    def similar_mails_before(
        self, sender: str, subject: str, body_hash: str, since: datetime, until: datetime
    ) -> int: ...
    def sender_mails_before(self, sender: str, since: datetime, until: datetime) -> int: ...
    def repeated_requests(self, sender: str, subject: str, loose_hash: str, since: datetime,
                          until: datetime) -> int:
        """In how many earlier cutoffs' periods within [since, until) ``sender`` sent a mail
        with this normalised subject and loose fingerprint (mails of this mail's own
        period become one case anyway: only a repeat across cutoffs is a loop)."""
        ...
    def notices_sent(self, address: str, kind: str, since: datetime) -> int: ...
    def pin_failures(self, account_id: int, since: datetime) -> int: ...
    def account_requests(self, account_id: int, since: datetime, until: datetime) -> int: ...
    def resolved_cases(self, account_id: int) -> Sequence[ResolvedCase]: ...


@dataclass(frozen=True)
class RuleSettings:
    """The rules' view of the configuration: the ``[rules]`` table as configured,
    and what is worked out from it and from ``[outgoing]``.

    Built in one place (:meth:`from_config`); a rule reads a knob of the table
    as ``ctx.settings.rules.flood_same_count``, so no field is listed twice.
    """

    rules: RulesConfig
    #: the addresses we send from: mail from them is our own coming back
    our_addresses: tuple[str, ...] = ()
    #: the ``[staff]`` table: how staff mail is told apart as a reply to the customer
    staff: StaffConfig = field(default_factory=StaffConfig)

    @classmethod
    def from_config(cls, config: Config) -> RuleSettings:
        return cls(config.rules, (config.outgoing.from_address.lower(),), config.staff)

    @property
    def authserv_id(self) -> str | None:
        """The server whose Authentication-Results we trust; None: insecure-off."""
        rules = self.rules
        return rules.authserv_id if rules.sender_authentication == "authserv-id" else None

    @cached_property
    def severity_phrases(self) -> Mapping[int, tuple[str, ...]]:
        """The configured phrases by severity level (1 critical ... 4 low)."""
        return {SEVERITY_LEVELS[name]: phrases for name, phrases in self.rules.severity.items()}


@dataclass(frozen=True)
class Verdict:
    rule: str
    name: str
    reason: str
    disposition: Disposition | None = None
    marks: frozenset[Mark] = frozenset()
    case: CaseRef | None = None
    sender: SenderMatch | None = None
    auth: AuthResult | None = None
    notice: Notice | None = None
    #: set by the no-backscatter rule: may the notice be sent?
    notice_allowed: bool | None = None
    severity: int | None = None
    flags: tuple[str, ...] = ()
    out_of_scope: bool = False
    hold: bool = False
    effects: tuple[Effect, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """What the chain decided so far; each verdict folds into it."""

    verdicts: tuple[Verdict, ...] = ()
    disposition: Disposition | None = None
    marks: frozenset[Mark] = frozenset()
    case: CaseRef | None = None
    sender: SenderMatch | None = None
    auth: AuthResult | None = None
    notice: Notice | None = None
    notice_allowed: bool = False
    notice_withheld_reason: str | None = None
    severity: int = 3
    flags: tuple[str, ...] = ()
    out_of_scope: bool = False
    hold: bool = False
    effects: tuple[Effect, ...] = ()

    def fold(self, v: Verdict) -> Outcome:
        changes: dict[str, Any] = {"verdicts": self.verdicts + (v,)}
        if v.disposition is not None:
            changes["disposition"] = v.disposition
        if v.marks:
            changes["marks"] = self.marks | v.marks
        if v.case is not None:
            changes["case"] = v.case
        if v.sender is not None:
            changes["sender"] = v.sender
        if v.auth is not None:
            changes["auth"] = v.auth
        if v.notice is not None:
            changes["notice"] = v.notice
        if v.notice_allowed is not None:
            changes["notice_allowed"] = v.notice_allowed
            changes["notice_withheld_reason"] = None if v.notice_allowed else v.reason
        if v.severity is not None:
            changes["severity"] = v.severity
        if v.flags:
            changes["flags"] = self.flags + tuple(f for f in v.flags if f not in self.flags)
        if v.out_of_scope:
            changes["out_of_scope"] = True
        if v.hold:
            changes["hold"] = True
        if v.effects:
            changes["effects"] = self.effects + v.effects
        # dataclasses.replace, without its per-call walk over the fields
        # (the chain folds some thirty verdicts a mail): Outcome has no
        # __post_init__ and every key above is a field
        new = object.__new__(Outcome)
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        return new

    @property
    def final(self) -> Disposition:
        return self.disposition or Disposition.PENDING

    def hit(self, name: str) -> bool:
        return any(v.name == name for v in self.verdicts)


Rule = Callable[[Mail, Context, Outcome], Verdict | None]


@dataclass(frozen=True)
class RuleSpec:
    """A row of the chain table."""

    name: str
    fn: Rule
    #: runs even after an earlier rule decided "notice-only" (other
    #: dispositions end the chain)
    after_notice: bool = False
