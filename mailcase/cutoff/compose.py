"""The mail a cutoff owes: notices, acknowledgements, the released cases' acknowledgement.

Rendered from the templates; composed into outbox rows by the caller before
anything of the unit is written, so that mail that cannot be written fails
its unit, not half of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from mailcase.config.settings import Config
from mailcase.core.states import MailKind
from mailcase.cutoff.make import Batch, NumberedCase
from mailcase.cutoff.plan import requester_of
from mailcase.domain.calendar import BusinessCalendar
from mailcase.outbound.compose import OutgoingMail
from mailcase.outbound.copies import with_copies
from mailcase.outbound.render import Templates, render, templates
from mailcase.rules.base import Mail, Notice, Outcome
from mailcase.rules.severity import NAMES as SEVERITY_NAMES


def people_vars(outcome: Outcome, mail: Mail) -> dict[str, Any]:
    """The requester, greeted by the directory's name or by none: a display name is
    the sender's to write (an impostor's may hold a representative's address)."""
    sender = outcome.sender
    name = sender.person.name if sender and sender.person and sender.person.name else ""
    return {"requester": requester_of(mail, outcome), "requester_name": name}


def severity_name(severity: int) -> str:
    return SEVERITY_NAMES.get(severity, str(severity))


def case_view(case: NumberedCase) -> dict[str, Any]:
    """What the templates show of a new case."""
    planned = case.planned
    return {
        "number": case.number, "subject": planned.subject, "severity_name": severity_name(planned.severity),
        "repeat_of": planned.repeat_of,
        "suggestions": [{"title": x.title, "url": x.url} for x in planned.suggestions],
    }


@dataclass(frozen=True)
class Composer:
    """Renders a cutoff's mail: the templates and what every mail of the batch shows."""

    templates: Templates
    batch: Batch
    zone: ZoneInfo
    signature: str
    cutoff_words: str

    @classmethod
    def for_batch(cls, config: Config, cal: BusinessCalendar, batch: Batch) -> Composer:
        return cls(templates(config.outgoing.templates_dir), batch, cal.zone,
                   f"{config.outgoing.from_name}\n{config.outgoing.from_address}", cal.describe_cutoffs())

    def _base(self) -> dict[str, Any]:
        return {"signature": self.signature, "zone": self.zone}

    def _promise(self, due: datetime, breach: datetime) -> dict[str, Any]:
        return {"cutoff": self.batch.cutoff.astimezone(self.zone), "cutoff_words": self.cutoff_words,
                "promise_due": due.astimezone(self.zone), "promise_breach": breach.astimezone(self.zone)}

    def notice(self, mail: Mail, outcome: Outcome, case: NumberedCase | None = None,
               notice: str | None = None) -> OutgoingMail:
        """The notice the outcome asks for (or ``notice``), about ``case`` if there is one."""
        notice = notice or (outcome.notice.value if outcome.notice else "")
        sender = outcome.sender
        account = sender.account if sender else None
        authenticated = bool(outcome.auth and (outcome.auth.dmarc_pass or not outcome.auth.checked))
        scope_category = next((f.split(":", 1)[1] for f in outcome.flags if f.startswith("out-of-scope:")), "such")
        variables = {
            **self._base(), **people_vars(outcome, mail), "notice": notice,
            "original_subject": mail.subject or "(no subject)",
            "account_name": account.name if account else "",
            # administrator names only to a sender whose mail is authenticated
            "administrators": list(account.administrators) if account and authenticated else [],
            "pin_locked": bool(account and account.pin_locked),
            "pin_problem": next((v.name for v in outcome.verdicts if v.rule == "pin"), ""),
            "scope_category": scope_category,
            "cases": [case_view(case)] if case else [],
        }
        rendered = render(self.templates, "notice", variables)
        number = case.number if case else None
        key_text = f"notice:{notice}:case:{number}" if case is not None else f"notice:{notice}:message:{mail.pk}"
        return OutgoingMail(
            key=key_text, kind=MailKind.NOTICE, notice_kind=notice, to_addr=variables["requester"],
            to_name=variables["requester_name"], rendered=rendered, case_number=number,
            message_pk=mail.pk, batch_id=self.batch.id, in_reply_to=mail.info.message_id,
            references=mail.info.references,
        )

    def unit_mail(self, requester: str, cases: Sequence[NumberedCase]) -> list[OutgoingMail]:
        """A requester's mail about their new cases: a notice for each held or
        out-of-scope case (to a sender who may have one), and an acknowledgement
        for each other case -- its own, with its token in the subject, answering
        the case's first mail, so that a reply to it lands in exactly that case --
        and a copy of it for each colleague the case copies."""
        out: list[OutgoingMail] = []
        acked: list[NumberedCase] = []
        for case in cases:
            planned = case.planned
            if planned.held or planned.out_of_scope:
                if planned.notice_allowed:
                    first = planned.first
                    out.append(self.notice(first.mail, first.outcome, case,
                                           notice=(Notice.HOLD if planned.held else Notice.OUT_OF_SCOPE).value))
                continue
            if planned.no_auto_reply:
                continue  # automatic mail from a representative: a case, no acknowledgement
            acked.append(case)
        views = {case.number: case_view(case) for case in acked}
        for case in acked:
            out += with_copies(self._ack(requester, case, [views[c.number] for c in acked if c is not case],
                                         views[case.number]), case.planned.cc.kept)
        return out

    def _ack(self, requester: str, case: NumberedCase, others: list[dict[str, Any]],
             view: dict[str, Any]) -> OutgoingMail:
        first = case.planned.first
        promise = case.planned.promise
        variables = {
            **self._base(), **people_vars(first.outcome, first.mail), **self._promise(promise.due, promise.breach),
            "case": view, "cases": [view],
            # the requester's other new cases of this cutoff, named, each with its own mail
            "other_cases": others,
            "suggestions": view["suggestions"][:3],
        }
        return OutgoingMail(
            key=f"ack:case:{case.number}", kind=MailKind.ACK, notice_kind=None,
            to_addr=requester, to_name=variables["requester_name"], rendered=render(self.templates, "ack", variables),
            case_number=case.number, message_pk=first.mail.pk, batch_id=self.batch.id,
            in_reply_to=first.mail.info.message_id, references=first.mail.info.references,
        )

    def released_ack(self, case: Any, person_name: str, first_message_id: str | None) -> OutgoingMail:
        """The acknowledgement of a held case released at this cutoff (``case``: its row)."""
        promise = self.batch.promise
        view = {"number": case.number, "subject": case.subject, "severity_name": severity_name(case.severity),
                "repeat_of": None, "suggestions": []}
        rendered = render(self.templates, "ack", {
            **self._base(), "requester": case.requester, "requester_name": person_name, "case": view,
            "cases": [view], "other_cases": [], "suggestions": [], **self._promise(promise.due, promise.breach),
        })
        return OutgoingMail(
            key=f"ack:released:{case.id}", kind=MailKind.ACK, notice_kind=None, to_addr=case.requester,
            to_name=person_name, rendered=rendered, case_id=case.id, case_number=case.number,
            case_ids=(case.id,), batch_id=self.batch.id, in_reply_to=first_message_id,
        )
