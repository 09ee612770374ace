"""Survey replies: a score, or a follow-up on the case.

A reply counts as a satisfaction score only when it answers one of our
surveys (its ``[Survey #N]`` subject token, or our survey's Message-ID in
In-Reply-To/References) and the first line of its newest, unquoted part is
exactly one digit 1-5.  Anything else ("5 minutes later it crashed again")
is a follow-up on the case.  The token alone counts only from the case's
requester: a stranger cannot score someone else's case.
"""

from __future__ import annotations

import re
from dataclasses import replace

from mailcase.rules.base import Context, Disposition, Effect, Mail, Outcome, Verdict
from mailcase.rules.threading import attach

RULE = "survey"
SURVEY_TOKEN = re.compile(r"\[\s*Survey\s*#\s*(\d{1,9})\s*\]", re.IGNORECASE)


def first_line(reply_text: str) -> str:
    for line in reply_text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def survey(mail: Mail, ctx: Context, so_far: Outcome) -> Verdict | None:
    ids = list(mail.info.in_reply_to) + list(mail.info.references)
    m = SURVEY_TOKEN.search(mail.subject or "")
    found = ctx.survey_for(ids, int(m.group(1)) if m else None, mail.sender or "")
    if found is None:
        return None
    case, outbox_id = found
    line = first_line(mail.reply_text)
    if re.fullmatch(r"[1-5]", line):
        return Verdict(RULE, "survey-score", f"satisfaction score {line} for case #{case.number:06d}",
                       Disposition.SURVEY_RESPONSE, case=case,
                       effects=(Effect("record-survey", {"case_id": case.id, "outbox_id": outbox_id,
                                                         "score": int(line)}),))
    attached = attach(mail, ctx, case, "replies to its survey", RULE)
    return replace(attached, name="survey-comment" if attached.name == "follow-up" else attached.name,
                   reason=f"first line is not a score 1-5: {attached.reason}")
