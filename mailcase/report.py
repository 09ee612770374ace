"""Reports: did we keep the agreement's promises?

Per cutoff: mails and cases.  Per case: received -> processed (the batch),
processed -> receipt sent, received -> first staff action, each against the
24/48-hour promise; breaches; cases by severity and tier; abuse flags by
account.  Durations are real elapsed hours (UTC arithmetic).
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

from mailcase.batch import BATCH
from mailcase.cases import CASE
from mailcase.classify import CLASSIFICATION
from mailcase.directory import ACCOUNT
from mailcase.ledger import MESSAGE

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
    received_to_receipt: DurationStats = field(default_factory=DurationStats)
    received_to_first_staff_action: DurationStats = field(default_factory=DurationStats)
    breaches: list[dict[str, Any]] = field(default_factory=list)
    by_severity: dict[str, int] = field(default_factory=dict)
    by_tier: dict[str, int] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)
    abuse_flags: dict[str, dict[str, int]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


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
    r2r: list[float] = []
    r2s: list[float] = []
    sev: Counter[str] = Counter()
    tier: Counter[str] = Counter()
    status: Counter[str] = Counter()
    flags: dict[str, Counter[str]] = defaultdict(Counter)
    for c in conn.execute(cq):
        for target, value in ((r2p, _hours(c.received_at, c.processed_at)),
                              (p2r, _hours(c.processed_at, c.receipt_sent_at)),
                              (r2r, _hours(c.received_at, c.receipt_sent_at)),
                              (r2s, _hours(c.received_at, c.first_staff_action_at))):
            if value is not None:
                target.append(value)
        breach_at = c.ack_breach_at
        receipt = c.receipt_sent_at
        if breach_at is not None and ((receipt is None and breach_at <= now) or (receipt is not None and receipt > breach_at)):
            report.breaches.append({
                "case": c.number, "account": c.code, "received_at": c.received_at.isoformat() if c.received_at else None,
                "receipt_sent_at": receipt.isoformat() if receipt else None,
                "hours": _hours(c.received_at, receipt or now),
            })
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
          .where(CLASSIFICATION.c.notice == "not-authorized", MESSAGE.c.historical.is_(False))
          .group_by(ACCOUNT.c.code))
    if since:
        oq = oq.where(MESSAGE.c.received_at >= since)
    for code, n in conn.execute(oq):
        flags[code]["outside-channel"] += int(n)
    report.received_to_processed = DurationStats.of(r2p)
    report.processed_to_receipt = DurationStats.of(p2r)
    report.received_to_receipt = DurationStats.of(r2r)
    report.received_to_first_staff_action = DurationStats.of(r2s)
    report.by_severity = dict(sorted(sev.items()))
    report.by_tier = dict(sorted(tier.items()))
    report.by_status = dict(sorted(status.items()))
    report.abuse_flags = {k: dict(v) for k, v in sorted(flags.items())}
    from mailcase.surveys import stats

    st = stats(conn, since)
    report.extra["surveys"] = {"sent": st.sent, "responses": st.responses, "average score": st.average}
    return report


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
    for name in ("received_to_processed", "processed_to_receipt", "received_to_receipt",
                 "received_to_first_staff_action"):
        s: DurationStats = getattr(report, name)
        w.writerow(["duration", name, s.count, s.median_h, s.max_h, s.within_24h, s.within_48h, s.over_48h])
    w.writerow(["section", "case", "account", "received_at", "receipt_sent_at", "hours"])
    for b in report.breaches:
        w.writerow(["breach", b["case"], b["account"], b["received_at"], b["receipt_sent_at"], b["hours"]])
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
    lines.append("the 24/48-hour promise      cases  median h  max h  <=24h  <=48h  >48h")
    for name, label in (("received_to_processed", "received -> processed"),
                        ("processed_to_receipt", "processed -> receipt sent"),
                        ("received_to_receipt", "received -> receipt sent"),
                        ("received_to_first_staff_action", "received -> first staff action")):
        s: DurationStats = getattr(report, name)
        lines.append(f"{label:<27} {s.count:>5}  {s.median_h if s.median_h is not None else '-':>8}  "
                     f"{s.max_h if s.max_h is not None else '-':>5}  {s.within_24h:>5}  {s.within_48h:>5}  {s.over_48h:>4}")
    lines.append("")
    lines.append(f"breaches (no receipt within 48 h): {len(report.breaches)}")
    for b in report.breaches:
        lines.append(f"  case #{b['case']:06d} {b['account'] or '-'}: {b['hours']} h"
                     + ("" if b["receipt_sent_at"] else " and still no receipt"))
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
