"""Survey replies: a score, or a follow-up on the case.

A reply counts as a satisfaction score only when it answers one of our
surveys (its ``[Survey #N]`` subject token, or our survey's Message-ID in
In-Reply-To/References) and the first line of its newest, unquoted part is
exactly one digit 1-5.  Anything else ("5 minutes later it crashed again")
is a follow-up on the case.  The token alone counts only from the case's
requester, and only when the mail passed sender authentication (the same
as a new request): a stranger cannot score someone else's case, nor can a
forger writing the requester's address.
"""

from __future__ import annotations

import re
from dataclasses import replace

from mailcase.mail.subjects import case_label, survey_number
from mailcase.rules.authentication import evaluate
from mailcase.rules.base import Context, Disposition, Mail, Outcome, Verdict
from mailcase.rules.effects import RecordSurvey
from mailcase.rules.threading import attach

RULE = "survey"


def first_line(reply_text: str) -> str:
    for line in reply_text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def survey(mail: Mail, ctx: Context, so_far: Outcome) -> Verdict | None:
    ids = list(mail.info.in_reply_to) + list(mail.info.references)
    found = ctx.survey_for(ids, None, mail.sender or "") if ids else None
    if found is None:
        token = survey_number(mail.subject)
        if token is None:
            return None
        # a subject token is typed by anyone: it needs the sender authentication a
        # new request needs, as a case token does (the threading rule)
        auth = evaluate(mail, ctx)
        if not mail.info.from_strict or auth.checked and not auth.dmarc_pass:
            return Verdict(RULE, "survey-token-ignored",
                           f"subject names survey {case_label(token)} but the mail is not authenticated "
                           f"({auth.detail}): token ignored")
        found = ctx.survey_for([], token, mail.sender or "")
        if found is None:
            return None
    case, outbox_id = found
    line = first_line(mail.reply_text)
    if re.fullmatch(r"[1-5]", line):
        return Verdict(RULE, "survey-score", f"satisfaction score {line} for case {case_label(case.number)}",
                       Disposition.SURVEY_RESPONSE, case=case,
                       effects=(RecordSurvey(case.id, outbox_id, int(line)),))
    attached = attach(mail, ctx, case, "replies to its survey", RULE)
    return replace(attached, name="survey-comment" if attached.name == "follow-up" else attached.name,
                   reason=f"first line is not a score 1-5: {attached.reason}")
