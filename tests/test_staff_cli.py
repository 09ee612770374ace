"""Staff work cases from the CLI (run in-process through the real entry point)."""

from __future__ import annotations

import email
import json
from email.policy import default
from pathlib import Path

import sqlalchemy as sa
from batching import Desk, ny
from helpers import Cli, body_text

from mailcase.domain.tables import CASE, OUTBOX


def test_work_a_case_end_to_end(desk_cli: tuple[Desk, Cli]) -> None:
    desk, cli = desk_cli
    cli.at(ny(2026, 11, 23, 7, 0))
    assert "specialist Sam (SSI) active" in cli("specialists", "add", "Sam", "--address", "sam@support.example")
    cli("specialists", "add", "Kim")
    first = desk.mail(ny(2026, 11, 23, 8, 0), subject="Claims stuck in queue", body="Severity: 2\nPlease help\n")
    desk.mail(ny(2026, 11, 23, 8, 10), sender="bob@globex.example", subject="Export broken")
    desk.process(ny(2026, 11, 23, 7, 0))
    cli.at(ny(2026, 11, 23, 9, 31))
    out = cli("batch", "--dry-run")
    assert "dry run: cutoff 2026-11-23 14:30 UTC: 2 mails -> 2 new cases" in out
    assert desk.scalar(sa.select(sa.func.count()).select_from(CASE)) == 0
    out = cli("batch", "--now")
    assert "2 mails -> 2 new cases" in out
    assert "no cutoff is due" in cli("batch", "--now")
    listing = cli("cases", "list")
    assert "#000001 new" in listing and "S2" in listing
    owners = {desk.scalar(sa.select(CASE.c.owner_id).where(CASE.c.number == n)) for n in (1, 2)}
    assert len(owners) == 2  # least loaded, then round robin
    cli.at(ny(2026, 11, 23, 10, 0))
    cli("case", "assign", "1", "Sam")
    out = cli("case", "escalate", "1", "--to", "SSIII", "--note", "needs the database team")
    assert "SSI -> SSIII, owner unchanged" in out
    row = desk.rows(sa.select(CASE).where(CASE.c.number == 1))[0]
    assert (row.tier, row.status) == ("SSIII", "escalated")
    assert cli("case", "escalate", "1", "--to", "SSII", code=2).startswith("mailcase: case #000001 is already at SSIII")
    cli("case", "reply", "1", "--text", "We are looking into it. <b>Not bold</b> {{ 7*7 }}")
    cli("case", "reply", "1", "--text", "We are looking into it. <b>Not bold</b> {{ 7*7 }}")  # idempotent
    replies = desk.rows(sa.select(OUTBOX).where(OUTBOX.c.kind == "reply"))
    assert len(replies) == 1
    msg = email.message_from_bytes(replies[0].raw, policy=default)
    assert msg["In-Reply-To"] and msg["Subject"].startswith("[Case #000001]")
    assert "Auto-Submitted" not in msg  # a person wrote it
    assert "{{ 7*7 }}" in body_text(msg)
    assert "&lt;b&gt;Not bold&lt;/b&gt;" in body_text(msg, "html")
    assert first in msg["References"]
    cli("case", "resolve", "1", "--note", "Cleared the stuck queue")
    cli("case", "close", "1")
    cli("case", "reopen", "1")
    shown = cli("cases", "show", "1")
    for word in ("created", "assigned", "escalated", "reply", "resolved", "closed", "reopened"):
        assert f" {word}" in shown
    assert "first staff:2026-11-23 15:00 UTC" in shown.replace("first staff: ", "first staff:")
    specialists = cli("specialists", "list")
    assert "Sam" in specialists and "Kim" in specialists
    cli("specialists", "deactivate", "Kim")
    assert "inactive" in cli("specialists", "list")


def test_reports_in_three_formats(desk_cli: tuple[Desk, Cli]) -> None:
    desk, cli = desk_cli
    desk.mail(ny(2026, 11, 23, 8, 0), subject="One")
    desk.mail(ny(2026, 11, 23, 8, 5), sender="erin@acme.example", subject="Two")
    desk.process(ny(2026, 11, 23, 9, 31))
    cli.at(ny(2026, 11, 27, 12, 0))
    text = cli("report")
    # processed Monday 09:30, due Tuesday 09:30, breached Wednesday 09:30: no human answer by Friday
    assert "2026-11-23T14:30" in text and "breached (no human answer in time): 1" in text
    assert "case #000001 ACME: due 2026-11-24T14:30, no answer yet" in text
    assert "ACME: outside-channel 1" in text
    data = json.loads(cli("report", "--format", "json"))
    assert data["cutoffs"][0]["cases"] == 1 and len(data["breaches"]) == 1
    csv_text = cli("report", "--format", "csv", "--since", "2026-11-01")
    assert "cutoff,2026-11-23T14:30:00+00:00,2,1" in csv_text


def test_accounts_review_and_outbox_commands(desk_cli: tuple[Desk, Cli], tmp_path: Path) -> None:
    desk, cli = desk_cli
    cli.at(ny(2026, 11, 23, 7, 0))
    csv_file = tmp_path / "people.csv"
    csv_file.write_text("account,address,role,pin\nNEWCO,new@newco.example,representative,12345\n"
                        "NEWCO,ok@newco.example,boss,\nNEWCO,good@newco.example,representative,\n")
    err = cli("accounts", "import", str(csv_file), code=1)
    assert "line 2: pin is not 4 digits" in err and "line 3: role 'boss'" in err
    assert "people: 0 added, 0 changed, 0 removed, 1 unchanged" in cli("accounts", "import", str(csv_file), code=1)
    out = cli("accounts", "list", "NEWCO")
    assert "good@newco.example" in out
    assert "UMBRELLA: standing good" in cli("accounts", "standing", "UMBRELLA", "good")
    assert "(unchanged)" in cli("accounts", "standing", "UMBRELLA", "good")
    assert cli("accounts", "standing", "NOPE", "good", code=2).strip() == "mailcase: no account 'NOPE'"
    assert "people: 1 added" in cli("accounts", "list") or "NEWCO" in cli("accounts", "list")
    # a flood: held for review, then released and discarded
    for i in range(17):
        desk.mail(ny(2026, 11, 23, 8, 0, i), subject="Same thing", body="Same body\n")
    desk.process(ny(2026, 11, 23, 8, 1))
    held = cli("review", "list")
    assert held.count("Same thing") == 2 and "mails with the same sender, subject and body" in held
    ids = [line.split()[0].lstrip("#") for line in held.splitlines()]
    cli("review", "release", ids[0])
    cli("review", "discard", ids[1])
    assert "nothing is held for review" in cli("review", "list")
    cli.at(ny(2026, 11, 23, 9, 31))
    cli("batch", "--now")
    assert "ack" in cli("outbox", "list")
    shown = cli("outbox", "show", "1")
    assert "message-id:" in shown and "<mc.ack." in shown
    assert "Auto-Submitted: auto-replied" in cli("outbox", "show", "1", "--raw")
    assert "Subject: [Case #000001]" in cli("render", "ack", "--case", "1")
    assert "financial standing" in cli("render", "notice", "--case", "1", "--notice", "hold")
