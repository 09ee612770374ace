"""Cutoff batches: pending mail becomes cases, exactly once, once the mail is in.

"Close every due cutoff", not "run at 09:30": each cutoff between the last
one done and now, oldest first, one transaction per cutoff, one batch at a
time (``pg_try_advisory_xact_lock`` on PostgreSQL; on SQLite the write lock
``BEGIN IMMEDIATE`` takes), a unique row per cutoff, mail claimed with
``UPDATE ... WHERE batch_id IS NULL`` behind the unique mail -> case link.
A crash mid-batch rolls the whole cutoff back; the next run does it again.

A cutoff C closes only when every enabled mailbox has completed a sync that
started after C and all mail received before C is classified.  A mailbox
unreachable for longer than the grace period lets C close with an alert;
its late mail joins the next cutoff, marked late.

At the cutoff the rules chain runs again for every claimed mail against the
directory *as of C*; requests are grouped into cases (a requester's mails in
one thread, or with the same normalised subject unless it is generic); every
mail owed is rendered and queued in the same transaction.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mailcase.calendar import BusinessCalendar
from mailcase.cases import (
    CASE,
    CASE_MESSAGE,
    CaseAllocator,
    CASE_EVENT,
    CaseStatus,
    create_cases,
    event,
    priority_for,
    staff_addresses,
)
from mailcase.classify import (
    CLASSIFICATION,
    DbContext,
    PassCache,
    Recorder,
    bounce_matcher,
    load_mails,
    rule_settings,
)
from mailcase.clock import Clock
from mailcase.config import Config
from mailcase.db import insert_ignore, is_postgres, transaction
from mailcase.directory import ACCOUNT, DbDirectory
from mailcase.fetch import MAILBOX_STATE
from mailcase.kb import Suggestion
from mailcase.kb import count as kb_count
from mailcase.kb import suggest as kb_suggest
from mailcase.ledger import MESSAGE
from mailcase.log import kv
from mailcase.models import Batch as BatchRow
from mailcase.outbox import OutboxQueue, OutgoingMail
from mailcase.render import find_templates, render
from mailcase.rules.base import Disposition, Mail, Mark, Outcome
from mailcase.rules.chain import run_chain
from mailcase.rules.severity import NAMES as SEVERITY_NAMES
from mailcase.rules.threading import CASE_TOKEN
from mailcase.states import MessageState

log = logging.getLogger(__name__)
BATCH = BatchRow.__table__  # type: ignore[attr-defined]
BATCH_LOCK_KEY = 0x6D61696C63617365  # "mailcase"
CHUNK = 500  # mails loaded at once by a cutoff
_PREFIX = re.compile(r"^\s*((re|fw|fwd|aw|wg|sv|vs|antw|antwort|tr|réf|rif|r)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_TAGS = re.compile(r"\[[^\]]{0,40}\]")


def normalise_subject(subject: str) -> str:
    """Re:/Fwd:/AW:/WG: and [tags] stripped, case and spacing folded."""
    s = subject or ""
    for _ in range(5):
        before = s
        s = _PREFIX.sub("", _TAGS.sub(" ", CASE_TOKEN.sub(" ", s))).strip()
        if s == before:
            break
    return " ".join(s.lower().split())


# -- which cutoffs are due, and may they close ------------------------------------------


def last_done(conn: Connection) -> datetime | None:
    value: datetime | None = conn.execute(sa.select(sa.func.max(BATCH.c.cutoff_at))).scalar()
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def _pending_query() -> sa.Select[Any]:
    return sa.select(MESSAGE.c.id).where(
        MESSAGE.c.state == MessageState.PENDING.value, MESSAGE.c.batch_id.is_(None),
        MESSAGE.c.historical.is_(False),
    )


def due_cutoffs(conn: Connection, cal: BusinessCalendar, now: datetime) -> list[datetime]:
    last = last_done(conn)
    if last is None:
        first = conn.execute(
            sa.select(sa.func.min(MESSAGE.c.received_at)).where(
                MESSAGE.c.state.in_([MessageState.PENDING.value, MessageState.HEADERS_READ.value,
                                     MessageState.PARSED.value]),
                MESSAGE.c.historical.is_(False),
            )
        ).scalar()
        if first is None:
            return []
        if first.tzinfo is None:
            first = first.replace(tzinfo=UTC)
        last = cal.cutoff_for(first) - timedelta(microseconds=1)
    return cal.cutoffs_between(last, now)


@dataclass(frozen=True)
class Readiness:
    ready: bool
    late_mailboxes: tuple[str, ...] = ()
    waiting_for: str = ""


def readiness(conn: Connection, config: Config, cutoff: datetime, now: datetime) -> Readiness:
    grace = timedelta(minutes=config.batch.mailbox_grace_minutes)
    late: list[str] = []
    for box in config.mailboxes:
        if not box.enabled:
            continue
        row = conn.execute(sa.select(MAILBOX_STATE.c.last_sync_ok_started_at)
                           .where(MAILBOX_STATE.c.name == box.name)).first()
        synced = row[0] if row else None
        if synced is not None and synced >= cutoff:
            continue
        if now - cutoff >= grace:
            late.append(box.name)
            continue
        return Readiness(False, waiting_for=f"mailbox {box.name} has not completed a sync that started "
                                             f"after the cutoff (grace until {cutoff + grace:%H:%M} UTC)")
    unclassified = conn.execute(
        sa.select(sa.func.count()).select_from(MESSAGE).where(
            MESSAGE.c.received_at < cutoff, MESSAGE.c.historical.is_(False),
            MESSAGE.c.state.in_([MessageState.STORED.value, MessageState.HEADERS_READ.value,
                                 MessageState.PARSED.value]),
        )
    ).scalar_one()
    if unclassified:
        return Readiness(False, tuple(late), f"{unclassified} mails received before the cutoff are not classified yet")
    return Readiness(True, tuple(late))


# -- running one cutoff --------------------------------------------------------------------


@dataclass
class CutoffResult:
    cutoff: datetime
    batch_id: int | None = None
    mails: int = 0
    cases: list[int] = field(default_factory=list)  # case numbers
    follow_ups: int = 0
    notices: int = 0
    notices_withheld: int = 0
    acknowledgements: int = 0
    released: int = 0
    late_mails: int = 0
    late_mailboxes: tuple[str, ...] = ()
    dry_run: bool = False

    def summary(self) -> str:
        late = f", late mailboxes {', '.join(self.late_mailboxes)}" if self.late_mailboxes else ""
        return (
            f"cutoff {self.cutoff:%Y-%m-%d %H:%M} UTC: {self.mails} mails -> {len(self.cases)} new cases"
            f", {self.follow_ups} follow-ups, {self.acknowledgements} acknowledgements, "
            f"{self.notices} notices queued ({self.notices_withheld} withheld)"
            + (f", {self.released} held cases released" if self.released else "")
            + (f", {self.late_mails} late mails" if self.late_mails else "") + late
        )


def _lock(conn: Connection) -> bool:
    if is_postgres(conn):
        return bool(conn.execute(sa.text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": BATCH_LOCK_KEY}).scalar())
    return True  # SQLite: BEGIN IMMEDIATE already holds the database's write lock


class _Groups:
    """Union-find over a requester's request mails in one batch."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def group_requests(items: Sequence[tuple[Mail, Outcome]], generic: set[str]) -> list[list[int]]:
    """Indexes of ``items`` grouped into cases (items are one requester's, oldest first)."""
    g = _Groups(len(items))
    by_id = {m.info.message_id: i for i, (m, _) in enumerate(items)}
    by_subject: dict[str, int] = {}
    for i, (mail, _) in enumerate(items):
        for ref in mail.info.in_reply_to + mail.info.references:
            j = by_id.get(ref)
            if j is not None:
                g.join(i, j)
        subject = normalise_subject(mail.subject)
        if subject not in generic:
            if subject in by_subject:
                g.join(i, by_subject[subject])
            else:
                by_subject[subject] = i
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(items)):
        groups[g.find(i)].append(i)
    return sorted(groups.values(), key=lambda idxs: idxs[0])


def _template_vars(config: Config, zone: ZoneInfo) -> dict[str, Any]:
    return {"signature": f"{config.outgoing.from_name}\n{config.outgoing.from_address}", "zone": zone}


def run_cutoff(
    conn: Connection, config: Config, cal: BusinessCalendar, cutoff: datetime, now: datetime,
    late_mailboxes: tuple[str, ...] = (), dry_run: bool = False,
) -> CutoffResult | None:
    """Close one cutoff inside the caller's transaction; None if it was done already."""
    result = CutoffResult(cutoff, late_mailboxes=late_mailboxes, dry_run=dry_run)
    previous = conn.execute(sa.select(sa.func.max(BATCH.c.cutoff_at)).where(BATCH.c.cutoff_at < cutoff)).scalar()
    inserted = conn.execute(
        sa.insert(BATCH).values(cutoff_at=cutoff, ran_at=now, late_mailboxes=list(late_mailboxes))
        .returning(BATCH.c.id)
    ) if not _batch_exists(conn, cutoff) else None
    if inserted is None:
        return None
    batch_id = int(inserted.scalar_one())
    result.batch_id = batch_id

    pks = [r[0] for r in conn.execute(
        _pending_query().where(MESSAGE.c.received_at < cutoff).order_by(MESSAGE.c.received_at, MESSAGE.c.id)
    )]
    for i in range(0, len(pks), 500):
        part = pks[i : i + 500]
        conn.execute(sa.update(MESSAGE).where(MESSAGE.c.id.in_(part), MESSAGE.c.batch_id.is_(None))
                     .values(batch_id=batch_id))
    claimed = [r[0] for r in conn.execute(sa.select(MESSAGE.c.id).where(MESSAGE.c.batch_id == batch_id)
                                          .order_by(MESSAGE.c.received_at, MESSAGE.c.id))]
    result.mails = len(claimed)
    if previous is not None and previous.tzinfo is None:
        previous = previous.replace(tzinfo=UTC)

    key = config.hmac_key()
    settings = rule_settings(config)
    directory = DbDirectory(conn, cutoff, config.staff, staff_addresses(conn))
    released_from_review = _released_from_review(conn, claimed)
    templates = find_templates(config.outgoing.templates_dir)
    zone = cal.zone
    base_vars = _template_vars(config, zone)
    phase = f"cutoff {cutoff:%Y-%m-%dT%H:%MZ}"
    requests: dict[tuple[str, int | None], list[tuple[Mail, Outcome]]] = defaultdict(list)
    cache = PassCache()
    recorder = Recorder(conn, phase, now, cache, bounce_matcher(conn, config, key, now), settings)
    notice_only: list[int] = []
    outbox = OutboxQueue(conn, config, key, now)
    # in chunks: a cutoff after a long outage can hold tens of thousands of mails
    # (load_mails reads only the head of each: no attachment is held)
    for start in range(0, len(claimed), CHUNK):
        chunk = claimed[start : start + CHUNK]
        mails = load_mails(conn, chunk, reread_headers=False, settings=settings)
        cache.prefetch(conn, list(mails.values()), directory)
        for pk in chunk:
            mail = mails.pop(pk)
            ctx = DbContext(conn, cutoff, settings, directory, key, cache, message_pk=pk)
            disabled = frozenset({"floods"}) if pk in released_from_review else frozenset()
            outcome = run_chain(mail, ctx, disabled=disabled)
            recorder.add(mail, outcome)
            if previous is not None and mail.received_at < previous:
                result.late_mails += 1
            final = outcome.final
            if final is Disposition.PENDING:
                sender = outcome.sender
                acc = sender.account.id if sender and sender.account else None
                requests[((sender.address if sender else None) or mail.sender or "", acc)].append((mail, outcome))
            elif final is Disposition.NOTICE_ONLY:
                if outcome.notice is not None and outcome.notice_allowed:
                    _queue_notice(outbox, templates, base_vars, mail, outcome, None, batch_id)
                    cache.add_notice(_people_vars(outcome, mail)["requester"], outcome.notice.value, cutoff)
                    result.notices += 1
                elif outcome.notice is not None:
                    result.notices_withheld += 1
                notice_only.append(pk)
            elif final in (Disposition.FOLLOW_UP, Disposition.STAFF_NOTE):
                result.follow_ups += 1
            # suppressed / held: the recorder sets the state
        recorder.flush()
        outbox.flush()  # the next chunk's notice lookups read the outbox
    if notice_only:
        _set_state(conn, notice_only, MessageState.BATCHED, now)

    generic = {s.lower() for s in config.batch.generic_subjects}
    allocator = CaseAllocator(conn, now)
    kb_ready = config.kb.suggestions > 0 and kb_count(conn) > 0
    acks: dict[str, list[dict[str, Any]]] = defaultdict(list)
    ack_meta: dict[str, tuple[Mail, Outcome, list[int]]] = {}
    planned: list[tuple[str, list[tuple[Mail, Outcome]], list[Suggestion], dict[str, Any]]] = []
    for (requester, _account_id), items in requests.items():
        for idxs in group_requests(items, generic):
            group = [items[i] for i in idxs]
            suggestions: list[Suggestion] = []
            if kb_ready:
                first_mail = group[0][0]
                suggestions = kb_suggest(conn, f"{first_mail.subject}\n{first_mail.reply_text}",
                                         config.kb.suggestions, config.kb.min_score)
            kb_answer = bool(suggestions) and suggestions[0].score >= config.kb.answer_score
            planned.append((requester, group, suggestions, _case_values(group, previous, now, batch_id, kb_answer)))
    for start in range(0, len(planned), CHUNK):
        part = planned[start : start + CHUNK]
        made = _make_cases(conn, [(group, values) for _, group, _, values in part], now, result, allocator)
        for (requester, group, suggestions, values), (case_id, number) in zip(part, made, strict=True):
            first_mail, first_outcome = group[0]
            view = {
                "number": number, "subject": values["subject"],
                "severity_name": SEVERITY_NAMES.get(values["severity"], str(values["severity"])),
                "repeat_of": _repeat_of(values["flags"]),
                "suggestions": [{"title": x.title, "url": x.url} for x in suggestions],
            }
            if values["held"] or values["out_of_scope"]:
                notice = "hold" if values["held"] else "out-of-scope"
                if any(o.notice_allowed for _, o in group) or not values["no_auto_reply"]:
                    _queue_notice(outbox, templates, base_vars, first_mail, first_outcome,
                                  (case_id, number, view), batch_id, notice_override=notice)
                    result.notices += 1
                continue
            if values["no_auto_reply"]:
                continue  # automatic mail from a representative: a case, no acknowledgement
            acks[requester].append(view)
            meta = ack_meta.get(requester)
            if meta is None:  # the acknowledgement answers the requester's earliest mail
                ack_meta[requester] = (first_mail, first_outcome, [case_id])
            else:
                meta[2].append(case_id)

    for requester, views in acks.items():
        first_mail, first_outcome, case_ids = ack_meta[requester]
        _queue_ack(outbox, templates, base_vars, requester, views, case_ids, first_mail,
                   first_outcome, cutoff, batch_id)
        result.acknowledgements += 1

    allocator.flush()
    result.released = _release_held(conn, outbox, templates, base_vars, cutoff, batch_id, now)
    outbox.flush()
    conn.execute(sa.update(BATCH).where(BATCH.c.id == batch_id).values(
        mails=result.mails, cases=len(result.cases), follow_ups=result.follow_ups, notices=result.notices,
        acknowledgements=result.acknowledgements, late_mails=result.late_mails))
    if late_mailboxes:
        log.warning("event=alert cutoff=%s what=%s", cutoff.isoformat(),
                    kv(f"cutoff closed without a sync of {', '.join(late_mailboxes)}: their late mail joins the next"))
    return result


def _batch_exists(conn: Connection, cutoff: datetime) -> bool:
    return conn.execute(sa.select(BATCH.c.id).where(BATCH.c.cutoff_at == cutoff)).first() is not None


def _released_from_review(conn: Connection, pks: Sequence[int]) -> set[int]:
    if not pks:
        return set()
    from mailcase.classify import VERDICT

    return {r[0] for r in conn.execute(
        sa.select(VERDICT.c.message_pk).where(VERDICT.c.message_pk.in_(list(pks)), VERDICT.c.name == "released")
    )}


def _set_state(conn: Connection, pks: Sequence[int], state: MessageState, now: datetime) -> None:
    conn.execute(sa.update(MESSAGE).where(MESSAGE.c.id.in_(list(pks))).values(state=state.value, state_changed_at=now))


def _repeat_of(flags: Sequence[str]) -> int | None:
    for f in flags:
        if f.startswith("repeats-case-"):
            return int(f.rsplit("-", 1)[1])
    return None


def _case_values(
    group: list[tuple[Mail, Outcome]], previous: datetime | None, now: datetime, batch_id: int,
    kb_answer: bool = False,
) -> dict[str, Any]:
    """The case row a group of requests becomes (number and owner come at insert)."""
    first_mail, first = group[0]
    sender = first.sender
    severity = min(o.severity for _, o in group)
    held = any(o.hold for _, o in group)
    out_of_scope = any(o.out_of_scope for _, o in group)
    flags: list[str] = []
    for _, o in group:
        flags += [f for f in o.flags if f not in flags]
    if previous is not None and any(m.received_at < previous for m, _ in group):
        flags.append("late")  # received before an earlier cutoff, arrived after it closed
    if kb_answer:
        flags.append("kb-answer")  # an abuse flag: the knowledge base answers this
    linked = next((e.data.get("case_id") for _, o in group for e in o.effects if e.kind == "link-case"), None)
    received = min(m.received_at for m, _ in group)
    status = CaseStatus.HELD if held else CaseStatus.OUT_OF_SCOPE if out_of_scope else CaseStatus.NEW
    return {
        "account_id": sender.account.id if sender and sender.account else None,
        "requester": (sender.address if sender else None) or first_mail.sender or "",
        "person_id": sender.person.id if sender and sender.person else None,
        "subject": (first_mail.subject or "(no subject)")[:500],
        "severity": severity, "priority": priority_for(severity, held, out_of_scope), "tier": "SSI",
        "status": status.value, "out_of_scope": out_of_scope, "held": held,
        "no_auto_reply": all(Mark.NO_AUTO_REPLY in o.marks for _, o in group),
        "flags": flags, "linked_case_id": linked, "batch_id": batch_id,
        "released_at": None, "received_at": received, "processed_at": now,
        # the promise runs from the request's arrival, in real hours (UTC arithmetic)
        "ack_due_at": received + timedelta(hours=24), "ack_breach_at": received + timedelta(hours=48),
        "receipt_sent_at": None, "first_staff_action_at": None, "resolved_at": None, "closed_at": None,
    }


def _make_cases(
    conn: Connection, planned: Sequence[tuple[list[tuple[Mail, Outcome]], dict[str, Any]]], now: datetime,
    result: CutoffResult, allocator: CaseAllocator,
) -> list[tuple[int, int]]:
    """Insert the cases of many groups, link their mails, mark them batched: a
    handful of statements, not five per case."""
    made = create_cases(conn, [values for _, values in planned], now, "batch", allocator)
    links: list[dict[str, Any]] = []
    linked: list[dict[str, Any]] = []
    for (group, values), (case_id, number) in zip(planned, made, strict=True):
        pks = [m.pk for m, _ in group if m.pk is not None]
        log.info("event=case-created case=%s messages=%s requester=%s severity=%s status=%s", number,
                 ",".join(str(pk) for pk in pks), kv(values["requester"]), values["severity"], values["status"])
        links += [{"message_pk": pk, "case_id": case_id, "role": "request", "at": now} for pk in pks]
        if values["linked_case_id"]:
            linked.append({"case_id": case_id, "at": now, "actor": "batch", "kind": "linked",
                           "detail": f"follows up closed case id {values['linked_case_id']}"})
        result.cases.append(number)
    insert_ignore(conn, CASE_MESSAGE, links, ["message_pk"])
    pks = [link["message_pk"] for link in links]
    for i in range(0, len(pks), CHUNK):
        _set_state(conn, pks[i : i + CHUNK], MessageState.BATCHED, now)
    if links:
        conn.execute(sa.update(CLASSIFICATION).where(CLASSIFICATION.c.message_pk == sa.bindparam("b_pk"))
                     .values(case_pk=sa.bindparam("b_case")),
                     [{"b_pk": link["message_pk"], "b_case": link["case_id"]} for link in links])
    if linked:
        conn.execute(sa.insert(CASE_EVENT), linked)
    return made


def _people_vars(outcome: Outcome, mail: Mail) -> dict[str, Any]:
    sender = outcome.sender
    name = (sender.person.name if sender and sender.person and sender.person.name else None) or mail.info.from_name
    return {"requester": (sender.address if sender else None) or mail.sender or "", "requester_name": name or ""}


def _queue_notice(
    outbox: OutboxQueue, templates: Any, base: dict[str, Any], mail: Mail,
    outcome: Outcome, case: tuple[int, int, dict[str, Any]] | None, batch_id: int,
    notice_override: str | None = None,
) -> None:
    notice = notice_override or (outcome.notice.value if outcome.notice else "")
    sender = outcome.sender
    account = sender.account if sender else None
    authenticated = bool(outcome.auth and (outcome.auth.dmarc_pass or not outcome.auth.checked))
    scope_category = next((f.split(":", 1)[1] for f in outcome.flags if f.startswith("out-of-scope:")), "such")
    variables = {
        **base, **_people_vars(outcome, mail), "notice": notice,
        "original_subject": mail.subject or "(no subject)",
        "account_name": account.name if account else "",
        # administrator names only to a sender whose mail is authenticated
        "administrators": list(account.administrators) if account and authenticated else [],
        "pin_locked": bool(account and account.pin_locked),
        "scope_category": scope_category,
        "cases": [case[2] | {"number": case[1]}] if case else [],
    }
    rendered = render(templates, "notice", variables)
    to = variables["requester"]
    if case is not None:
        key_text = f"notice:{notice}:case:{case[0]}"
    else:
        key_text = f"notice:{notice}:message:{mail.pk}"
    outbox.add(OutgoingMail(
        key=key_text, kind="notice", notice_kind=notice, to_addr=to, to_name=variables["requester_name"],
        rendered=rendered, case_id=case[0] if case else None, case_number=case[1] if case else None,
        message_pk=mail.pk, batch_id=batch_id, in_reply_to=mail.info.message_id,
        references=mail.info.references,
    ))


def _merged_suggestions(views: list[dict[str, Any]], limit: int = 3) -> list[dict[str, str]]:
    seen: set[str] = set()
    out = []
    for view in views:
        for s in view.get("suggestions", []):
            if s["url"] not in seen:
                seen.add(s["url"])
                out.append(s)
    return out[:limit]


def _queue_ack(
    outbox: OutboxQueue, templates: Any, base: dict[str, Any], requester: str,
    views: list[dict[str, Any]], case_ids: list[int], mail: Mail, outcome: Outcome, cutoff: datetime,
    batch_id: int,
) -> None:
    zone = base["zone"]
    received = mail.received_at
    variables = {
        **base, **_people_vars(outcome, mail), "cases": views,
        "cutoff": cutoff.astimezone(zone),
        "promise_due": (received + timedelta(hours=24)).astimezone(zone),
        "promise_breach": (received + timedelta(hours=48)).astimezone(zone),
        "suggestions": _merged_suggestions(views),
    }
    rendered = render(templates, "ack", variables)
    outbox.add(OutgoingMail(
        key=f"ack:batch:{batch_id}:{requester}", kind="ack", notice_kind=None, to_addr=requester,
        to_name=variables["requester_name"], rendered=rendered, case_id=case_ids[0],
        case_number=views[0]["number"] if len(views) == 1 else None, case_ids=tuple(case_ids),
        message_pk=mail.pk, batch_id=batch_id, in_reply_to=mail.info.message_id,
        references=mail.info.references,
    ))


def _release_held(
    conn: Connection, outbox: OutboxQueue, templates: Any, base: dict[str, Any],
    cutoff: datetime, batch_id: int, now: datetime,
) -> int:
    """Held cases whose account's standing was restored before the cutoff: acknowledged now."""
    rows = conn.execute(sa.select(CASE).where(
        CASE.c.status == CaseStatus.HELD.value, CASE.c.released_at.is_not(None), CASE.c.released_at <= cutoff
    )).all()
    zone = base["zone"]
    for row in rows:
        conn.execute(sa.update(CASE).where(CASE.c.id == row.id).values(
            status=CaseStatus.NEW.value, held=False, priority=row.severity, batch_id=batch_id))
        event(conn, row.id, now, "batch", "released", "account back in good standing")
        if row.no_auto_reply:
            continue
        acc = conn.execute(sa.select(ACCOUNT.c.name).where(ACCOUNT.c.id == row.account_id)).scalar()
        view = {"number": row.number, "subject": row.subject,
                "severity_name": SEVERITY_NAMES.get(row.severity, str(row.severity)), "repeat_of": None}
        rendered = render(templates, "ack", {
            **base, "requester": row.requester, "requester_name": acc or "", "cases": [view],
            "cutoff": cutoff.astimezone(zone), "promise_due": (cutoff + timedelta(hours=24)).astimezone(zone),
            "promise_breach": (cutoff + timedelta(hours=48)).astimezone(zone), "suggestions": [],
        })
        first = conn.execute(
            sa.select(MESSAGE.c.message_id).join(CASE_MESSAGE, CASE_MESSAGE.c.message_pk == MESSAGE.c.id)
            .where(CASE_MESSAGE.c.case_id == row.id).order_by(MESSAGE.c.id).limit(1)
        ).scalar()
        outbox.add(OutgoingMail(
            key=f"ack:released:{row.id}", kind="ack", notice_kind=None, to_addr=row.requester, to_name="",
            rendered=rendered, case_id=row.id, case_number=row.number, case_ids=(row.id,),
            batch_id=batch_id, in_reply_to=first,
        ))
    return len(rows)


# -- the driver ----------------------------------------------------------------------------


class _DryRun(Exception):
    """Raised to roll a dry run's transaction back."""

    def __init__(self, result: CutoffResult | None) -> None:
        self.result = result


@dataclass
class BatchRun:
    results: list[CutoffResult] = field(default_factory=list)
    waiting: str = ""
    next_cutoff: datetime | None = None


def run_due(engine: Engine, config: Config, clock: Clock, *, dry_run: bool = False, limit: int = 1000) -> BatchRun:
    """Close every due cutoff that may close, oldest first, one transaction each."""
    cal = BusinessCalendar(config.calendar)
    run = BatchRun()
    for _ in range(limit):
        now = clock.now()
        result: CutoffResult | None = None
        try:
            with transaction(engine) as conn:
                if not _lock(conn):
                    run.waiting = "another process is running a batch"
                    return run
                due = due_cutoffs(conn, cal, now)
                if not due:
                    run.next_cutoff = cal.next_cutoff(now)
                    return run
                cutoff = due[0]
                ready = readiness(conn, config, cutoff, now)
                if not ready.ready:
                    run.waiting = f"cutoff {cutoff:%Y-%m-%d %H:%M} UTC waits: {ready.waiting_for}"
                    return run
                result = run_cutoff(conn, config, cal, cutoff, now, ready.late_mailboxes, dry_run)
                if dry_run:
                    raise _DryRun(result)
        except _DryRun as dry:
            if dry.result:
                run.results.append(dry.result)
            return run
        if result is not None:
            run.results.append(result)
            log.info("event=cutoff-closed %s", kv(result.summary()))
    return run
