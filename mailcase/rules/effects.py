"""What a verdict asks the desk to do: typed values, handled by the module that owns the table.

Rules stay pure: they return these values and the classify stage applies them
in the mail's transaction, dispatching on the value's type through an
:data:`EffectHandlers` table.  The handlers for the rules' own tables and the
domain's are :data:`mailcase.rules.record.BASE_EFFECTS`; the outbound stage adds
the ones for bounces, survey scores and mail to and from staff
(:data:`mailcase.outbound.effects.EFFECTS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class LinkCase:
    """The mail follows up this case (recorded with the classification)."""

    kind: ClassVar[str] = "link-case"
    case_id: int
    number: int


@dataclass(frozen=True)
class ReopenCase:
    """A resolved or closed case is written to again."""

    kind: ClassVar[str] = "reopen-case"
    case_id: int


@dataclass(frozen=True)
class RecordBounce:
    """A delivery report, read receipt or abuse report about mail we sent (fields are the sender's text)."""

    kind: ClassVar[str] = "record-bounce"
    report: str  # a BounceKind, or report-<type> (core.states.report_kind)
    recipient: str | None = None
    status: str | None = None
    action: str | None = None
    original_message_id: str | None = None
    original_recipient: str | None = None


@dataclass(frozen=True)
class RecordSurvey:
    """A satisfaction score answering one of our surveys."""

    kind: ClassVar[str] = "record-survey"
    case_id: int
    outbox_id: int
    score: int


@dataclass(frozen=True)
class LockPin:
    """Too many wrong PINs: the account's PIN acceptance is locked."""

    kind: ClassVar[str] = "lock-pin"
    account_id: int


@dataclass(frozen=True)
class Alert:
    """Something staff must hear about now (written to the log at warning level)."""

    kind: ClassVar[str] = "alert"
    what: str


@dataclass(frozen=True)
class CustomerWrote:
    """The customer wrote again on a case (a follow-up, or a reply that reopens it): its owner hears."""

    kind: ClassVar[str] = "customer-wrote"
    case_id: int
    reopened: bool = False


@dataclass(frozen=True)
class StaffReply:
    """Staff answered the customer by mail (marked as a reply): queue it to the customer in the case's thread."""

    kind: ClassVar[str] = "staff-reply"
    case_id: int
    number: int
    text: str
    staff: str  # the staff address that wrote it


Effect = LinkCase | ReopenCase | RecordBounce | RecordSurvey | LockPin | Alert | CustomerWrote | StaffReply
