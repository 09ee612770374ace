"""Reports: did we keep the agreement's promises?

The agreement: requests are "acknowledged within 24 to 48 hours from the time
they are processed".  A case is processed at its cutoff; what is measured is
the first human response to the customer (a specialist's reply or the
resolution, when it went out), against the case's due time (one business day
after the cutoff) and its breach time (two business days).  Per cutoff:
mails and cases.  Per case: received -> processed, processed -> receipt (the
automatic acknowledgement), processed -> first human response; cases nearing
and past their due time; breaches; cases by severity and tier; abuse flags
by account; notices that were not sent, with the reason.  Durations are real
elapsed hours.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcase.core.states import CLOSED_CASE_STATUSES, NOTICE_KIND_PREFIX, CaseStatus, OutboxStatus, PromiseState
from mailcase.domain.tables import ACCOUNT, BATCH, CASE, CLASSIFICATION, MESSAGE, OUTBOX
from mailcase.mail.subjects import case_label
from mailcase.outbound.surveys import stats
from mailcase.rules.base import Notice

PROMISE = timedelta(hours=24)
LIMIT = timedelta(hours=48)


def _hours(a: datetime | None, b: datetime | None) -> float | None:
    if a is None or b is None:
        return None
    return round((b - a).total_seconds() / 3600, 2)


@dataclass
class DurationStats:
    count: int = 0
    median_h: float | None = None
    max_h: float | None = None
    within_24h: int = 0
    within_48h: int = 0
    over_48h: int = 0

    @classmethod
    def of(cls, values: list[float]) -> DurationStats:
        if not values:
            return cls()
        return cls(len(values), round(statistics.median(values), 2), round(max(values), 2),
                   sum(v <= 24 for v in values), sum(v <= 48 for v in values), sum(v > 48 for v in values))


@dataclass
class Report:
    since: datetime | None
    now: datetime
    cutoffs: list[dict[str, Any]] = field(default_factory=list)
    received_to_processed: DurationStats = field(default_factory=DurationStats)
    processed_to_receipt: DurationStats = field(default_factory=DurationStats)
    processed_to_first_response: DurationStats = field(default_factory=DurationStats)
    received_to_first_staff_action: DurationStats = field(default_factory=DurationStats)
    #: cases answered by their due time / their breach time / late or not at all
    answered_by_due: int = 0
    answered_by_breach: int = 0
    breaches: list[dict[str, Any]] = field(default_factory=list)
    #: open cases with no human response yet, due within the warning window
    due_soon: list[dict[str, Any]] = field(default_factory=list)
    #: past their due time, not yet past their breach time, no human response
    overdue: list[dict[str, Any]] = field(default_factory=list)
    #: notices the rules decided were owed but not sent, by reason
    notices_not_sent: dict[str, int] = field(default_factory=dict)
    by_severity: dict[str, int] = field(default_factory=dict)
    by_tier: dict[str, int] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)
    abuse_flags: dict[str, dict[str, int]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


#: a case due within this long is "due soon"
DUE_SOON = timedelta(hours=4)


def promise_state(c: Any, now: datetime) -> PromiseState | None:
    """Where a case's first human response stands (None: answered in time, or not due yet)."""
    if c.ack_due_at is None or c.ack_breach_at is None or c.status == CaseStatus.HELD:
        return None
    answered = c.first_response_at
    if answered is not None:
        return PromiseState.BREACHED if answered > c.ack_breach_at else None
    if c.status in CLOSED_CASE_STATUSES:
        return None
    if now >= c.ack_breach_at:
        return PromiseState.BREACHED
    if now >= c.ack_due_at:
        return PromiseState.OVERDUE
    if now >= c.ack_due_at - DUE_SOON:
        return PromiseState.DUE_SOON
    return None


def build(conn: Connection, now: datetime, since: datetime | None = None) -> Report:
    report = Report(since, now)
    bq = sa.select(BATCH).order_by(BATCH.c.cutoff_at)
    if since:
        bq = bq.where(BATCH.c.cutoff_at >= since)
    for b in conn.execute(bq):
        report.cutoffs.append({
            "cutoff": b.cutoff_at.isoformat(), "ran_at": b.ran_at.isoformat(), "mails": b.mails,
            "cases": b.cases, "follow_ups": b.follow_ups, "acknowledgements": b.acknowledgements,
            "notices": b.notices, "late_mails": b.late_mails, "late_mailboxes": list(b.late_mailboxes or []),
        })
    cq = sa.select(CASE, ACCOUNT.c.code).outerjoin(ACCOUNT, ACCOUNT.c.id == CASE.c.account_id)
    if since:
        cq = cq.where(CASE.c.received_at >= since)
    r2p: list[float] = []
    p2r: list[float] = []
    p2h: list[float] = []
    r2s: list[float] = []
    sev: Counter[str] = Counter()
    tier: Counter[str] = Counter()
    status: Counter[str] = Counter()
    flags: dict[str, Counter[str]] = defaultdict(Counter)
    for c in conn.execute(cq):
        for target, value in ((r2p, _hours(c.received_at, c.processed_at)),
                              (p2r, _hours(c.processed_at, c.receipt_sent_at)),
                              (p2h, _hours(c.processed_at, c.first_response_at)),
                              (r2s, _hours(c.received_at, c.first_staff_action_at))):
            if value is not None:
                target.append(value)
        answered = c.first_response_at
        if answered is not None and c.ack_due_at is not None and answered <= c.ack_due_at:
            report.answered_by_due += 1
        if answered is not None and c.ack_breach_at is not None and answered <= c.ack_breach_at:
            report.answered_by_breach += 1
        state = promise_state(c, now)
        entry = {
            "case": c.number, "account": c.code, "owner_id": c.owner_id,
            "processed_at": c.processed_at.isoformat() if c.processed_at else None,
            "due_at": c.ack_due_at.isoformat() if c.ack_due_at else None,
            "breach_at": c.ack_breach_at.isoformat() if c.ack_breach_at else None,
            "first_response_at": answered.isoformat() if answered else None,
            "hours": _hours(c.processed_at, answered or now),
        }
        if state is PromiseState.BREACHED:
            report.breaches.append(entry)
        elif state is PromiseState.OVERDUE:
            report.overdue.append(entry)
        elif state is PromiseState.DUE_SOON:
            report.due_soon.append(entry)
        sev[str(c.severity)] += 1
        tier[c.tier] += 1
        status[c.status] += 1
        for f in c.flags or []:
            if f in ("volume", "outside-channel", "kb-answer") or f.startswith("repeats-case-"):
                flags[c.code or "(none)"]["repeats-case" if f.startswith("repeats-case-") else f] += 1
    # requests outside the representative channel become no case: count them from the classifications
    oq = (sa.select(ACCOUNT.c.code, sa.func.count())
          .select_from(CLASSIFICATION.join(ACCOUNT, ACCOUNT.c.id == CLASSIFICATION.c.account_id)
                       .join(MESSAGE, MESSAGE.c.id == CLASSIFICATION.c.message_pk))
          .where(CLASSIFICATION.c.notice == Notice.NOT_AUTHORIZED.value, MESSAGE.c.historical.is_(False))
          .group_by(ACCOUNT.c.code))
    if since:
        oq = oq.where(MESSAGE.c.received_at >= since)
    for code, n in conn.execute(oq):
        flags[code]["outside-channel"] += int(n)
    report.received_to_processed = DurationStats.of(r2p)
    report.processed_to_receipt = DurationStats.of(p2r)
    report.processed_to_first_response = DurationStats.of(p2h)
    report.received_to_first_staff_action = DurationStats.of(r2s)
    nq = (sa.select(CLASSIFICATION.c.notice, CLASSIFICATION.c.notice_withheld_reason, sa.func.count())
          .select_from(CLASSIFICATION.join(MESSAGE, MESSAGE.c.id == CLASSIFICATION.c.message_pk))
          .where(CLASSIFICATION.c.notice.is_not(None), CLASSIFICATION.c.notice_allowed.is_(False),
                 MESSAGE.c.historical.is_(False))
          .group_by(CLASSIFICATION.c.notice, CLASSIFICATION.c.notice_withheld_reason))
    if since:
        nq = nq.where(MESSAGE.c.received_at >= since)
    withheld: Counter[str] = Counter()
    for notice, reason, n in conn.execute(nq):
        withheld[f"{notice}: {_reason_kind(reason)}"] += int(n)
    oq = sa.select(OUTBOX.c.kind, OUTBOX.c.status, sa.func.count()).where(
        OUTBOX.c.status.in_([s.value for s in (OutboxStatus.CAPPED, OutboxStatus.SUPPRESSED, OutboxStatus.CANCELLED,
                                             OutboxStatus.FAILED)]),
        OUTBOX.c.kind.like(f"{NOTICE_KIND_PREFIX}%")
    ).group_by(OUTBOX.c.kind, OUTBOX.c.status)
    if since:
        oq = oq.where(OUTBOX.c.created_at >= since)
    for kind, status, n in conn.execute(oq):
        withheld[f"{str(kind).partition('/')[2]}: {status} at delivery"] += int(n)
    report.notices_not_sent = dict(sorted(withheld.items()))
    report.by_severity = dict(sorted(sev.items()))
    report.by_tier = dict(sorted(tier.items()))
    report.by_status = dict(sorted(status.items()))
    report.abuse_flags = {k: dict(v) for k, v in sorted(flags.items())}
    st = stats(conn, since)
    report.extra["surveys"] = {"sent": st.sent, "responses": st.responses, "average score": st.average}
    return report


def _reason_kind(reason: str | None) -> str:
    """The kind of a withholding reason, without the address or the details."""
    text = (reason or "").partition(": ")[2] or reason or "no reason recorded"
    for marker in ("no single From", "may not be answered automatically", "marked as spam", "no aligned",
                   "had one in the last", "told of this lock already"):
        if marker in text:
            return marker
    return text[:60]


def as_json(report: Report) -> str:
    data = asdict(report)
    data["since"] = report.since.isoformat() if report.since else None
    data["now"] = report.now.isoformat()
    return json.dumps(data, indent=2)


def as_csv(report: Report) -> str:
    """One section per table, each with its own header row."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["section", "cutoff", "mails", "cases", "follow_ups", "acknowledgements", "notices", "late_mails"])
    for c in report.cutoffs:
        w.writerow(["cutoff", c["cutoff"], c["mails"], c["cases"], c["follow_ups"], c["acknowledgements"],
                    c["notices"], c["late_mails"]])
    w.writerow(["section", "measure", "count", "median_h", "max_h", "within_24h", "within_48h", "over_48h"])
    for name in ("received_to_processed", "processed_to_receipt", "processed_to_first_response",
                 "received_to_first_staff_action"):
        s: DurationStats = getattr(report, name)
        w.writerow(["duration", name, s.count, s.median_h, s.max_h, s.within_24h, s.within_48h, s.over_48h])
    w.writerow(["section", "case", "account", "processed_at", "due_at", "breach_at", "first_response_at", "hours"])
    for section, entries in (("breach", report.breaches), ("overdue", report.overdue), ("due-soon", report.due_soon)):
        for b in entries:
            w.writerow([section, b["case"], b["account"], b["processed_at"], b["due_at"], b["breach_at"],
                        b["first_response_at"], b["hours"]])
    w.writerow(["section", "notice", "count", ""])
    for what, n in report.notices_not_sent.items():
        w.writerow(["notice-not-sent", what, n, ""])
    w.writerow(["section", "group", "key", "count"])
    for group in ("by_severity", "by_tier", "by_status"):
        for k, v in getattr(report, group).items():
            w.writerow(["count", group, k, v])
    for account, counts in report.abuse_flags.items():
        for flag, n in counts.items():
            w.writerow(["abuse", account, flag, n])
    for k, v in report.extra.items():
        w.writerow(["extra", k, json.dumps(v), ""])
    return out.getvalue()


def as_text(report: Report) -> str:
    lines = [f"report at {report.now:%Y-%m-%d %H:%M} UTC" + (f" since {report.since:%Y-%m-%d}" if report.since else "")]
    lines.append("")
    lines.append("cutoffs (UTC)            mails  cases  follow-ups  acks  notices  late")
    for c in report.cutoffs:
        lines.append(f"{c['cutoff'][:16]:<24} {c['mails']:>5}  {c['cases']:>5}  {c['follow_ups']:>10}  "
                     f"{c['acknowledgements']:>4}  {c['notices']:>7}  {c['late_mails']:>4}"
                     + (f"  (mailboxes late: {', '.join(c['late_mailboxes'])})" if c["late_mailboxes"] else ""))
    lines.append("")
    lines.append("hours                                 cases  median h  max h  <=24h  <=48h  >48h")
    for name, label in (("received_to_processed", "received -> processed (cutoff)"),
                        ("processed_to_receipt", "processed -> acknowledgement"),
                        ("processed_to_first_response", "processed -> first human response"),
                        ("received_to_first_staff_action", "received -> first staff action")):
        s: DurationStats = getattr(report, name)
        lines.append(f"{label:<37} {s.count:>5}  {s.median_h if s.median_h is not None else '-':>8}  "
                     f"{s.max_h if s.max_h is not None else '-':>5}  {s.within_24h:>5}  {s.within_48h:>5}  {s.over_48h:>4}")
    lines.append("")
    lines.append("the promise (a human answer one business day after the cutoff, two at the latest): "
                 f"{report.answered_by_due} answered by the due time, {report.answered_by_breach} by the breach time")
    for label, entries in (("breached (no human answer in time)", report.breaches),
                           ("past due", report.overdue), ("due within 4 h", report.due_soon)):
        lines.append(f"{label}: {len(entries)}")
        for b in entries:
            lines.append(f"  case {case_label(b['case'])} {b['account'] or '-'}: due {b['due_at'][:16]}, "
                         + (f"answered {b['first_response_at'][:16]}" if b["first_response_at"] else "no answer yet"))
    lines.append("notices not sent: " + ("none" if not report.notices_not_sent else ""))
    for what, n in report.notices_not_sent.items():
        lines.append(f"  {what}: {n}")
    lines.append("")
    lines.append("cases by severity: " + (", ".join(f"{k}: {v}" for k, v in report.by_severity.items()) or "none"))
    lines.append("cases by tier: " + (", ".join(f"{k}: {v}" for k, v in report.by_tier.items()) or "none"))
    lines.append("cases by status: " + (", ".join(f"{k}: {v}" for k, v in report.by_status.items()) or "none"))
    lines.append("abuse flags by account: " + ("none" if not report.abuse_flags else ""))
    for account, counts in report.abuse_flags.items():
        lines.append(f"  {account}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for k, v in report.extra.items():
        lines.append(f"{k}: {v}")
    return "\n".join(lines)
