"""One bad item stays one bad item (issue 12): a poison item among good ones, at every stage.

Parse, classify, the cutoff and delivery each get a mail (or an outbox row)
that fails -- from real hostile input where one exists (addresses no mail
could carry before, a recipient the server refuses, an internationalised
address to a server without SMTPUTF8), by an injected fault where only a
bug or the database could cause it -- and the good ones around it complete.
The failed item is quarantined (or its outbox row failed) with the stage
and the reason, and a retry takes it up again.
"""

from __future__ import annotations

import email
import email.utils
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from batching import AUTH, Desk, ny
from servers.smtp import SmtpSink

import mailcase.cutoff.compose as compose_module
import mailcase.cutoff.judge as judge_module
import mailcase.cutoff.make as make_module
import mailcase.ingest.stages as stages_module
import mailcase.outbound.render as render_module
import mailcase.rules.chain as chain_module
import mailcase.rules.classify as classify_module
import mailcase.rules.record as record_module
from mailcase.config.loader import parse_config
from mailcase.core.states import MessageState, ReceivedSource
from mailcase.domain.db import transaction
from mailcase.domain.tables import CASE, MESSAGE, OUTBOX, QUARANTINE
from mailcase.ingest.ledger import Incoming, store
from mailcase.ingest.quarantine import retry
from mailcase.ingest.stages import BackgroundParser
from mailcase.outbound.deliver import deliver_due
from mailcase.outbound.transport import transport_for

#: From values that made the cutoff's compose() raise for everyone (issue 12)
HOSTILE_FROM = [
    '"john doe"@evil.example',
    '"a,b"@evil.example',
    '"x<y"@evil.example',
    '"a(b"@evil.example',
    '"a:b"@evil.example',
    '"Doe, John" <"j d"@evil.example>',
    "=?utf-8?q?J=C3=B6hn_D=C5=93?= <jöhn@exämple.example>",
]


def raw_mail(from_value: str, subject: str, at: Any, n: int, body: str = "Please help.\n",
             auth_domain: str | None = None) -> bytes:
    """A mail written byte by byte: the From value exactly as a hostile sender writes it."""
    # our server writes an internationalised domain as A-labels
    domain = (auth_domain or from_value.rpartition("@")[2].rstrip(">")).encode("idna").decode()
    name, value = AUTH
    lines = [
        f"From: {from_value}", "To: support@support.example", f"Subject: {subject}",
        f"Date: {email.utils.format_datetime(at)}", f"Message-ID: <poison{n}@{domain}>",
        f"{name}: {value.format(d=domain)}", "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit", "", body,
    ]
    return "\r\n".join(lines).encode("utf-8")


def store_raw(desk: Desk, raw: bytes, at: Any) -> None:
    desk.n += 1
    with transaction(desk.engine) as conn:
        store(conn, [Incoming("eml:/test", f"raw{desk.n}", raw, at, ReceivedSource.DATE_HEADER, False)], at)


def smtp_config(desk: Desk, sink: SmtpSink) -> Any:
    data = desk.config.model_dump(exclude_none=True)
    data.pop("source", None)
    data["outgoing"] = {**data["outgoing"], "transport": "smtp", "smtp_host": "127.0.0.1", "smtp_port": sink.port,
                        "smtp_security": "plain"}
    return parse_config(data, "test")


def quarantined(desk: Desk) -> list[Any]:
    return desk.rows(sa.select(QUARANTINE.c.message_pk, QUARANTINE.c.stage, QUARANTINE.c.error, MESSAGE.c.subject)
                     .join(MESSAGE, MESSAGE.c.id == QUARANTINE.c.message_pk)
                     .where(QUARANTINE.c.resolved_at.is_(None)))


# -- the cutoff -------------------------------------------------------------------------------


@pytest.mark.parametrize("smtputf8", [True, False])
def test_senders_no_mail_could_carry_before_get_their_notices(db_url: str, tmp_path: Path, smtputf8: bool) -> None:
    """The addresses that stopped every cutoff are written by RFC 5322/6532 now;
    only a server without SMTPUTF8 fails the one mail that needs it."""
    desk = Desk(db_url, tmp_path)
    desk.directory()
    good = desk.mail(ny(2026, 11, 23, 8, 0), subject="Invoices do not print")
    for i, value in enumerate(HOSTILE_FROM):
        store_raw(desk, raw_mail(value, f"Question {i}", ny(2026, 11, 23, 8, 10 + i), i), ny(2026, 11, 23, 8, 10 + i))
    run = desk.process(ny(2026, 11, 23, 9, 31))
    assert len(run.results) == 1 and run.results[0].quarantined == 0
    assert desk.case_of(good) == 1
    rows = desk.outbox()
    notices = [r for r in rows if r.kind == "notice/unknown-sender"]
    assert len(notices) == len(HOSTILE_FROM)
    # the To field names exactly the address the sender wrote, quotes and all
    wanted = {'"john doe"@evil.example', '"a,b"@evil.example', '"x<y"@evil.example', '"a(b"@evil.example',
              '"a:b"@evil.example', '"j d"@evil.example', "jöhn@xn--exmple-cua.example"}
    written = {email.message_from_string(r.raw.decode("utf-8"), policy=default_policy)["To"].addresses[0].addr_spec
               for r in notices}  # RFC 6532: UTF-8 in the header of the one that needs it
    assert written == wanted
    sink = SmtpSink(smtputf8=smtputf8).start()
    try:
        cfg = smtp_config(desk, sink)
        result = deliver_due(desk.engine, transport_for(cfg), ny(2026, 11, 23, 9, 32), cfg)
    finally:
        sink.stop()
    sent_to = {r.rcpt_tos[0] for r in sink.received}
    assert "alice@acme.example" in sent_to
    assert {a for a in wanted if a.isascii()} <= sent_to
    if smtputf8:
        assert result.failed == 0 and "jöhn@xn--exmple-cua.example" in sent_to
    else:
        # that one mail fails, with the reason; the session goes on for the rest
        assert result.failed == 1 and result.sent == len(rows) - 1
        failed = desk.rows(sa.select(OUTBOX.c.to_addr, OUTBOX.c.last_error).where(OUTBOX.c.status == "failed"))
        assert [f.to_addr for f in failed] == ["jöhn@exämple.example"] and "SMTPUTF8" in failed[0].last_error


def test_a_unit_that_cannot_be_rendered_is_quarantined_and_the_rest_made(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    desk = Desk(db_url, tmp_path)
    desk.directory()
    alice = desk.mail(ny(2026, 11, 23, 8, 0), subject="Invoices do not print")
    bob = desk.mail(ny(2026, 11, 23, 8, 5), sender="bob@globex.example", subject="Export fails")
    real = render_module.render  # what compose_module calls

    def render(folder: Any, kind: str, variables: dict[str, Any]) -> Any:  # the injected fault
        if variables.get("requester") == "bob@globex.example":
            raise RuntimeError("template blew up on this mail")
        return real(folder, kind, variables)

    monkeypatch.setattr(compose_module, "render", render)
    run = desk.process(ny(2026, 11, 23, 9, 31))
    assert len(run.results) == 1 and run.results[0].quarantined == 1
    assert desk.case_of(alice) == 1 and desk.case_of(bob) is None
    [q] = quarantined(desk)
    assert q.stage == "batch" and "bob@globex.example" in q.error and "template blew up" in q.error
    assert [r.to_addr for r in desk.outbox()] == ["alice@acme.example"]
    # fixed (the fault gone), a retry puts the mail in the next cutoff, once
    monkeypatch.setattr(compose_module, "render", real)
    qid = desk.scalar(sa.select(QUARANTINE.c.id).where(QUARANTINE.c.resolved_at.is_(None)))
    with transaction(desk.engine) as conn:
        assert retry(conn, qid, ny(2026, 11, 23, 10, 0)) is MessageState.PENDING
    desk.process(ny(2026, 11, 23, 15, 31))
    assert desk.case_of(bob) == 2
    assert sorted(r.to_addr for r in desk.outbox()) == ["alice@acme.example", "bob@globex.example"]
    desk.process(ny(2026, 11, 24, 9, 31))
    assert desk.scalar(sa.select(sa.func.count()).select_from(CASE)) == 2


def test_a_row_the_database_refuses_quarantines_only_its_unit(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    desk = Desk(db_url, tmp_path)
    desk.directory()
    ids = [desk.mail(ny(2026, 11, 23, 8, i), sender=s, subject=f"Problem {i}")
           for i, s in enumerate(["alice@acme.example", "bob@globex.example", "monitor@acme.example"])]
    real = make_module.insert_cases

    def insert_cases(conn: Any, cases: Any, *args: Any) -> Any:  # the injected fault: a row refused
        if any(case.planned.requester == "bob@globex.example" for case in cases):
            raise sa.exc.IntegrityError("INSERT INTO support_case", {}, Exception("refused"))
        return real(conn, cases, *args)

    monkeypatch.setattr(make_module, "insert_cases", insert_cases)
    run = desk.process(ny(2026, 11, 23, 9, 31))
    assert run.results[0].quarantined == 1
    assert desk.case_of(ids[0]) is not None and desk.case_of(ids[2]) is not None and desk.case_of(ids[1]) is None
    assert [q.stage for q in quarantined(desk)] == ["batch"]
    assert "bob@globex.example" not in {r.to_addr for r in desk.outbox()}


def test_a_rule_that_raises_at_the_cutoff_quarantines_that_mail(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    desk = Desk(db_url, tmp_path)
    desk.directory()
    good = desk.mail(ny(2026, 11, 23, 8, 0), subject="Invoices do not print")
    bad = desk.mail(ny(2026, 11, 23, 8, 1), sender="bob@globex.example", subject="POISON")
    desk.process(ny(2026, 11, 23, 9, 0))  # classified at ingest, before the fault
    real = chain_module.run_chain  # what judge_module calls

    def run_chain(mail: Any, ctx: Any, **kw: Any) -> Any:
        if mail.subject == "POISON":
            raise ZeroDivisionError("a rule's bug")
        return real(mail, ctx, **kw)

    monkeypatch.setattr(judge_module, "run_chain", run_chain)
    run = desk.process(ny(2026, 11, 23, 9, 31))
    assert run.results[0].quarantined == 1 and desk.case_of(good) == 1 and desk.case_of(bad) is None
    [q] = quarantined(desk)
    assert q.stage == "batch" and "ZeroDivisionError" not in q.error and "a rule's bug" in q.error


# -- classify ------------------------------------------------------------------------------


def test_classify_poison_and_a_refused_write(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    desk = Desk(db_url, tmp_path)
    desk.directory()
    for i in range(5):
        desk.mail(ny(2026, 11, 23, 8, i), subject="POISON" if i == 1 else f"Request {i}")
    desk.mail(ny(2026, 11, 23, 8, 6), subject="REFUSED")
    real_chain = chain_module.run_chain  # what classify_module calls

    def run_chain(mail: Any, ctx: Any, **kw: Any) -> Any:
        if mail.subject == "POISON":
            raise KeyError("a rule's bug")
        return real_chain(mail, ctx, **kw)

    real_flush = record_module.Recorder.flush

    def flush(self: Any) -> None:
        if any(c["message_pk"] == refused for c in self.classifications):
            raise sa.exc.IntegrityError("INSERT INTO classification", {}, Exception("refused"))
        real_flush(self)

    refused = desk.scalar(sa.select(MESSAGE.c.id).where(MESSAGE.c.subject == "REFUSED"))
    monkeypatch.setattr(classify_module, "run_chain", run_chain)
    monkeypatch.setattr(record_module.Recorder, "flush", flush)
    desk.process(ny(2026, 11, 23, 9, 0))
    states = dict(desk.rows(sa.select(MESSAGE.c.subject, MESSAGE.c.state)))
    assert states == {"Request 0": "pending", "POISON": "quarantined", "Request 2": "pending",
                      "Request 3": "pending", "Request 4": "pending", "REFUSED": "quarantined"}
    assert {(q.subject, q.stage) for q in quarantined(desk)} == {("POISON", "classify"), ("REFUSED", "classify")}


# -- parse --------------------------------------------------------------------------------


def test_a_mail_that_kills_its_parse_worker_is_quarantined_the_rest_parsed(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker process dies (a crash, the memory limit): each mail of the batch
    is parsed again alone, and only the one that kills a worker again is quarantined."""
    import fault_parse

    desk = Desk(db_url, tmp_path)
    for i in range(6):
        desk.mail(ny(2026, 11, 23, 8, i), subject="CRASH-THE-WORKER" if i == 3 else f"Request {i}")
    monkeypatch.setattr(stages_module, "parse_many", fault_parse.parse_many_or_die)
    with BackgroundParser(desk.engine, desk.clock, workers=1) as parser:
        result = parser.drain(timeout=120)
    assert (result.done, result.quarantined) == (5, 1)
    [q] = quarantined(desk)
    assert q.subject == "CRASH-THE-WORKER" and q.stage == "parse" and "died" in q.error
    assert parser.error is None


# -- delivery --------------------------------------------------------------------------------


def test_a_refused_recipient_leaves_the_session_clean(db_url: str, tmp_path: Path) -> None:
    """After one failed transaction the SMTP session is reset, not left mid-transaction."""
    desk = Desk(db_url, tmp_path)
    desk.directory()
    for i, sender in enumerate(["alice@acme.example", "bob@globex.example", "monitor@acme.example"]):
        desk.mail(ny(2026, 11, 23, 8, i), sender=sender, subject=f"Problem {i}")
    store_raw(desk, raw_mail("Hans <hans@unknown.example>", "Frage", ny(2026, 11, 23, 8, 9), 99),
              ny(2026, 11, 23, 8, 9))
    desk.process(ny(2026, 11, 23, 9, 31))
    sink = SmtpSink().start()
    sink.reject = {"bob@globex.example"}
    try:
        cfg = smtp_config(desk, sink)
        result = deliver_due(desk.engine, transport_for(cfg), ny(2026, 11, 23, 9, 32), cfg)
    finally:
        sink.stop()
    queued = len(desk.outbox())
    assert result.failed == 1 and result.sent == queued - 1 >= 2
    after_bob = [r.rcpt_tos[0] for r in sink.received]
    assert "bob@globex.example" not in after_bob and len(after_bob) == queued - 1
    [failed] = desk.rows(sa.select(OUTBOX).where(OUTBOX.c.status == "failed"))
    assert failed.to_addr == "bob@globex.example" and "550" in failed.last_error
    assert failed.status_reason == "refused"
