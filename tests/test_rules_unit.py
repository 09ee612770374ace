"""Unit tests for rule behaviour the corpus does not pin down on its own.

Authentication (topmost header of ours only, alignment, unreadable headers),
RFC 3834 keyword parsing, X-Auto-Response-Suppress values, case tokens and
the reopen window's edge, bounce recognition edges, negated severity
keywords and the repeat-similarity measure.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rules_fake import FakeContext, load_directory, mail_from_bytes, our_message_id, settings

from mailcase.mail.subjects import case_number as case_token
from mailcase.rules.abuse import MIN_WORDS, similarity
from mailcase.rules.authentication import authserv_id, evaluate
from mailcase.rules.automatic import automatic_mail, is_out_of_office
from mailcase.rules.base import CaseRef, Disposition, Mail, Mark, Notice, Outcome, Verdict
from mailcase.rules.bounce import bounce
from mailcase.rules.chain import run_chain
from mailcase.rules.effects import RecordBounce
from mailcase.rules.scope import scope
from mailcase.rules.severity import find_keyword
from mailcase.rules.threading import threading

CORPUS = Path(__file__).parent / "rules_corpus"
DIRECTORY, CASES, MSGIDS, RESOLVED = load_directory(CORPUS / "directory.toml")
NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
ALICE = "Alice Admin <alice.admin@acme.example>"
OURS_PASS = ("mx.support.example; spf=pass smtp.mailfrom=alice.admin@acme.example; "
             "dkim=pass header.d=acme.example; dmarc=pass header.from=acme.example")
OURS_FAIL = ("mx.support.example; spf=fail smtp.mailfrom=alice.admin@acme.example; "
             "dkim=none; dmarc=fail header.from=acme.example")


def mail(*headers: tuple[str, str], body: str = "Hello,\nplease help.\n",
         received_at: datetime | None = None) -> Mail:
    names = {n.lower() for n, _ in headers}
    defaults = [("From", ALICE), ("To", "support@support.example"), ("Subject", "A question"),
                ("Date", "Mon, 23 Nov 2026 09:00:00 -0500"), ("Message-ID", "<unit@acme.example>")]
    lines = list(headers) + [(n, v) for n, v in defaults if n.lower() not in names]
    raw = "".join(f"{n}: {v}\n" for n, v in lines) + "\n" + body
    return mail_from_bytes(raw.encode("utf-8"), received_at)


def ctx(authserv: str | None = "mx.support.example", **overrides: object) -> FakeContext:
    return FakeContext(now=NOW, settings=settings(authserv, **overrides), directory=DIRECTORY,
                       cases=dict(CASES), case_message_ids=dict(MSGIDS), resolved=RESOLVED)


# -- sender authentication (RFC 8601, RFC 7489) ---------------------------------------------


@pytest.mark.parametrize("value, expected", [
    ("mx.support.example; dmarc=pass", "mx.support.example"),
    ("mx.support.example 1; dmarc=pass", "mx.support.example"),
    ("MX.Support.Example.; dmarc=pass", "mx.support.example"),
    ("(added by our MX) mx.support.example; spf=pass", "mx.support.example"),
    ("mx.support.example (v1 (nested)) 1; none", "mx.support.example"),
    ("mx.evil.example; dmarc=pass header.from=support.example", "mx.evil.example"),
    ("", ""),
])
def test_authserv_id_is_read_without_the_full_parser(value: str, expected: str) -> None:
    assert authserv_id(value) == expected


def test_only_the_topmost_header_of_ours_counts() -> None:
    forged_below = mail(("Authentication-Results", OURS_FAIL), ("Authentication-Results", OURS_PASS))
    assert not evaluate(forged_below, ctx()).dmarc_pass
    ours_on_top = mail(("Authentication-Results", OURS_PASS), ("Authentication-Results", OURS_FAIL))
    assert evaluate(ours_on_top, ctx()).dmarc_pass


def test_another_authserv_id_above_ours_is_skipped() -> None:
    m = mail(("Authentication-Results", "mx.evil.example; dmarc=fail header.from=acme.example"),
             ("Authentication-Results", OURS_PASS))
    assert evaluate(m, ctx()).dmarc_pass


def test_unreadable_header_of_ours_ends_the_search() -> None:
    unreadable = "mx.support.example; dmarc=fail header.from=acme.example; x-filter=[scanned ok]"
    m = mail(("Authentication-Results", unreadable), ("Authentication-Results", OURS_PASS))
    auth = evaluate(m, ctx())
    assert auth.found and not auth.dmarc_pass and not auth.spf_aligned_pass
    assert "cannot be read" in auth.detail


@pytest.mark.parametrize("results, dmarc, spf, dkim", [
    ("dmarc=pass header.from=acme.example", True, False, False),
    ("dmarc=pass", True, False, False),                                   # names no domain: the From's
    ("dmarc=pass header.from=evil.example", False, False, False),         # about another From
    ("dmarc=none header.from=acme.example", False, False, False),         # no policy is no pass
    ("dmarc=bestguesspass header.from=acme.example", False, False, False),
    ("spf=pass smtp.mailfrom=bounce.acme.example", False, True, False),   # relaxed: subdomain
    ("spf=pass smtp.mailfrom=bounces@sendservice.example", False, False, False),
    ("dkim=pass header.d=mail.acme.example", False, False, True),
    ("dkim=pass header.i=@acme.example", False, False, True),
    ("dkim=pass header.d=acme.example.evil.example", False, False, False),
    ("dkim=pass header.d=notacme.example", False, False, False),
    ("dkim=fail header.d=acme.example", False, False, False),
])
def test_alignment_with_the_from_domain(results: str, dmarc: bool, spf: bool, dkim: bool) -> None:
    auth = evaluate(mail(("Authentication-Results", f"mx.support.example; {results}")), ctx())
    assert (auth.dmarc_pass, auth.spf_aligned_pass, auth.dkim_aligned_pass) == (dmarc, spf, dkim)


def test_insecure_off_checks_nothing_but_spam() -> None:
    assert evaluate(mail(), ctx(None)).may_receive_notice
    spam = mail(("X-Spam-Flag", "YES"))
    assert not evaluate(spam, ctx(None, spam_header="X-Spam-Flag")).may_receive_notice


def test_spam_values_are_prefixes_case_insensitively() -> None:
    c = ctx(spam_header="X-Spam-Status", spam_values=("yes",))
    assert evaluate(mail(("X-Spam-Status", "Yes, score=9.1")), c).spam
    assert not evaluate(mail(("X-Spam-Status", "No, score=0.1")), c).spam


def test_notice_verdict_carries_the_authentication_for_the_template() -> None:
    # a user's mail stops at sender-identity; the notice template may name the
    # administrators only to an authenticated sender, so the outcome must say
    user = mail(("From", "Erin <erin@acme.example>"),
                ("Authentication-Results", OURS_PASS.replace("alice.admin", "erin")))
    outcome = run_chain(user, ctx())
    assert outcome.notice is Notice.NOT_AUTHORIZED
    assert outcome.auth is not None and outcome.auth.dmarc_pass


# -- automatic mail (RFC 3834, [MS-OXCMAIL]) -----------------------------------------------


@pytest.mark.parametrize("value, automatic", [
    ("no", False), ("No", False), ("no (sent by a person)", False), ("(person) no", False),
    ("no; x=1", False), ("", False),
    ("auto-generated", True), ("auto-replied; owner-email=x@y", True), ("auto-notified", True),
    ("yes", True),  # not a keyword of RFC 3834, but not "no" either
])
def test_auto_submitted_keyword(value: str, automatic: bool) -> None:
    verdict = automatic_mail(mail(("Auto-Submitted", value)), ctx(), Outcome())
    assert (verdict is not None and Mark.AUTOMATIC in verdict.marks) is automatic


@pytest.mark.parametrize("value, no_reply", [
    ("All", True), ("AutoReply", True), ("DR, autoreply", True), ("OOF, AutoReply", True),
    ("DR, RN, NRN, OOF", False), ("NDR", False), ("", False),
])
def test_x_auto_response_suppress_values(value: str, no_reply: bool) -> None:
    verdict = automatic_mail(mail(("X-Auto-Response-Suppress", value)), ctx(), Outcome())
    assert (verdict is not None and Mark.NO_AUTO_REPLY in verdict.marks) is no_reply
    assert verdict is None or Mark.AUTOMATIC not in verdict.marks


def test_auto_submitted_no_does_not_shield_an_auto_reply() -> None:
    subject = ("Subject", "Out of Office: Re: [Case #000123] We received your request")
    reply = ("In-Reply-To", our_message_id(123))
    body = "Thank you for your message. I will be back on Monday.\n"
    assert is_out_of_office(mail(subject, reply, body=body))
    assert is_out_of_office(mail(subject, reply, ("Auto-Submitted", "no"), body=body))
    # an auto-reply's subject in reply to our mail is an auto-reply, whatever short text it carries
    assert is_out_of_office(mail(subject, reply, body="Away.\n"))
    # ... but not when the text asks for help: a person who kept a bad subject
    assert is_out_of_office(mail(subject, reply, body="Hello,\nplease help, the export fails.\n")) is None


def test_out_of_office_subject_alone_is_a_persons_mail() -> None:
    assert is_out_of_office(mail(("Subject", "Out of office supplies"))) is None
    assert is_out_of_office(mail(("Subject", "Automatic reply: x"), ("Auto-Submitted", "auto-generated")))


def test_exchange_generated_mail_is_automatic_not_out_of_office() -> None:
    m = mail(("X-MS-Exchange-Generated-Message-Source", "Mailbox Rules Agent"), ("Subject", "FW: x"))
    verdict = automatic_mail(m, ctx(), Outcome())
    assert verdict is not None and verdict.name == "automatic" and verdict.disposition is None


def test_own_mail_needs_a_valid_mac() -> None:
    ours = our_message_id(123)
    assert automatic_mail(mail(("Message-ID", ours)), ctx(), Outcome()) is not None
    forged = ours[:-20] + ("0" if ours[-20] != "0" else "1") + ours[-19:]
    assert automatic_mail(mail(("Message-ID", forged)), ctx(), Outcome()) is None


def test_suppressed_automatic_mail_records_why_no_notice() -> None:
    m = mail(("From", "robot@stranger.example"), ("Auto-Submitted", "auto-generated"))
    outcome = run_chain(m, ctx())
    assert outcome.final is Disposition.SUPPRESSED
    assert outcome.notice is Notice.UNKNOWN_SENDER and not outcome.notice_allowed
    assert "not an authorized representative" in (outcome.notice_withheld_reason or "")


# -- threading ---------------------------------------------------------------------------


@pytest.mark.parametrize("subject, number", [
    ("[Case #000123] x", 123), ("Re: AW: [case#123]", 123), ("[ Case # 42 ]", 42),
    ("Case #123", None), ("[Case #]", None), ("[Case #1234567890]", None), ("[Case #000123", None),
])
def test_case_token(subject: str, number: int | None) -> None:
    assert case_token(subject) == number


def test_token_needs_authentication_unless_it_is_off() -> None:
    subject = ("Subject", "[Case #000123] more details")
    authenticated = threading(mail(subject, ("Authentication-Results", OURS_PASS)), ctx(), Outcome())
    assert authenticated is not None and authenticated.name == "follow-up"
    forged = threading(mail(subject, ("Authentication-Results", OURS_FAIL)), ctx(), Outcome())
    assert forged is not None and forged.name == "case-token-ignored" and forged.case is None
    insecure = threading(mail(subject), ctx(None), Outcome())
    assert insecure is not None and insecure.name == "follow-up"


def test_message_id_needs_no_authentication_and_wins_over_the_token() -> None:
    m = mail(("Subject", "Re: [Case #000123] x"), ("In-Reply-To", "<globex-200@globex.example>"),
             ("From", "someone@stranger.example"))
    verdict = threading(m, ctx(), Outcome())
    assert verdict is not None and verdict.case is not None and verdict.case.number == 200


def test_a_notice_of_ours_names_no_case() -> None:
    m = mail(("In-Reply-To", our_message_id(None, "notice")), ("Authentication-Results", OURS_PASS))
    assert threading(m, ctx(), Outcome()) is None


@pytest.mark.parametrize("age, name", [
    (timedelta(days=14), "reopen"),
    (timedelta(days=14, seconds=1), "reply-to-old-case"),
    (timedelta(0), "reopen"),
])
def test_reopen_window_edge(age: timedelta, name: str) -> None:
    closed_at = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    c = ctx()
    c.cases[200] = replace(c.cases[200], closed_at=closed_at)
    m = mail(("In-Reply-To", "<globex-200@globex.example>"), received_at=closed_at + age)
    verdict = threading(m, c, Outcome())
    assert verdict is not None and verdict.name == name


def test_closed_case_without_a_date_reopens() -> None:
    c = ctx()
    c.cases[200] = CaseRef(1200, 200, 2, "bob@globex.example", "closed")
    verdict = threading(mail(("In-Reply-To", "<globex-200@globex.example>")), c, Outcome())
    assert verdict is not None and verdict.name == "reopen"


# -- bounces -----------------------------------------------------------------------------


DSN_8BIT = (
    b"From: MAILER-DAEMON@mx.example\nSubject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\n"
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\n\n"
    b"--x\nContent-Type: text/plain\n\nfailed\n"
    b"--x\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx\n\n"
    b"Final-Recipient: rfc822; j\xc3\xbcrgen@m\xc3\xbcller.example\nAction: failed\nStatus: 5.1.1\n\n"
    b"--x\nContent-Type: text/rfc822-headers\n\nMessage-ID: <\xc3\xa4@x>\n\n--x--\n"
)


def test_dsn_fields_in_utf8_are_read() -> None:
    # compat32 returns 8-bit header bytes as Header objects: this used to raise
    verdict = bounce(mail_from_bytes(DSN_8BIT), ctx(), Outcome())
    assert verdict is not None and verdict.disposition is Disposition.SUPPRESSED
    effect = verdict.effects[0]
    assert isinstance(effect, RecordBounce)
    assert effect.recipient == "jürgen@müller.example"
    assert effect.original_message_id == "<ä@x>"


@pytest.mark.parametrize("sender, return_path, subject, is_bounce", [
    ("MAILER-DAEMON@relay.example", "<>", "Undelivered Mail Returned to Sender", True),
    ("postmaster@relay.example", "<x@relay.example>", "Delivery Status Notification (Failure)", True),
    ("MAILER-DAEMON@relay.example", "<x@relay.example>", "Hello", False),
    ("alice.admin@acme.example", "<>", "Undelivered Mail Returned to Sender", False),
    ("alice.admin@acme.example", "<alice.admin@acme.example>", "Fwd: Undelivered Mail", False),
])
def test_unparsed_bounce_needs_a_mail_system_sender(sender: str, return_path: str, subject: str,
                                                    is_bounce: bool) -> None:
    m = mail(("From", sender), ("Return-Path", return_path), ("Subject", subject),
             body="The message could not be delivered.\n")
    verdict = bounce(m, ctx(), Outcome())
    assert (verdict is not None) is is_bounce


def _report(sender: str, subject: str, report_type: str, parts: str, return_path: str = "<>") -> bytes:
    return (f"Return-Path: {return_path}\nFrom: {sender}\nTo: support@support.example\nSubject: {subject}\n"
            f"Message-ID: <r{abs(hash((sender, subject)))}@mx.example>\nMIME-Version: 1.0\n"
            f"Content-Type: multipart/report; report-type={report_type}; boundary=x\n\n"
            f"--x\nContent-Type: text/plain\n\nA report.\n{parts}--x--\n").encode()


_DELAYED = ("--x\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example\n\n"
            "Final-Recipient: rfc822; ana@clinic.example\nAction: delayed\nStatus: 4.4.7\n\n")


@pytest.mark.parametrize("sender, subject, report_type, parts, name", [
    # a delay report is a report of its own kind: never a failure to count
    ("MAILER-DAEMON@mx.example", "Delivery Status Notification (Delay)", "delivery-status", _DELAYED, "delay-report"),
    # a DSN whose subject carries a reply prefix is still a DSN
    ("postmaster@mx.example", "Re: Your message to ana@clinic.example", "delivery-status",
     _DELAYED.replace("delayed", "failed").replace("4.4.7", "5.1.1"), "bounce"),
    # Exchange Online's robot sender
    ("Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@clinic.onmicrosoft.com>",
     "Undeliverable: Invoice question", "delivery-status",
     _DELAYED.replace("delayed", "failed").replace("4.4.7", "5.1.10"), "bounce"),
    # a multipart/report without its delivery-status part
    ("MAILER-DAEMON@mx.example", "Mail delivery failed", "delivery-status", "", "bounce"),
    # a report type we have no reader for is still no request
    ("reports@mx.example", "Report", "tlsrpt", "", "bounce"),
])
def test_reports_of_every_kind_are_no_requests(sender: str, subject: str, report_type: str, parts: str,
                                               name: str) -> None:
    verdict = bounce(mail_from_bytes(_report(sender, subject, report_type, parts)), ctx(), Outcome())
    assert verdict is not None and verdict.disposition is Disposition.SUPPRESSED and verdict.name == name


@pytest.mark.parametrize("sender, subject", [
    ("Mail Delivery Subsystem <mailer-daemon@googlemail.com>", "Delivery Status Notification (Delay)"),
    ("MAILER-DAEMON@relay.example", "Warning: message 1vXyZ-0003 delayed 24 hours"),
    ("Mail Delivery System <postmaster@relay.example>", "RE: Undeliverable: Claims export"),
])
def test_robot_notices_without_a_format_are_bounces(sender: str, subject: str) -> None:
    m = mail(("From", sender), ("Return-Path", "<>"), ("Subject", subject),
             body="This is an automatically generated Delivery Status Notification.\n")
    verdict = bounce(m, ctx(), Outcome())
    assert verdict is not None and verdict.disposition is Disposition.SUPPRESSED


def test_original_recipient_is_recorded() -> None:
    parts = ("--x\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example\n\n"
             "Original-Recipient: rfc822;ana@clinic.example\nFinal-Recipient: rfc822; a.smith@mail.clinic.example\n"
             "Action: failed\nStatus: 5.1.1\n\n")
    verdict = bounce(mail_from_bytes(_report("MAILER-DAEMON@mx.example", "failure", "delivery-status", parts)),
                     ctx(), Outcome())
    assert verdict is not None
    effect = verdict.effects[0]
    assert isinstance(effect, RecordBounce)
    assert (effect.recipient, effect.original_recipient) == ("a.smith@mail.clinic.example", "ana@clinic.example")


@pytest.mark.parametrize("prefix", ["Fwd: ", "FW: ", "WG: ", "AW: ", "Re: ", "TR: ", "RV: "])
def test_a_persons_reply_or_forward_of_a_bounce_is_no_bounce(prefix: str) -> None:
    body = ("-------- Forwarded Message --------\n\nHi. This is the qmail-send program at x.example.\n"
            "I'm afraid I wasn't able to deliver your message.\n\n<lost@gone.example>:\nno mailbox\n")
    m = mail(("Subject", prefix + "failure notice"), body=body)
    assert bounce(m, ctx(), Outcome()) is None
    robot = mail(("From", "MAILER-DAEMON@x.example"), ("Subject", "failure notice"), body=body[36:])
    assert bounce(robot, ctx(), Outcome()) is not None


# -- severity, scope, abuse ----------------------------------------------------------------


PHRASES = ("urgent", "system is down", "no one can log in", "outage", "cannot print")


@pytest.mark.parametrize("text, found", [
    ("This is urgent.", "urgent"),
    ("This is not urgent, but annoying.", None),
    ("It is not really that urgent", None),
    ("non-urgent", None),
    ("It isn't urgent", None),
    ("No one can log in", "No one can log in"),
    ("There was no outage. Now the system is down.", "system is down"),
    ("Not sure why the system is down", "system is down"),
    ("no outage yet\nbut we cannot print", "cannot print"),
])
def test_negated_keywords_do_not_count(text: str, found: str | None) -> None:
    assert find_keyword(text, PHRASES) == found


@pytest.mark.parametrize("subject, body, level", [
    ("[S1] Claims down", "Hello", 1),
    ("[Sev 2] Scheduler error", "Hello", 2),
    ("Scheduler error", "Severity: 4\nno hurry", 4),
    ("Scheduler error", "Priority: High\nthe scheduler shows an error", 2),
    ("Scheduler error", "priority = critical", 1),
    ("Scheduler error", "Severity level: low", 4),
    # keywords give high at most; by default nothing is critical without a marker
    ("The system is down", "Nobody can log in, the system is down.", 2),
    ("A question", "How do I print labels?", 3),
    # a severity word inside a sentence is no marker
    ("Scheduler error", "Our priority is high accuracy, the scheduler shows an error", 3),
])
def test_severity_markers_and_keywords(subject: str, body: str, level: int) -> None:
    outcome = run_chain(mail(("Subject", subject), ("Authentication-Results", OURS_PASS), body=body), ctx())
    assert outcome.severity == level, outcome.verdicts


def test_stored_results_answer_and_a_keyword_found_under_other_phrases_is_looked_for_again() -> None:
    m = mail(("Subject", "Scheduler error"), ("Authentication-Results", OURS_PASS),
             body="Nobody can log in, the system is down.")
    first = run_chain(m, ctx())
    assert first.severity == 2 and {"auto-reply", "machine", "scope", "severity", "severity-keyword"} <= set(m.facts)
    # what content.py stores is what the rules read: a stored answer decides, not the text
    stored = dict(m.facts, scope=["billing", "Whom do we bill?", []])
    again = run_chain(replace(m, facts=stored), ctx())
    assert again.out_of_scope and again.severity == 2
    # the keywords were found under the default phrases: other phrases are searched afresh
    other = run_chain(replace(m, facts=dict(m.facts)), ctx(severity={"critical": ["system is down"]}))
    assert other.severity == 1, other.verdicts
    assert run_chain(replace(m, facts=dict(m.facts)), ctx(severity={})).severity == 3


def test_scope_keeps_the_hold_notice() -> None:
    m = mail(("Subject", "How should we bill this?"))
    held = Outcome().fold(Verdict("standing", "account-on-hold", "on hold", notice=Notice.HOLD, hold=True))
    verdict = scope(m, ctx(), held)
    assert verdict is not None and verdict.out_of_scope and verdict.notice is None
    assert held.fold(verdict).notice is Notice.HOLD
    alone = scope(m, ctx(), Outcome())
    assert alone is not None and alone.notice is Notice.OUT_OF_SCOPE


def test_similarity_measure() -> None:
    a = "Invoices do not print from the billing screen when we press Print"
    assert similarity(a, a) == pytest.approx(1.0)
    assert similarity(a, a + " Best regards, Alice Admin") == similarity(a + " Best regards, Alice Admin", a)
    # too few content words to call anything a repeat
    short = " ".join(["print", "invoices", "billing", "screen", "press"][: MIN_WORDS - 1])
    assert similarity(short, short) == 0.0
    # greetings and sign-offs are not what a request is about
    assert similarity(a, "Hello, best regards, thanks " + a) == pytest.approx(1.0)


def test_identity_of_an_unparseable_from_is_nobody() -> None:
    outcome = run_chain(mail(("From", "bob@globex.example)<mallory@evil.example>")), ctx())
    assert outcome.sender is not None and outcome.sender.kind == "unparseable"
    assert outcome.sender.address is None
