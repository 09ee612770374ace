"""PINs as people write them (issue 13): found in body or subject, redacted everywhere.

tests/pin_corpus/forms.toml holds 118 ways customers write a PIN, and write
numbers that are no PIN (README there): each must be found (or not) and
redacted (or kept) as listed.  Through the pipeline, a PIN in the subject
is accepted and redacted from the stored subject, the case, the
acknowledgement and the CLI; the raw mail keeps its bytes.
"""

from __future__ import annotations

import email
import tomllib
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from batching import Desk, ny
from helpers import body_text, run_cli, write_config

from mailcase.domain.tables import BLOB, CASE, MESSAGE, PARSED_MAIL
from mailcase.mail.pins import REDACTED, find_pins, pin_hmac, redact

FORMS = tomllib.loads((Path(__file__).parent / "pin_corpus" / "forms.toml").read_text())["form"]


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f["id"])
def test_each_form(form: dict[str, Any]) -> None:
    text = form["text"]
    found = find_pins("", subject=text) if form["where"] == "subject" else find_pins(text)
    assert found == form["pins"]
    redacted = redact(text)
    assert all(secret not in redacted for secret in form.get("redact", [])), redacted
    assert all(kept in redacted for kept in form.get("keep", [])), redacted


def test_the_corpus_counts() -> None:
    assert len(FORMS) >= 40 and sum(1 for f in FORMS if f["pins"]) >= 40


def test_a_pin_of_another_script_hashes_as_its_ascii_digits() -> None:
    key = b"k" * 32
    assert pin_hmac(key, "４３２１") == pin_hmac(key, "4321") == pin_hmac(key, "٤٣٢١")


PIN_DIRECTORY = """account,account_name,standing,pin_required,address,name,role,pin
PINCO,Pin Company,good,yes,pat@pinco.example,Pat Pin,representative,4321
"""


def test_a_pin_in_the_subject_is_accepted_and_redacted_from_everything(db_url: str, tmp_path: Path) -> None:
    desk = Desk(db_url, tmp_path)
    desk.directory(PIN_DIRECTORY)
    mid = desk.mail(ny(2026, 11, 23, 8, 0), sender="pat@pinco.example", subject="[PIN 4321] Export fails",
                    body="Hello, the export fails since this morning. My pin is 4321.\n")
    desk.process(ny(2026, 11, 23, 9, 31))
    assert desk.case_of(mid) == 1
    subject, text = desk.rows(sa.select(MESSAGE.c.subject, PARSED_MAIL.c.text_body)
                              .join(PARSED_MAIL, PARSED_MAIL.c.message_pk == MESSAGE.c.id))[0]
    assert "4321" not in subject and REDACTED in subject and "4321" not in text
    assert "4321" not in desk.scalar(sa.select(CASE.c.subject))
    [ack] = desk.outbox()
    assert b"4321" not in ack.raw and "4321" not in ack.subject
    msg = email.message_from_bytes(ack.raw, policy=default)
    assert "4321" not in msg["Subject"] and "4321" not in body_text(msg)
    # the raw mail keeps its bytes (the README says so)
    assert b"4321" in desk.scalar(sa.select(BLOB.c.data))
    cfg = write_config(tmp_path / "c.toml", db_url, [])
    for args in (("messages", "list"), ("message", "show", "1"), ("cases", "list"), ("cases", "show", "1"),
                 ("outbox", "list")):
        out = run_cli("--config", str(cfg), *args)
        assert out.returncode == 0 and "4321" not in out.stdout + out.stderr, args


def test_a_wrong_pin_in_a_sentence_gets_the_notice_every_time(db_url: str, tmp_path: Path) -> None:
    """An authenticated representative's second try within 7 days gets its notice too
    (the period protects only unknown and unauthenticated addresses)."""
    desk = Desk(db_url, tmp_path)
    desk.directory(PIN_DIRECTORY)
    desk.mail(ny(2026, 11, 23, 8, 0), sender="pat@pinco.example", subject="Export fails",
              body="Hello, the export fails. My PIN is 1234.\n")
    desk.process(ny(2026, 11, 23, 9, 31))
    desk.mail(ny(2026, 11, 23, 10, 0), sender="pat@pinco.example", subject="Export fails, second try",
              body="Sorry: my PIN is 1243.\n")
    desk.process(ny(2026, 11, 23, 15, 31))
    fixed = desk.mail(ny(2026, 11, 24, 8, 0), sender="pat@pinco.example", subject="Export fails, third try",
                      body="PIN：４３２１ (I hope)\n")
    desk.process(ny(2026, 11, 24, 9, 31))
    kinds = [r.kind for r in desk.outbox()]
    assert kinds == ["notice/pin", "notice/pin", "ack"]
    assert desk.case_of(fixed) == 1
    texts = [body_text(email.message_from_bytes(r.raw, policy=default)) for r in desk.outbox()]
    assert "a PIN that does not match" in texts[0] and all("1234" not in t and "1243" not in t for t in texts)
