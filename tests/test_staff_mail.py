"""Staff hear about their cases by mail and answer by mail (issue 15).

The rule's decisions (a note by default; a reply with the marker line, the
marker in the subject or the reply address; a forged staff address gains
nothing), the configuration, and the whole flow on a real database: a case
is assigned and its owner mailed; the owner's marked answer is queued to the
customer in the case's thread; the customer's reply is a follow-up (an event,
the owner mailed again); an escalation mails the tier; nothing is queued
twice and nothing loops.  The same flow end to end through Dovecot, the
running service and the SMTP sink is :func:`test_end_to_end_through_the_service`.
"""

from __future__ import annotations

import email
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from batching import AUTH, DIRECTORY, Desk, ny
from helpers import ImapAccount, body_text, make_mail, run_cli
from rules_fake import FakeContext, load_directory, mail_from_bytes, our_message_id, settings
from running_desk import RunningDesk

from mailcase.config.loader import parse_config
from mailcase.config.rules import StaffConfig
from mailcase.core.errors import ConfigError
from mailcase.core.states import CaseEventKind, CaseMessageRole, CaseStatus, MailKind
from mailcase.domain.cases import add_specialist, escalate
from mailcase.domain.db import transaction
from mailcase.domain.tables import CASE, CASE_EVENT, CASE_MESSAGE, MESSAGE, VERDICT
from mailcase.ops.promise import watch
from mailcase.outbound import staffnews
from mailcase.outbound.staffnews import News, notify_escalated, notify_staff
from mailcase.rules.base import Disposition, Mail, Outcome
from mailcase.rules.effects import CustomerWrote, ReopenCase, StaffReply
from mailcase.rules.staff import staff
from mailcase.rules.threading import threading

CORPUS = Path(__file__).parent / "rules_corpus"
RULES_DIRECTORY, CASES, MSGIDS, RESOLVED = load_directory(CORPUS / "directory.toml")
NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
STAFF_PASS = ("mx.support.example; spf=pass smtp.mailfrom=olga@support.example; "
              "dkim=pass header.d=support.example; dmarc=pass header.from=support.example")
STAFF_FAIL = ("mx.support.example; spf=fail smtp.mailfrom=olga@support.example; "
              "dkim=none; dmarc=fail header.from=support.example")


def staff_mail(body: str, subject: str = "Re: [Case #000123] Assigned to you: Printer", auth: str = STAFF_PASS,
               to: str = "support@support.example", cc: str | None = None) -> Mail:
    headers = [("From", "Olga <olga@support.example>"), ("To", to), ("Subject", subject),
               ("Date", "Mon, 23 Nov 2026 09:00:00 -0500"), ("Message-ID", "<staff1@support.example>"),
               ("In-Reply-To", our_message_id(123, "staff")), ("Authentication-Results", auth)]
    if cc:
        headers.append(("Cc", cc))
    raw = "".join(f"{n}: {v}\n" for n, v in headers) + "\n" + body
    return mail_from_bytes(raw.encode("utf-8"))


def ctx(**staff_settings: Any) -> FakeContext:
    rules = settings()
    if staff_settings:
        rules = replace(rules, staff=StaffConfig(**staff_settings))
    return FakeContext(now=NOW, settings=rules, directory=RULES_DIRECTORY, cases=dict(CASES),
                       case_message_ids=dict(MSGIDS), resolved=RESOLVED)


# -- the rule's decisions ----------------------------------------------------------------------


def test_staff_mail_on_a_case_is_a_private_note_by_default() -> None:
    verdict = staff(staff_mail("Looked at it, waiting for the logs.\n"), ctx(), Outcome())
    assert verdict is not None and verdict.name == "staff-note"
    assert verdict.disposition is Disposition.STAFF_NOTE and verdict.case is not None and verdict.case.number == 123
    assert verdict.effects == ()


def test_a_marker_line_makes_a_reply_without_the_line() -> None:
    m = staff_mail("#reply\nHello Alice,\nplease restart the print service.\n\nOlga\n")
    verdict = staff(m, ctx(), Outcome())
    assert verdict is not None and verdict.name == "staff-reply" and verdict.disposition is Disposition.STAFF_NOTE
    (effect,) = verdict.effects
    assert isinstance(effect, StaffReply) and effect.number == 123 and effect.staff == "olga@support.example"
    assert effect.text == "Hello Alice,\nplease restart the print service.\n\nOlga"


def test_the_quoted_notification_is_not_sent_to_the_customer() -> None:
    body = ("#REPLY\nTry the new driver.\n\nOn Mon, Support wrote:\n> Case [Case #000123] from alice\n"
            "> The customer wrote: my PIN is ####\n")
    verdict = staff(staff_mail(body), ctx(), Outcome())
    assert verdict is not None and verdict.name == "staff-reply"
    (effect,) = verdict.effects
    assert isinstance(effect, StaffReply) and effect.text == "Try the new driver."


@pytest.mark.parametrize("subject", ["#reply Re: [Case #000123] Printer", "Re: #reply [Case #000123] Printer",
                                     "RE: AW: #Reply: [Case #000123]"])
def test_the_marker_at_the_start_of_the_subject_makes_a_reply(subject: str) -> None:
    verdict = staff(staff_mail("Please restart it.\n", subject=subject), ctx(), Outcome())
    assert verdict is not None and verdict.name == "staff-reply"


def test_the_marker_elsewhere_is_not_a_reply() -> None:
    m = staff_mail("Do not send #reply yet.\n", subject="Re: [Case #000123] about #reply")
    verdict = staff(m, ctx(), Outcome())
    assert verdict is not None and verdict.name == "staff-note"


@pytest.mark.parametrize(("body", "subject"), [
    ("Hi Alice,\n#reply\nTry again.\n", "Re: [Case #000123] Printer"),   # the marker is not the first line
    ("Will do.\n", "Re: #replying later [Case #000123] Printer"),       # not the marker as a whole word
    ("Will do.\n", "Re: [Case #000123] #reply"),                        # not at the start of the subject
])
def test_the_marker_counts_only_as_a_whole_word_at_the_start(body: str, subject: str) -> None:
    verdict = staff(staff_mail(body, subject=subject), ctx(), Outcome())
    assert verdict is not None and verdict.name == "staff-note" and verdict.effects == ()


def test_with_authentication_off_a_marked_staff_mail_sends_nothing() -> None:
    c = replace(ctx(), settings=settings(authserv_id=None))  # sender_authentication = "insecure-off"
    verdict = staff(staff_mail("#reply\nPlease pay invoice at http://evil.example\n", auth="none"), c, Outcome())
    assert verdict is not None and verdict.name == "staff-note" and verdict.effects == ()
    assert "authentication is off" in verdict.reason


def test_mail_to_the_reply_address_is_a_reply_other_addresses_a_note() -> None:
    c = ctx(reply_address="answer@support.example")
    to_reply = staff(staff_mail("Fixed on our side.\n", cc="answer@support.example"), c, Outcome())
    assert to_reply is not None and to_reply.name == "staff-reply"
    comment = staff(staff_mail("Fixed on our side.\n", to="notes@support.example"), c, Outcome())
    assert comment is not None and comment.name == "staff-note"


def test_a_configured_marker_replaces_the_default() -> None:
    c = ctx(reply_marker="@customer")
    assert staff(staff_mail("#reply\nHi\n"), c, Outcome()).name == "staff-note"  # type: ignore[union-attr]
    verdict = staff(staff_mail("@customer\nHi\n"), c, Outcome())
    assert verdict is not None and verdict.name == "staff-reply"


def test_a_marked_mail_with_no_text_stays_a_note() -> None:
    verdict = staff(staff_mail("#reply\n\n"), ctx(), Outcome())
    assert verdict is not None and verdict.name == "staff-note" and verdict.effects == ()


def test_a_forged_staff_address_gains_nothing() -> None:
    verdict = staff(staff_mail("#reply\nWire the refund.\n", auth=STAFF_FAIL), ctx(), Outcome())
    assert verdict is not None and verdict.name == "staff-unverified"
    assert verdict.disposition is Disposition.SUPPRESSED and verdict.effects == () and verdict.case is None
    assert "no note, no reply" in verdict.reason
    absent = staff(staff_mail("#reply\nWire the refund.\n", auth="mx.evil.example; dmarc=pass"), ctx(), Outcome())
    assert absent is not None and absent.name == "staff-unverified"


def test_staff_mail_on_no_case_is_ignored() -> None:
    raw = (b"From: olga@support.example\nTo: support@support.example\nSubject: lunch?\n"
           b"Message-ID: <l@support.example>\nAuthentication-Results: " + STAFF_PASS.encode() + b"\n\n#reply\nhi\n")
    verdict = staff(mail_from_bytes(raw), ctx(), Outcome())
    assert verdict is not None and verdict.name == "staff-ignored" and verdict.effects == ()


def test_a_customer_follow_up_tells_the_owner_and_a_reopening_too() -> None:
    follow = ("From: alice.admin@acme.example\nTo: support@support.example\nSubject: Re: x\n"
              "Message-ID: <f@acme.example>\nIn-Reply-To: <c1a7e2f0.4410@mail.acme.example>\n\nmore\n")
    verdict = threading(mail_from_bytes(follow.encode()), ctx(), Outcome())
    assert verdict is not None and verdict.name == "follow-up"
    assert verdict.effects == (CustomerWrote(verdict.case.id),)  # type: ignore[union-attr]
    c = ctx()
    c.cases[123] = replace(c.cases[123], status="resolved", resolved_at=NOW)
    reopened = threading(mail_from_bytes(follow.encode()), c, Outcome())
    assert reopened is not None and reopened.name == "reopen"
    case_id = c.cases[123].id
    assert reopened.effects == (ReopenCase(case_id), CustomerWrote(case_id, reopened=True))


# -- configuration -------------------------------------------------------------------------------


def _staff_config(**staff_table: Any) -> StaffConfig:
    return parse_config({"staff": staff_table, "rules": {"sender_authentication": "insecure-off"}},
                        "/etc/mailcase.toml").staff


def test_tier_addresses_are_case_insensitive_and_validated() -> None:
    cfg = _staff_config(notify=True, tier_addresses={"ssii": "Tier2@Support.example", "DEV": "dev@support.example"})
    assert cfg.tier_address("SSII") == "tier2@support.example" and cfg.tier_address("ssii") == "tier2@support.example"
    assert cfg.tier_address("SSIII") is None and cfg.notify and cfg.reply_marker == "#reply"
    with pytest.raises(ConfigError, match=r"/etc/mailcase.toml: staff.tier_addresses: SSIII = 'nobody' is not"):
        _staff_config(tier_addresses={"ssiii": "nobody"})
    with pytest.raises(ConfigError, match=r"staff.tier_addresses: unknown tier 'L4'"):
        _staff_config(tier_addresses={"l4": "l4@support.example"})
    with pytest.raises(ConfigError, match=r"staff.reply_address: 'x y' is not a mail address"):
        _staff_config(reply_address="x y")


# -- the flow on a real database -----------------------------------------------------------------

STAFF = {"notify": True, "domains": ["staff.example"], "tier_addresses": {"ssii": "tier2@staff.example"}}
OWNER = "olga@staff.example"


def _parsed(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=default)


def _kinds(desk: Desk) -> list[tuple[str, str]]:
    return [(r.kind, r.to_addr) for r in desk.outbox()]


def test_the_owner_hears_answers_and_hears_again(db_url: str, tmp_path: Path) -> None:
    desk = Desk(db_url, tmp_path, staff=STAFF)
    desk.directory()
    with transaction(desk.engine) as conn:
        add_specialist(conn, "olga", OWNER, "SSI", datetime(2025, 1, 1, tzinfo=UTC))
    first = desk.mail(ny(2026, 11, 25, 8, 0), subject="Invoices do not print",
                      body="Hello,\nno invoice prints since this morning. PIN: 4321\n\n> old quoted text\n")
    desk.process(ny(2026, 11, 25, 9, 31))
    assert _kinds(desk) == [("ack", "alice@acme.example"), ("staff", OWNER)]
    ack, news = desk.outbox()
    text = _parsed(news.raw)
    assert text["Auto-Submitted"] == "auto-generated" and text["To"] == OWNER
    assert text["Subject"] == "[Case #000001] Assigned to you: Invoices do not print"
    body = body_text(text)
    assert "no invoice prints since this morning" in body and "4321" not in body and "old quoted" not in body
    assert '"#reply"' in body

    # the owner answers from their mail client, marked as a reply
    desk.mail(ny(2026, 11, 25, 10, 0), sender=OWNER, subject=f"Re: {text['Subject']}",
              body="#reply\nHello Alice,\nplease restart the print spooler.\n\n> quoted notification\n",
              headers={"In-Reply-To": news.message_id, "References": news.message_id})
    desk.process(ny(2026, 11, 25, 10, 5))
    assert _kinds(desk)[2:] == [("reply", "alice@acme.example")]
    reply = desk.outbox()[2]
    out = _parsed(reply.raw)
    assert out["In-Reply-To"] == ack.message_id and first in out["References"]
    assert news.message_id not in out["References"]  # mail to staff is not the customer's thread
    reply_body = body_text(out)
    assert "please restart the print spooler" in reply_body and "#reply" not in reply_body
    assert "quoted notification" not in reply_body and "olga" in reply_body
    case = desk.rows(sa.select(CASE))[0]
    assert case.status == CaseStatus.IN_PROGRESS and case.first_staff_action_at is not None

    # a note: no mail to anyone
    desk.mail(ny(2026, 11, 25, 10, 10), sender=OWNER, subject=f"Re: {text['Subject']}",
              body="Asked the printer vendor.\n", headers={"In-Reply-To": news.message_id})
    desk.process(ny(2026, 11, 25, 10, 15))
    assert len(desk.outbox()) == 3
    roles = [r.role for r in desk.rows(sa.select(CASE_MESSAGE.c.role).order_by(CASE_MESSAGE.c.message_pk))]
    assert roles == [CaseMessageRole.REQUEST, CaseMessageRole.STAFF_NOTE, CaseMessageRole.STAFF_NOTE]

    # the customer replies to the answer: a follow-up, an event, the owner hears
    desk.mail(ny(2026, 11, 25, 11, 0), subject=f"Re: {out['Subject']}", body="Still nothing prints.\n",
              headers={"In-Reply-To": reply.message_id, "References": reply.message_id})
    desk.process(ny(2026, 11, 25, 11, 5))
    assert _kinds(desk)[3:] == [("staff", OWNER)]
    again = _parsed(desk.outbox()[3].raw)
    assert again["Subject"] == "[Case #000001] Customer wrote again: Invoices do not print"
    assert "Still nothing prints." in body_text(again)
    events = [r.kind for r in desk.rows(sa.select(CASE_EVENT.c.kind).order_by(CASE_EVENT.c.id))]
    assert CaseEventKind.FOLLOW_UP in events

    # the owner answers the follow-up's notification with a note: no news of it
    desk.mail(ny(2026, 11, 25, 11, 30), sender=OWNER, subject=f"Re: {again['Subject']}", body="On it.\n",
              headers={"In-Reply-To": desk.outbox()[3].message_id})
    desk.process(ny(2026, 11, 25, 11, 35))
    assert len(desk.outbox()) == 4

    # escalation mails the tier, once
    with transaction(desk.engine) as conn:
        escalate(conn, 1, "ssii", ny(2026, 11, 25, 12, 0), "test")
        assert notify_escalated(conn, desk.config, 1, "ssii", ny(2026, 11, 25, 12, 0))
        assert not notify_escalated(conn, desk.config, 1, "SSII", ny(2026, 11, 25, 12, 1))
    assert _kinds(desk)[4:] == [("staff", "tier2@staff.example")]
    assert "Escalated to SSII" in desk.outbox()[4].subject

    # a forged staff address: nothing, and the verdict says why
    forged = desk.mail(ny(2026, 11, 25, 12, 30), sender=OWNER, subject=f"#reply Re: {text['Subject']}",
                       body="Please wire the refund to IBAN X.\n", authenticated=False,
                       headers={"In-Reply-To": news.message_id,
                                "Authentication-Results": "mx.support.example; dmarc=fail header.from=staff.example"})
    desk.process(ny(2026, 11, 25, 12, 35))
    assert len(desk.outbox()) == 5
    names = desk.rows(sa.select(VERDICT.c.name).join(MESSAGE, MESSAGE.c.id == VERDICT.c.message_pk)
                      .where(MESSAGE.c.message_id == forged))
    assert ("staff-unverified",) in [tuple(n) for n in names]

    # never to a customer; re-running queues nothing twice
    with transaction(desk.engine) as conn:
        case_id = conn.execute(sa.select(CASE.c.id)).scalar_one()
        assert not notify_staff(conn, desk.config, case_id, News.FOLLOW_UP, ny(2026, 11, 25, 13, 0), cause="x",
                                to="alice@acme.example")
        assert not notify_staff(conn, desk.config, case_id, News.ASSIGNED, ny(2026, 11, 25, 13, 0),
                                cause=f"owner:{case.owner_id}")
    desk.process(ny(2026, 11, 25, 15, 31))
    assert len(desk.outbox()) == 5
    assert [k for k, _ in _kinds(desk)].count(MailKind.STAFF.value) == 3


def test_a_notification_that_cannot_be_written_stops_nothing(db_url: str, tmp_path: Path) -> None:
    # an operator's override folder whose staff.txt.j2 uses a variable that does not exist
    # (a folder merely without staff.txt.j2 falls back to the packaged one)
    own = tmp_path / "templates"
    own.mkdir()
    (own / "staff.txt.j2").write_text("Subject: {{ no_such_variable }}\n\nCase {{ case.number }}\n")
    desk = Desk(db_url, tmp_path, staff=STAFF, outgoing={"from_address": "support@support.example",
                                                         "templates_dir": str(own),
                                                         "file_dir": str(tmp_path / "outbox")})
    desk.directory()
    with transaction(desk.engine) as conn:
        add_specialist(conn, "olga", OWNER, "SSI", datetime(2025, 1, 1, tzinfo=UTC))
    desk.mail(ny(2026, 11, 25, 8, 0), subject="Invoices do not print")
    desk.process(ny(2026, 11, 25, 9, 31))
    # the case is made and acknowledged; only the owner's notification is missing (and logged)
    assert _kinds(desk) == [("ack", "alice@acme.example")]


def test_without_notify_staff_hear_nothing(db_url: str, tmp_path: Path) -> None:
    desk = Desk(db_url, tmp_path, staff={"notify": False, "domains": ["staff.example"]})
    desk.directory()
    with transaction(desk.engine) as conn:
        add_specialist(conn, "olga", OWNER, "SSI", datetime(2025, 1, 1, tzinfo=UTC))
    desk.mail(ny(2026, 11, 25, 8, 0), subject="Invoices do not print")
    desk.process(ny(2026, 11, 25, 9, 31))
    assert _kinds(desk) == [("ack", "alice@acme.example")]


# -- end to end: Dovecot, the running service, the SMTP sink -----------------------------------


def test_end_to_end_through_the_service(imap: ImapAccount, sqlite_url: str, tmp_path: Path) -> None:
    with RunningDesk(imap, sqlite_url, tmp_path, ny(2026, 11, 25, 7, 0), DIRECTORY, staff=STAFF) as desk:
        sink, cfg, cli_env, at = desk.sink, desk.cfg, desk.cli_env, desk.at

        def deliver(n: int, sender: str, subject: str, body: str, when: datetime, authenticated: bool = True,
                    headers: dict[str, str] | None = None) -> str:
            domain = sender.rpartition("@")[2]
            h = dict(headers or {})
            h[AUTH[0]] = AUTH[1].format(d=domain) if authenticated else (
                f"mx.support.example; spf=fail smtp.mailfrom={domain}; dkim=none; dmarc=fail header.from={domain}")
            msgid = f"<staff-e2e-{n}@{domain}>"
            desk.append(make_mail(n, sender=sender, subject=subject, body=body, date=when, msgid=msgid, headers=h),
                        when)
            return msgid

        added = run_cli("--config", str(cfg), "specialists", "add", "olga", "--address", OWNER, env=cli_env)
        assert added.returncode == 0, added.stderr
        first = deliver(1, "alice@acme.example", "Invoices do not print",
                        "Hello,\nno invoice prints since this morning.\n", ny(2026, 11, 25, 8, 0))
        at(ny(2026, 11, 25, 9, 25))
        at(ny(2026, 11, 25, 9, 40), ny(2026, 11, 25, 9, 30))
        # the case is assigned and its owner mailed
        (news,) = [r.message for r in sink.to(OWNER)]
        assert news["Subject"] == "[Case #000001] Assigned to you: Invoices do not print"
        assert news["Auto-Submitted"] == "auto-generated"
        assert "no invoice prints since this morning" in body_text(news)
        (ack,) = [r.message for r in sink.to("alice@acme.example")]
        # the owner answers from their mail client with the reply marker
        deliver(2, OWNER, f"Re: {news['Subject']}",
                "#reply\nHello Alice,\nplease restart the print spooler.\n\n> quoted notification\n",
                ny(2026, 11, 25, 10, 0), headers={"In-Reply-To": news["Message-ID"],
                                                   "References": news["Message-ID"]})
        at(ny(2026, 11, 25, 10, 5))
        # the customer receives it, threaded under their case
        replies = [r.message for r in sink.to("alice@acme.example")][1:]
        assert len(replies) == 1
        reply = replies[0]
        assert reply["In-Reply-To"] == ack["Message-ID"] and first in reply["References"]
        assert reply["Subject"].startswith("[Case #000001]") and reply["Auto-Submitted"] is None
        text = body_text(reply)
        assert "please restart the print spooler" in text and "#reply" not in text and "quoted" not in text
        # the customer replies: the owner is mailed again
        deliver(3, "alice@acme.example", f"Re: {reply['Subject']}", "Still nothing prints.\n",
                ny(2026, 11, 25, 10, 30), headers={"In-Reply-To": reply["Message-ID"],
                                                    "References": f"{first} {reply['Message-ID']}"})
        at(ny(2026, 11, 25, 10, 35))
        again = [r.message for r in sink.to(OWNER)][1:]
        assert [m["Subject"] for m in again] == ["[Case #000001] Customer wrote again: Invoices do not print"]
        assert "Still nothing prints." in body_text(again[0])
        # an escalation mails the new tier
        up = run_cli("--config", str(cfg), "case", "escalate", "1", "--to", "SSII", env=cli_env)
        assert up.returncode == 0, up.stderr
        at(ny(2026, 11, 25, 10, 45))
        (tier,) = [r.message for r in sink.to("tier2@staff.example")]
        assert tier["Subject"] == "[Case #000001] Escalated to SSII: Invoices do not print"
        # a forged staff address is ignored; a note to a notification notifies nobody
        forged = deliver(4, OWNER, f"#reply Re: {news['Subject']}", "Please wire the refund to IBAN X.\n",
                         ny(2026, 11, 25, 11, 0), authenticated=False, headers={"In-Reply-To": news["Message-ID"]})
        deliver(5, OWNER, f"Re: {again[0]['Subject']}", "On it.\n", ny(2026, 11, 25, 11, 5),
                headers={"In-Reply-To": again[0]["Message-ID"]})
        at(ny(2026, 11, 25, 11, 30))
        assert desk.stop() == 0
    # nothing loops: every mail the sink received, once
    received = Counter(rcpt for r in sink.received for rcpt in r.rcpt_tos)
    assert received == Counter({"alice@acme.example": 2, OWNER: 2, "tier2@staff.example": 1}), received
    assert all(n == 1 for n in Counter(str(r.message["Message-ID"]) for r in sink.received).values())
    with desk.engine.connect() as conn:
        verdicts = {r.name for r in conn.execute(
            sa.select(VERDICT.c.name).join(MESSAGE, MESSAGE.c.id == VERDICT.c.message_pk)
            .where(MESSAGE.c.message_id == forged))}
        case = conn.execute(sa.select(CASE)).one()
    assert "staff-unverified" in verdicts
    assert case.first_response_at is not None and case.tier == "SSII"


def test_the_owner_hears_of_the_promise_once_per_state(db_url: str, tmp_path: Path) -> None:
    desk = Desk(db_url, tmp_path, staff=STAFF)
    desk.directory()
    with transaction(desk.engine) as conn:
        add_specialist(conn, "olga", OWNER, "SSI", datetime(2025, 1, 1, tzinfo=UTC))
    desk.mail(ny(2026, 11, 23, 8, 0), subject="Invoices do not print")
    desk.process(ny(2026, 11, 23, 9, 31))
    case = desk.rows(sa.select(CASE))[0]
    for moment in (case.ack_due_at - timedelta(hours=1), case.ack_due_at - timedelta(minutes=30),
                   case.ack_due_at + timedelta(minutes=1), case.ack_breach_at + timedelta(minutes=1),
                   case.ack_breach_at + timedelta(hours=1)):
        with transaction(desk.engine) as conn:
            watch(conn, moment, desk.config)
    subjects = [r.subject for r in desk.outbox() if r.kind == MailKind.STAFF]
    assert subjects == [f"{h}: Invoices do not print"
                        for h in ("Assigned to you", "Due soon", "Overdue", "Breached")]
    assert "Due " in body_text(_parsed(desk.outbox()[-1].raw))


def _digest_desk(db_url: str, tmp_path: Path, n: int) -> Desk:
    desk = Desk(db_url, tmp_path, staff={**STAFF, "digest_over": 3})
    desk.directory()
    with transaction(desk.engine) as conn:
        add_specialist(conn, "olga", OWNER, "SSI", datetime(2025, 1, 1, tzinfo=UTC))
    subjects = ["Printer {{ 7*7 }} offline", "Invoices <b>late</b>", "Login fails", "Export empty", "Slow reports"]
    for i in range(n):
        desk.mail(ny(2026, 11, 25, 8, i), subject=subjects[i % len(subjects)] + f" #{i}",
                  body=f"Hello,\nproblem number {i} started today{' {% raw %}' if i == 0 else ''}.\n")
    return desk


def test_an_owner_given_many_cases_at_one_cutoff_gets_one_digest(db_url: str, tmp_path: Path) -> None:
    desk = _digest_desk(db_url, tmp_path, 5)
    desk.process(ny(2026, 11, 25, 9, 31))
    kinds = _kinds(desk)
    assert Counter(kinds) == Counter({("ack", "alice@acme.example"): 5, ("staff", OWNER): 1})
    digest = _parsed(next(r for r in desk.outbox() if r.kind == "staff").raw)
    assert digest["Subject"] == "Assigned to you: 5 new cases" and digest["To"] == OWNER
    assert digest["Auto-Submitted"] == "auto-generated"
    text = body_text(digest)
    assert [f"[Case #00000{n}]" in text for n in range(1, 6)] == [True] * 5
    assert "Printer {{ 7*7 }} offline #0" in text and "49" not in text  # a subject is text, never template code
    assert "problem number 3 started today" in text and "{% raw %}" in text
    html = digest.get_body(("html",))
    assert html is not None and "&lt;b&gt;late&lt;/b&gt;" in html.get_content()
    desk.process(ny(2026, 11, 25, 9, 45))  # again: nothing twice
    assert Counter(_kinds(desk)) == Counter(kinds)


def test_a_long_digest_is_split(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(staffnews, "DIGEST_CASES", 2)
    desk = _digest_desk(db_url, tmp_path, 5)
    desk.process(ny(2026, 11, 25, 9, 31))
    subjects = sorted(_parsed(r.raw)["Subject"] for r in desk.outbox() if r.kind == "staff")
    assert subjects == [f"Assigned to you: 5 new cases ({k} of 3)" for k in (1, 2, 3)]
    digest = body_text(_parsed(next(r.raw for r in desk.outbox() if r.kind == "staff")))
    assert "5 new cases were assigned to you at this cutoff; this mail lists 2 of them (1 of 3)" in " ".join(digest.split())


def test_an_owner_given_a_few_cases_gets_a_mail_each(db_url: str, tmp_path: Path) -> None:
    desk = _digest_desk(db_url, tmp_path, 3)  # digest_over = 3: three cases are still mailed one by one
    desk.process(ny(2026, 11, 25, 9, 31))
    subjects = sorted(_parsed(r.raw)["Subject"] for r in desk.outbox() if r.kind == "staff")
    assert len(subjects) == 3 and all(s.startswith("[Case #00000") and "Assigned to you: " in s for s in subjects)
