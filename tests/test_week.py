"""A week at the desk through the running service (issue 13).

Wednesday 25 November 2026 to Tuesday 1 December: Thanksgiving (Thursday)
and a weekend in between, 48 mails of every kind and a bounce -- representatives'
requests, a colleague without rights, strangers, a forged sender, an
out-of-office reply from a representative, a monitoring alert, an account
on hold, a coding question, an explicit severity, wrong and right PINs (one
in the subject), a follow-up, a flood, a bounce of one of our mails -- into
Dovecot, through ``mailcase run`` on a moving test clock, out to an SMTP
sink.  Asserted: per mail its disposition and the cutoff it joined; per case
its fields (requester, severity, status, out of scope, held, the promise);
per address exactly what was sent.
"""

from __future__ import annotations

import email
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from email.policy import default
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from batching import AUTH, DIRECTORY, ny
from helpers import ImapAccount, make_mail, run_cli
from running_desk import RunningDesk

from mailcase.domain.tables import BATCH, CASE, CASE_MESSAGE, CLASSIFICATION, MESSAGE, OUTBOX

PIN_ROW = "PINCO,Pin Company,good,yes,pat@pinco.example,Pat Pin,representative,4321\n"
WED_0930, WED_1530 = ny(2026, 11, 25, 9, 30), ny(2026, 11, 25, 15, 30)
FRI_0930, FRI_1530 = ny(2026, 11, 27, 9, 30), ny(2026, 11, 27, 15, 30)
MON_0930, MON_1530 = ny(2026, 11, 30, 9, 30), ny(2026, 11, 30, 15, 30)


@dataclass
class Mail:
    name: str
    at: datetime
    sender: str
    subject: str
    body: str = "Hello,\nplease have a look.\nThanks\n"
    #: "case", "case-no-ack", "case-held", "case-out-of-scope", "follow-up", "notice",
    #: "notice-withheld", "suppressed", "held"
    expect: str = "case"
    cutoff: datetime | None = None  # the cutoff it joins (None: decided at ingest)
    authenticated: bool = True
    headers: dict[str, str] = field(default_factory=dict)
    severity: int = 3


def _mails() -> list[Mail]:
    def wed(h: int, m: int = 0) -> datetime:
        return ny(2026, 11, 25, h, m)

    out = [
        Mail("c-print", wed(8, 0), "alice@acme.example", "Invoices do not print", cutoff=WED_0930),
        Mail("c-export", wed(8, 10), "bob@globex.example", "Export fails for the October claims", cutoff=WED_0930),
        Mail("n-user", wed(8, 20), "erin@acme.example", "Please reset my password", expect="notice", cutoff=WED_0930),
        Mail("n-stranger", wed(8, 30), "who@stranger.example", "Trial version?", expect="notice", cutoff=WED_0930),
        Mail("n-forged", wed(8, 40), "alice@acme.example", "Wire the refund today", expect="notice-withheld",
             cutoff=WED_0930, authenticated=False),
        Mail("s-ooo", wed(8, 50), "bob@globex.example", "Out of Office",
             body="Thank you for your email. I am out of the office until December 1st and will reply when I "
                  "return.\nFor urgent matters please contact frontdesk@globex.example.\n", expect="suppressed"),
        Mail("c-held", wed(9, 0), "dave@umbrella.example", "Cannot log in since Monday", expect="case-held",
             cutoff=WED_0930),
        Mail("c-coding", wed(9, 10), "alice@acme.example", "E/M level question",
             body="Hi, the doctor spent 40 minutes with an established patient, mostly counselling.\n"
                  "Which E/M level should we bill, 99214 or 99215?\n", expect="case-out-of-scope", cutoff=WED_0930),
        Mail("c-alert", wed(9, 20), "monitor@acme.example", "** PROBLEM Service Alert: claims01/Export Queue is CRITICAL **",
             body="Notification Type: PROBLEM\nService: Export Queue\nHost: claims01\nState: CRITICAL\n",
             expect="case-no-ack", cutoff=WED_0930),
        Mail("c-sev1", wed(11, 0), "bob@globex.example", "Claims module down",
             body="Severity: 1\nNobody at Globex can open the claims module since 10:40.\n", cutoff=WED_1530,
             severity=1),
        Mail("c-down", wed(11, 30), "alice@acme.example", "The system is down for the front desk",
             body="The system is down at the front desk, patients are waiting.\n", cutoff=WED_1530, severity=2),
        Mail("n-pin-wrong", wed(14, 0), "pat@pinco.example", "Statements are empty",
             body="Hello, the patient statements print empty. My PIN is 1234.\n", expect="notice", cutoff=WED_1530),
        Mail("c-pin-subject", wed(15, 0), "pat@pinco.example", "[PIN 4321] Statements are empty",
             body="Second try with the PIN in the subject.\n", cutoff=WED_1530),
        Mail("s-auto-de", wed(12, 0), "alice@acme.example", "Automatische Antwort: Invoices do not print",
             body="Vielen Dank für Ihre Nachricht. Ich bin bis einschließlich 30.11. nicht im Büro und habe "
                  "keinen Zugriff auf meine E-Mails.\n", expect="suppressed"),
        Mail("s-read", wed(12, 10), "bob@globex.example", "Read: Export fails for the October claims",
             body="Your message\n\n  To: support@support.example\n  Subject: Export fails for the October "
                  "claims\n  Sent: Wednesday, November 25, 2026 8:10 AM\n\nwas read on Wednesday, November 25, "
                  "2026 12:09 PM.\n", expect="suppressed"),
        Mail("c-payer", wed(12, 30), "bob@globex.example", "Denials from Aetna",
             body="Hi,\nAetna denied 30 of our claims with CO-197. Why would the payer deny these, and what "
                  "should we put in the appeal letter?\n", expect="case-out-of-scope", cutoff=WED_1530),
        Mail("c-sev-subject", wed(13, 0), "alice@acme.example", "[Sev 2] Appointments cannot be booked",
             body="Since lunch no one can book an appointment; the scheduler shows an error.\n",
             cutoff=WED_1530, severity=2),
        Mail("c-german", wed(13, 30), "bob@globex.example", "Rechnungen werden nicht gedruckt",
             body="Hallo,\nseit heute Morgen druckt das System keine Rechnungen mehr. Können Sie helfen?\n"
                  "Viele Grüße\nBob\n", cutoff=WED_1530),
        Mail("s-newsletter", wed(14, 30), "news@vendor.example", "Our December newsletter",
             body="Read about our new features.\nUnsubscribe: https://vendor.example/u\n", expect="suppressed",
             authenticated=True, headers={"List-Unsubscribe": "<https://vendor.example/u>", "Precedence": "bulk",
                                          "List-Id": "News <news.vendor.example>"}),
        Mail("c-after", wed(15, 40), "alice@acme.example", "Reports show last year's totals", cutoff=FRI_0930),
        # Thanksgiving: no cutoff; mail waits for Friday 09:30
        Mail("c-holiday", ny(2026, 11, 26, 10, 0), "bob@globex.example", "Holiday question about the eligibility batch",
             cutoff=FRI_0930),
    ]
    # a flood on the holiday: 17 identical mails in a minute from a stranger
    for i in range(17):
        out.append(Mail(f"flood{i}", ny(2026, 11, 26, 12, 0, i), "spam@flood.example", "BUY NOW",
                        body="Cheap meds!\n", expect="notice-withheld" if 0 < i < 15 else "held" if i >= 15 else "notice",
                        cutoff=FRI_0930 if i < 15 else None))
    out += [
        Mail("c-holiday-pin", ny(2026, 11, 26, 11, 0), "pat@pinco.example", "Statement run",
             body="PIN 4321\nCan the statement run start an hour earlier?\n", cutoff=FRI_0930),
        Mail("s-ooo-fr", ny(2026, 11, 27, 8, 0), "alice@acme.example", "Réponse automatique : absent(e)",
             body="Bonjour, je suis absente du bureau jusqu'au lundi 30 novembre. Pour toute urgence, "
                  "contactez l'accueil.\n", expect="suppressed"),
        Mail("c-friday", ny(2026, 11, 27, 11, 0), "bob@globex.example", "New provider cannot be added",
             cutoff=FRI_1530),
        Mail("c-friday-eve", ny(2026, 11, 27, 16, 0), "alice@acme.example", "Scanner import stops at page 3",
             cutoff=MON_0930),
        Mail("c-saturday", ny(2026, 11, 28, 11, 0), "bob@globex.example", "Weekend: fee schedule import fails",
             cutoff=MON_0930),
        Mail("c-monday", ny(2026, 11, 30, 8, 0), "pat@pinco.example", "Label printer", body="PIN: 4321\nLabels are blank.\n",
             cutoff=MON_0930),
        Mail("c-saturday-2", ny(2026, 11, 28, 12, 0), "alice@acme.example", "Need help adding a fee schedule",
             cutoff=MON_0930),
        Mail("c-monday-late", ny(2026, 11, 30, 10, 0), "bob@globex.example", "Claims batch stuck in queue",
             cutoff=MON_1530),
    ]
    return out


def _raw(m: Mail, n: int) -> bytes:
    domain = m.sender.rpartition("@")[2]
    name, value = AUTH
    headers = dict(m.headers)
    headers[name] = value.format(d=domain) if m.authenticated else (
        f"mx.support.example; spf=fail smtp.mailfrom={domain}; dkim=none; dmarc=fail header.from={domain}")
    return make_mail(n, sender=m.sender, subject=m.subject, body=m.body, date=m.at,
                     msgid=f"<week-{m.name}@{domain}>", headers=headers)


def test_a_week_at_the_desk(imap: ImapAccount, sqlite_url: str, tmp_path: Path) -> None:
    mails = _mails()
    with RunningDesk(imap, sqlite_url, tmp_path, ny(2026, 11, 25, 7, 0), DIRECTORY + PIN_ROW) as desk:
        sink, cfg, engine, at, closed = desk.sink, desk.cfg, desk.engine, desk.at, desk.closed

        def deliver(batch: list[Mail]) -> None:
            for m in batch:
                desk.append(_raw(m, desk.appended + 1), m.at)

        # Wednesday morning's mail, then its cutoff
        deliver([m for m in mails if m.at < WED_0930])
        at(ny(2026, 11, 25, 9, 25))
        at(ny(2026, 11, 25, 9, 40), WED_0930)
        # the customer answers the acknowledgement of "Invoices do not print"
        ack = _row(engine, "ack", "c-print")
        reply = Mail("f-reply", ny(2026, 11, 25, 10, 0), "alice@acme.example", "Re: [Case #000001] Invoices do not print",
                     body="It also happens with the PDF printer.\n", expect="follow-up",
                     headers={"In-Reply-To": ack.message_id, "References": f"<week-c-print@acme.example> {ack.message_id}"})
        mails.append(reply)
        ack_bob = _row(engine, "ack", "c-export")
        reply_bob = Mail("f-reply-bob", ny(2026, 11, 25, 10, 5), "bob@globex.example",
                         "AW: [Case #000002] Export fails for the October claims",
                         body="Hier noch der Screenshot-Text: Error 17.\n", expect="follow-up",
                         headers={"In-Reply-To": ack_bob.message_id})
        mails.append(reply_bob)
        # a hard bounce of the notice to the colleague, through our VERP envelope
        notice = _row(engine, "notice/not-authorized", "n-user")
        envelope = next(r.mail_from for r in sink.to("erin@acme.example"))
        assert envelope.startswith("bounces+")
        bounce = _dsn(envelope, "erin@acme.example", notice.message_id)
        deliver([reply, reply_bob] + [m for m in mails if WED_0930 <= m.at < WED_1530 and m.expect != "follow-up"])
        desk.append(bounce, ny(2026, 11, 25, 10, 30))
        at(ny(2026, 11, 25, 15, 25))
        at(ny(2026, 11, 25, 15, 45), WED_1530)
        # the evening, Thanksgiving (no cutoff), Friday morning
        deliver([m for m in mails if WED_1530 <= m.at < FRI_0930])
        at(ny(2026, 11, 26, 16, 0))
        assert not closed(ny(2026, 11, 26, 9, 30)) and not closed(ny(2026, 11, 26, 15, 30))  # Thanksgiving
        at(ny(2026, 11, 27, 9, 45), FRI_0930)
        deliver([m for m in mails if FRI_0930 <= m.at < FRI_1530])
        at(ny(2026, 11, 27, 15, 45), FRI_1530)
        # Friday evening, the weekend, Monday morning
        deliver([m for m in mails if FRI_1530 <= m.at < MON_0930])
        at(ny(2026, 11, 29, 20, 0))
        at(ny(2026, 11, 30, 9, 45), MON_0930)
        deliver([m for m in mails if m.at >= MON_0930])
        # a specialist answers case 1 on Monday afternoon: its first human response
        done = run_cli("--config", str(cfg), "case", "reply", "1", "--text", "Please update the printer driver.",
                       env=desk.cli_env)
        assert done.returncode == 0, done.stderr
        at(ny(2026, 11, 30, 14, 0))
        at(ny(2026, 11, 30, 15, 45), MON_1530)
        assert desk.stop() == 0
    assert len(mails) == 48

    with engine.connect() as conn:
        rows = {r.message_id: r for r in conn.execute(
            sa.select(MESSAGE.c.message_id, MESSAGE.c.state, BATCH.c.cutoff_at, CLASSIFICATION.c.disposition,
                      CASE.c.number, CASE_MESSAGE.c.role)
            .outerjoin(BATCH, BATCH.c.id == MESSAGE.c.batch_id)
            .outerjoin(CLASSIFICATION, CLASSIFICATION.c.message_pk == MESSAGE.c.id)
            .outerjoin(CASE_MESSAGE, CASE_MESSAGE.c.message_pk == MESSAGE.c.id)
            .outerjoin(CASE, CASE.c.id == CASE_MESSAGE.c.case_id))}
        cases = {r.number: r for r in conn.execute(sa.select(CASE))}
        outbox = conn.execute(sa.select(OUTBOX).order_by(OUTBOX.c.id)).all()

    # per mail: disposition and cutoff
    number_of: dict[str, int] = {}
    for m in mails:
        r = rows[f"<week-{m.name}@{m.sender.rpartition('@')[2]}>"]
        assert (r.cutoff_at == m.cutoff) if m.expect != "follow-up" else r.cutoff_at is None, (m.name, r)
        if m.expect.startswith("case"):
            assert r.role == "request" and r.state == "batched", (m.name, r)
            number_of[m.name] = r.number
        elif m.expect == "follow-up":
            target = {"f-reply": "c-print", "f-reply-bob": "c-export"}[m.name]
            assert (r.role, r.number) == ("follow-up", number_of[target]), (m.name, r)
        elif m.expect in ("notice", "notice-withheld"):
            assert r.disposition == "notice-only" and r.number is None and r.state == "batched", (m.name, r)
        elif m.expect == "suppressed":
            assert r.disposition == "suppressed" and r.state == "classified", (m.name, r)
        elif m.expect == "held":
            assert r.state == "held", (m.name, r)
    # per case: its fields
    expect_case = {m.name: m for m in mails if m.expect.startswith("case")}
    assert len(cases) == len(expect_case)
    for name, m in expect_case.items():
        c = cases[number_of[name]]
        assert c.requester == m.sender and c.severity == m.severity, (name, c)
        assert c.processed_at == m.cutoff, (name, c.processed_at)
        assert c.out_of_scope is (m.expect == "case-out-of-scope") and c.no_auto_reply is (m.expect == "case-no-ack")
        assert (c.status == "held") is (m.expect == "case-held"), (name, c.status)
    # the promise: processed Wednesday 15:30 -> due Friday 15:30 (Thanksgiving is no business day)
    assert (cases[number_of["c-sev1"]].ack_due_at, cases[number_of["c-sev1"]].ack_breach_at) == (FRI_1530, MON_1530)
    # processed Monday 09:30 (mail of Friday evening and Saturday) -> due Tuesday 09:30
    assert cases[number_of["c-saturday"]].ack_due_at == ny(2026, 12, 1, 9, 30)
    assert cases[number_of["c-print"]].first_response_at is not None
    # per address: exactly what was sent
    sent = Counter((r.to_addr, r.kind) for r in outbox if r.status == "sent" or (r.status_reason or "").startswith("bounced"))
    assert next(r for r in outbox if r.to_addr == "erin@acme.example").status_reason == "bounced: 5.1.1"
    acked = {m.sender for m in mails if m.expect == "case"}
    expected = Counter({(m.sender, "ack"): 0 for m in mails})
    for m in mails:
        if m.expect == "case":
            expected[(m.sender, "ack")] += 1
    expected = Counter({k: v for k, v in expected.items() if v})
    expected.update({("erin@acme.example", "notice/not-authorized"): 1, ("who@stranger.example", "notice/unknown-sender"): 1,
                     ("dave@umbrella.example", "notice/hold"): 1, ("alice@acme.example", "notice/out-of-scope"): 1,
                     ("bob@globex.example", "notice/out-of-scope"): 1,
                     ("pat@pinco.example", "notice/pin"): 1, ("spam@flood.example", "notice/unknown-sender"): 1,
                     ("alice@acme.example", "reply"): 1})
    assert sent == expected, (sent - expected, expected - sent)
    assert acked <= {a for a, _ in sent}
    # every acknowledgement carries its case's token and answers the case's first mail
    for r in outbox:
        if r.kind != "ack":
            continue
        msg = email.message_from_bytes(r.raw, policy=default)
        number = next(n for n, c in cases.items() if c.id == r.case_id)
        first = next(m for m in mails if number_of.get(m.name) == number)
        assert msg["Subject"].startswith(f"[Case #{number:06d}]")
        assert msg["In-Reply-To"] == f"<week-{first.name}@{first.sender.rpartition('@')[2]}>"
        assert "4321" not in r.raw.decode("utf-8", "replace")
    # nothing sent twice; the out-of-office reply, the alert, the forged mail and the flood's excess got nothing
    assert all(n == 1 for n in Counter(str(x.message["Message-ID"]) for x in sink.received).values())
    # every notice not sent shows in message show: the forged mail's withheld one, the colleague's bounced one
    with engine.connect() as conn:
        pk = {name: conn.execute(sa.select(MESSAGE.c.id).where(MESSAGE.c.message_id.like(f"<week-{name}@%"))).scalar_one()
              for name in ("n-forged", "n-user")}
    forged = run_cli("--config", str(cfg), "message", "show", str(pk["n-forged"])).stdout
    assert "withheld (" in forged and "outgoing #" not in forged, forged
    colleague = run_cli("--config", str(cfg), "message", "show", str(pk["n-user"])).stdout
    assert "notice/not-authorized to erin@acme.example: failed (bounced: 5.1.1)" in colleague, colleague
    # the bounce suppressed the colleague's address
    assert run_cli("--config", str(cfg), "suppress", "list").stdout.count("erin@acme.example") == 1


def _row(engine: Any, kind: str, mail: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.select(OUTBOX).join(MESSAGE, MESSAGE.c.id == OUTBOX.c.message_pk)
                            .where(OUTBOX.c.kind == kind, MESSAGE.c.message_id.like(f"<week-{mail}@%"))).one()


def _dsn(to: str, recipient: str, original: str) -> bytes:
    return (f"Return-Path: <>\r\nFrom: Mail Delivery System <MAILER-DAEMON@mx.acme.example>\r\nTo: {to}\r\n"
            "Subject: Undelivered Mail Returned to Sender\r\nDate: Wed, 25 Nov 2026 10:30:00 -0500\r\n"
            "Message-ID: <week-dsn@mx.acme.example>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n--B\r\n"
            "Content-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n--B\r\n"
            "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.acme.example\r\n\r\n"
            f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--B\r\n"
            f"Content-Type: text/rfc822-headers\r\n\r\nMessage-ID: {original}\r\n\r\n--B--\r\n").encode()
