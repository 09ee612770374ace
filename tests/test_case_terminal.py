"""Reading and working a case in the terminal (issue 15): cases show, message raw/attachments,
--json everywhere, case reply/note/severity/merge, cases list's waiting column and order."""

from __future__ import annotations

import base64
import email
import email.utils
import io
import json
import os
import sys
from datetime import UTC, datetime
from email.policy import default
from pathlib import Path

import pytest
import sqlalchemy as sa
from batching import AUTH, Desk, ny
from helpers import Cli, body_text

from mailcase.cli import cases as cases_cli
from mailcase.core.states import ReceivedSource
from mailcase.domain.db import transaction
from mailcase.domain.tables import CASE, CASE_EVENT, CASE_MESSAGE, MESSAGE, OUTBOX
from mailcase.ingest.ledger import Incoming, store
from mailcase.ops.attachments import MAX_NAME_BYTES, safe_name


def _store(desk: Desk, raw: bytes, at: datetime) -> None:
    desk.n += 1
    with transaction(desk.engine) as conn:
        store(conn, [Incoming("eml:/test", f"raw{desk.n}", raw, at, ReceivedSource.DATE_HEADER, False)], at)


def _mail_with_files(at: datetime, names: list[str], subject: str = "Logs attached") -> bytes:
    """alice's request with one attachment per Content-Disposition filename parameter given (verbatim)."""
    auth = AUTH[1].format(d="acme.example")
    parts = [
        f"From: alice@acme.example\r\nTo: support@support.example\r\nSubject: {subject}\r\n"
        f"Date: {email.utils.format_datetime(at)}\r\nMessage-ID: <files.{at.timestamp():.0f}@acme.example>\r\n{AUTH[0]}: {auth}\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="XYZ"\r\n\r\n'
        "--XYZ\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe export fails, logs attached.\r\n"
    ]
    for i, param in enumerate(names):
        parts.append(f"--XYZ\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; {param}"
                     f"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                     + base64.encodebytes(bytes([i, 0, 255, 10, 13]) * (i + 1)).decode() + "\r\n")
    parts.append("--XYZ--\r\n")
    return "".join(parts).encode("ascii")


def test_a_senders_control_characters_never_reach_the_terminal(desk_cli: tuple[Desk, Cli]) -> None:
    desk, cli = desk_cli
    desk.mail(ny(2026, 11, 23, 8, 0), subject="Export \x1b[31mbroken\u202e",
              body="hello \x1b[2J\x1b]52;c;cm0gLXJmIH4=\x07 world\n")
    desk.process(ny(2026, 11, 23, 9, 31))
    cli.at(ny(2026, 11, 23, 10, 0))
    for shown in (cli("cases", "show", "1"), cli("cases", "list"), cli("message", "show", "1")):
        assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown
    assert "hello \ufffd[2J" in cli("cases", "show", "1")


def test_cases_show_prints_the_conversation(desk_cli: tuple[Desk, Cli]) -> None:
    desk, cli = desk_cli
    body = ("The export still fails, PIN 4821.\n\nOn Mon, Nov 23, 2026 at 8:00 AM Support "
            "<support@support.example> wrote:\n> Old quoted history line\n> more of it\n")
    desk.mail(ny(2026, 11, 23, 8, 0), subject="Export broken", body=body)
    _store(desk, _mail_with_files(ny(2026, 11, 23, 8, 5), ['filename="report.pdf"'], "Export broken"), ny(2026, 11, 23, 8, 5))
    desk.process(ny(2026, 11, 23, 9, 31))
    cli.at(ny(2026, 11, 23, 10, 0))
    cli("case", "note", "1", "-m", "Called Alice, she will send logs")
    cli("case", "reply", "1", "--text", "We found the cause and fix it today.")
    shown = cli("cases", "show", "1")
    conv = shown.split("conversation:")[1].split("events:")[0]
    assert "| The export still fails" in conv and "Old quoted history" not in conv
    assert "[quoted history trimmed: --full]" in conv
    assert "4821" not in shown  # PINs never shown
    assert "| The export fails, logs attached." in conv
    assert "attachment report.pdf (application/octet-stream, 5 bytes)" in conv
    assert "note by" in conv and "| Called Alice, she will send logs" in conv
    assert "sent #" in conv and "reply to alice@acme.example: queued: " in conv
    assert "| We found the cause and fix it today." in conv
    assert "ack to alice@acme.example" in conv  # the acknowledgement with its text
    # in order: the two mails, then the ack, then the note, then the reply
    at = [conv.index(s) for s in ("The export still fails", "logs attached", "ack to", "Called Alice", "We found")]
    assert at == sorted(at)
    full = cli("cases", "show", "1", "--full")
    assert "| > Old quoted history line" in full and "4821" not in full
    data = json.loads(cli("cases", "show", "1", "--json"))
    assert data["case"]["number"] == 1 and data["case"]["waiting"] is False
    kinds = [i["type"] for i in data["conversation"]]
    assert kinds.count("mail") == 2 and "note" in kinds and kinds.count("sent") >= 2
    assert "4821" not in json.dumps(data)
    assert cli("case", "note", "1", "-m", "  ", code=2).strip() == "mailcase: the note is empty: nothing done"


def test_message_raw_and_attachments_under_safe_names(desk_cli: tuple[Desk, Cli], tmp_path: Path) -> None:
    desk, cli = desk_cli
    names = ['filename="../../etc/passwd"', 'filename="/etc/shadow"', "filename*=utf-8''evil%00name%0A.txt",
             'filename="CON"', 'filename="con.txt"', f'filename="{"x" * 240}.pdf"', 'filename="report.pdf"',
             'filename="report.pdf"', 'filename=".bashrc"', 'filename=".."', 'filename="a\\\\b\\\\..\\\\c.exe"']
    raw = _mail_with_files(ny(2026, 11, 23, 8, 0), names)
    raw = raw.replace(b"The export fails", b"The export f\xe4ils")  # 8-bit: raw must stay byte for byte
    _store(desk, raw, ny(2026, 11, 23, 8, 0))
    desk.process(ny(2026, 11, 23, 8, 1))
    pk = desk.scalar(sa.select(MESSAGE.c.id))
    out = tmp_path / "orig.eml"
    cli("message", "raw", str(pk), "--output", str(out))
    assert out.read_bytes() == raw
    listing = cli("message", "attachments", str(pk))
    assert "passwd  (application/octet-stream, 5 bytes)" in listing and listing.count("report.pdf") == 2
    listed = json.loads(cli("message", "attachments", str(pk), "--json"))
    assert [a["size"] for a in listed] == [5 * (i + 1) for i in range(len(names))]
    save = tmp_path / "save"
    save.mkdir()
    (save / "report.pdf").write_bytes(b"mine")  # never overwritten
    outside = tmp_path / "passwd"
    cli("message", "attachments", str(pk), "--save", str(save))
    files = sorted(os.listdir(save))
    assert (save / "report.pdf").read_bytes() == b"mine"
    assert {"passwd", "shadow", "_CON", "_con.txt", "report-2.pdf", "report-3.pdf", "bashrc", "c.exe"} <= set(files)
    assert not outside.exists() and not (tmp_path / "etc").exists()
    for f in files:
        assert "/" not in f and "\\" not in f and not f.startswith(".") and f == f.strip()
        assert not any(ord(ch) < 32 for ch in f) and len(f.encode()) <= MAX_NAME_BYTES
    assert any(f.startswith("evilname") and f.endswith(".txt") for f in files)
    assert any(f.startswith("xxxx") and f.endswith(".pdf") for f in files)
    assert any(f.startswith("attachment-") for f in files)  # ".." is nothing after cleaning
    assert (save / "passwd").read_bytes() == bytes([0, 0, 255, 10, 13])
    assert len(files) == len(names) + 1
    # saving again adds copies under new names, overwrites nothing
    cli("message", "attachments", str(pk), "--save", str(save))
    assert len(os.listdir(save)) == 2 * len(names) + 1 and (save / "passwd").read_bytes() == bytes([0, 0, 255, 10, 13])
    # standard output: the bytes as stored (an ASCII mail here: capsys decodes what it captures)
    desk.mail(ny(2026, 11, 23, 8, 2), subject="plain")
    pk2 = desk.scalar(sa.select(sa.func.max(MESSAGE.c.id)))
    stored = cli("message", "raw", str(pk2))
    assert stored.startswith("From: alice@acme.example") and "\r\n" in stored
    assert cli("message", "raw", "999", code=2).strip() == "mailcase: no message 999"


@pytest.mark.parametrize("name, expected", [
    ("../../etc/passwd", "passwd"), ("/etc/shadow", "shadow"), ("C:\\Windows\\win.ini", "win.ini"),
    ("a\x00b\x1f\u202ec.txt", "abc.txt"), ("CON", "_CON"), ("nul.tar.gz", "_nul.tar.gz"), ("LPT1", "_LPT1"),
    ("...", "attachment-3.bin"), ("", "attachment-3.bin"), ("  .hidden  ", "hidden"), ('a<b>:"c"|?*.txt', "a_b___c____.txt"),
])
def test_safe_name(name: str, expected: str) -> None:
    assert safe_name(name, "application/octet-stream", 3) == expected


def test_safe_name_is_length_limited() -> None:
    long = safe_name("é" * 400 + ".pdf", "application/pdf", 1)
    assert long.endswith(".pdf") and len(long.encode()) <= MAX_NAME_BYTES


def test_case_reply_from_stdin_editor_and_with_attachments(desk_cli: tuple[Desk, Cli], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    desk, cli = desk_cli
    desk.mail(ny(2026, 11, 23, 8, 0), subject="Export broken")
    desk.process(ny(2026, 11, 23, 9, 31))
    cli.at(ny(2026, 11, 23, 10, 0))
    monkeypatch.setattr(sys, "stdin", io.StringIO("Fixed from stdin.\n"))
    assert "reply queued" in cli("case", "reply", "1")
    monkeypatch.setattr(sys, "stdin", io.StringIO("Fixed from stdin.\n"))
    cli("case", "reply", "1")  # the same text again: no second mail
    replies = desk.rows(sa.select(OUTBOX).where(OUTBOX.c.kind == "reply"))
    assert len(replies) == 1 and "Fixed from stdin." in body_text(email.message_from_bytes(replies[0].raw,
                                                                                            policy=default))
    monkeypatch.setattr(sys, "stdin", io.StringIO("  \n"))
    assert cli("case", "reply", "1", code=2).strip() == "mailcase: the reply is empty: nothing done"
    # a terminal: $EDITOR on a temporary file
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nprintf 'Written in the editor.\\n' > \"$1\"\n")
    editor.chmod(0o755)
    monkeypatch.setattr(cases_cli, "stdin_is_terminal", lambda: True)
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", str(editor))
    pdf, log = tmp_path / "fix notes.pdf", tmp_path / "trace.log"
    pdf.write_bytes(b"%PDF-1.4 \x00\xff binary")
    log.write_text("line one\n")
    out = cli("case", "reply", "1", "--attach", str(pdf), "--attach", str(log))
    assert "with 2 attachment(s)" in out
    cli("case", "reply", "1", "--attach", str(pdf), "--attach", str(log))  # the same again: nothing new
    replies = desk.rows(sa.select(OUTBOX).where(OUTBOX.c.kind == "reply").order_by(OUTBOX.c.id))
    assert len(replies) == 2
    msg = email.message_from_bytes(replies[1].raw, policy=default)
    assert msg.get_content_type() == "multipart/mixed" and "Written in the editor." in body_text(msg)
    files = {p.get_filename(): (p.get_content_type(), p.get_content()) for p in msg.iter_attachments()}
    assert set(files) == {"fix notes.pdf", "trace.log"}
    assert files["fix notes.pdf"] == ("application/pdf", b"%PDF-1.4 \x00\xff binary")
    assert msg["In-Reply-To"] and msg["Subject"].startswith("[Case #000001]")
    # an editor left without saving: nothing sent
    editor.write_text("#!/bin/sh\nexit 0\n")
    assert "is empty" in cli("case", "reply", "1", code=2)


def test_case_severity_moves_priority_not_due_times(desk_cli: tuple[Desk, Cli]) -> None:
    desk, cli = desk_cli
    desk.mail(ny(2026, 11, 23, 8, 0), subject="Export broken")
    desk.process(ny(2026, 11, 23, 9, 31))
    before = desk.rows(sa.select(CASE))[0]
    assert before.severity == 3
    cli.at(ny(2026, 11, 23, 10, 0))
    assert "severity S3 -> S1" in cli("case", "severity", "1", "1")
    after = desk.rows(sa.select(CASE))[0]
    assert (after.severity, after.priority) == (1, 1)
    assert (after.ack_due_at, after.ack_breach_at) == (before.ack_due_at, before.ack_breach_at)
    assert after.first_staff_action_at is not None
    events = desk.rows(sa.select(CASE_EVENT.c.kind, CASE_EVENT.c.detail).where(CASE_EVENT.c.kind == "severity"))
    assert [tuple(e) for e in events] == [("severity", "S3 -> S1, priority 3 -> 1")]
    assert "(unchanged)" in cli("case", "severity", "1", "1")
    assert len(desk.rows(sa.select(CASE_EVENT).where(CASE_EVENT.c.kind == "severity"))) == 1
    assert "severity" in cli("cases", "show", "1").split("events:")[1]
    cli("case", "severity", "1", "5", code=2)


def test_cases_of_different_accounts_do_not_merge(desk_cli: tuple[Desk, Cli]) -> None:
    desk, cli = desk_cli
    desk.mail(ny(2026, 11, 23, 8, 0), subject="Claims stuck in queue")
    desk.mail(ny(2026, 11, 23, 8, 10), sender="bob@globex.example", subject="Export broken")
    desk.process(ny(2026, 11, 23, 9, 31))
    cli.at(ny(2026, 11, 23, 10, 0))
    assert cli("case", "merge", "1", "2", code=2).strip() == (
        "mailcase: cases #000001 and #000002 belong to different accounts: only cases of one account merge")


def test_merge_then_a_reply_to_the_merged_case_lands_in_the_survivor(desk_cli: tuple[Desk, Cli]) -> None:
    desk, cli = desk_cli
    first = desk.mail(ny(2026, 11, 23, 8, 0), subject="Claims stuck in queue")
    second = desk.mail(ny(2026, 11, 23, 8, 10), subject="Export broken")
    desk.process(ny(2026, 11, 23, 9, 31))
    assert (desk.case_of(first), desk.case_of(second)) == (1, 2)
    ack_b = desk.scalar(sa.select(OUTBOX.c.message_id).join(CASE, CASE.c.id == OUTBOX.c.case_id)
                        .where(CASE.c.number == 2, OUTBOX.c.kind == "ack"))
    assert ack_b
    cli.at(ny(2026, 11, 23, 10, 0))
    assert cli("case", "merge", "1", "1", code=2).strip() == "mailcase: cannot merge case #000001 into itself"
    out = cli("case", "merge", "1", "2")
    assert "case #000002 merged into #000001: 1 mails moved, #000002 closed" in out
    a, b = (desk.rows(sa.select(CASE).where(CASE.c.number == n))[0] for n in (1, 2))
    assert (b.status, b.merged_into_id, b.closed_at is not None) == ("closed", a.id, True)
    assert desk.case_of(second) == 1
    assert cli("case", "merge", "2", "1", code=2).strip() == "mailcase: case #000002 is merged: merge into an open case"
    assert cli("case", "merge", "1", "2", code=2).strip() == "mailcase: case #000002 is merged already"
    merged = {(r.case_id, r.detail) for r in desk.rows(sa.select(CASE_EVENT).where(CASE_EVENT.c.kind == "merged"))}
    assert merged == {(b.id, "into #000001, 1 mails moved"), (a.id, "#000002 merged into this case, 1 mails moved")}
    # alice answers B's acknowledgement: her mail lands in A, B stays closed
    reply = desk.mail(ny(2026, 11, 23, 11, 0), 
                      subject="Re: [Case #000002] Export broken", body="Still stuck here.\n",
                      headers={"In-Reply-To": ack_b, "References": ack_b})
    desk.process(ny(2026, 11, 23, 11, 1))
    assert desk.case_of(reply) == 1
    assert desk.rows(sa.select(CASE.c.status).where(CASE.c.number == 2))[0][0] == "closed"
    # a reply naming only B's token (no known Message-ID) lands in A as well
    token = desk.mail(ny(2026, 11, 23, 11, 5), 
                      subject="[Case #000002] one more thing", body="And another detail.\n")
    desk.process(ny(2026, 11, 23, 11, 6))
    assert desk.case_of(token) == 1
    shown = cli("cases", "show", "1")
    assert "| Still stuck here." in shown and "| And another detail." in shown
    assert len(desk.rows(sa.select(CASE_MESSAGE).where(CASE_MESSAGE.c.case_id == b.id))) == 0
    assert "merged:     into #000001" in cli("cases", "show", "2")
    assert json.loads(cli("cases", "show", "2", "--json"))["case"]["merged_into"] == 1


def test_cases_list_waiting_column_and_due_order(desk_cli: tuple[Desk, Cli]) -> None:
    desk, cli = desk_cli
    desk.mail(ny(2026, 11, 23, 8, 0), subject="First")          # cutoff Monday 09:30
    desk.process(ny(2026, 11, 23, 9, 31))
    desk.mail(ny(2026, 11, 23, 12, 0), sender="bob@globex.example", subject="Second")
    desk.process(ny(2026, 11, 24, 9, 31))                        # cutoff Tuesday: due later
    cli.at(ny(2026, 11, 24, 10, 0))
    cli("case", "severity", "2", "1")  # more urgent, but due later
    cli("case", "reply", "1", "--text", "Answer")
    lines = [line for line in cli("cases", "list").splitlines() if line.startswith("#")]
    assert lines[0].startswith("#000001") and lines[1].startswith("#000002")
    assert "WAIT" not in lines[0] and "WAIT" in lines[1]
    data = json.loads(cli("cases", "list", "--json"))
    assert [(d["number"], d["waiting"]) for d in data] == [(1, False), (2, True)]
    # the customer writes again after the reply: case 1 waits again
    desk.mail(ny(2026, 11, 24, 11, 0), subject="Re: [Case #000001] First", body="That did not help.\n")
    desk.process(ny(2026, 11, 24, 11, 1))
    data = json.loads(cli("cases", "list", "--json"))
    assert [(d["number"], d["waiting"]) for d in data] == [(1, True), (2, True)]
    # a closed case sorts after the open ones, whatever its due time
    cli("case", "close", "1")
    assert [d["number"] for d in json.loads(cli("cases", "list", "--json"))] == [2, 1]


def test_every_list_and_show_command_has_json(desk_cli: tuple[Desk, Cli]) -> None:
    desk, cli = desk_cli
    cli.at(ny(2026, 11, 23, 7, 0))
    cli("specialists", "add", "Sam", "--address", "sam@support.example")
    desk.mail(ny(2026, 11, 23, 8, 0), subject="One")
    desk.process(ny(2026, 11, 23, 9, 31))
    for args in (("cases", "list"), ("cases", "show", "1"), ("messages", "list"), ("message", "show", "1"),
                 ("message", "attachments", "1"), ("outbox", "list"), ("outbox", "show", "1"),
                 ("suppress", "list"), ("quarantine", "list"), ("review", "list"), ("accounts", "list"),
                 ("specialists", "list")):
        data = json.loads(cli(*args, "--json"))
        assert data is not None, args
    assert json.loads(cli("specialists", "list", "--json"))[0]["name"] == "Sam"
    assert json.loads(cli("outbox", "list", "--json"))[0]["kind"] == "ack"
    assert "raw" not in json.loads(cli("outbox", "show", "1", "--json"))
    accounts = json.loads(cli("accounts", "list", "--json"))
    assert {"address": "alice@acme.example", "name": "Alice Admin", "role": "administrator"} in accounts[0]["people"]
    assert datetime.fromisoformat(json.loads(cli("messages", "list", "--json"))[0]["received_at"]).tzinfo == UTC
