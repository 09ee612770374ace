"""Auto-replies are never requests, whoever sends them (issue 13).

tests/autoreply_corpus/ holds 127 mails (README there): 81 automatic replies
in the formats of Exchange/Outlook (server and client rules), Gmail, Sieve,
Zimbra, HCL Notes, Apple Mail, Yahoo, Zoho and fifteen help desks, in seven
languages, 32 of them without any RFC 3834 header; 33 people's mails that
look like one (near-misses); 13 machine mails that are not replies.  Each is
run through the whole chain as the representative or stranger who sent it.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from functools import lru_cache
from pathlib import Path

import pytest
from rules_fake import FakeContext, load_directory, mail_from_bytes, settings
from test_rules_corpus import NOW

from mailcase.rules.base import Disposition, Mark, Outcome
from mailcase.rules.chain import run_chain

CORPUS = Path(__file__).parent / "autoreply_corpus"
DIRECTORY, CASES, MSGIDS, RESOLVED = load_directory(Path(__file__).parent / "rules_corpus" / "directory.toml")
MAILS = sorted(CORPUS.glob("*.eml"))


@lru_cache(maxsize=None)
def meta(path: Path) -> dict[str, object]:
    return tomllib.loads(path.with_suffix(".toml").read_text())


@lru_cache(maxsize=None)
def outcome(path: Path) -> Outcome:
    ctx = FakeContext(now=NOW, settings=settings(), directory=DIRECTORY, cases=CASES, case_message_ids=MSGIDS,
                      resolved=RESOLVED)
    return run_chain(mail_from_bytes(path.read_bytes()), ctx)


def _trail(o: Outcome) -> str:
    return "\n".join(f"  {v.rule}: {v.name}: {v.reason}" for v in o.verdicts)


def test_the_corpus_is_what_its_readme_says() -> None:
    kinds = Counter(str(meta(p)["kind"]) for p in MAILS)
    assert kinds == {"auto-reply": 81, "request": 33, "automatic-not-reply": 13}
    languages = Counter(str(meta(p)["language"]) for p in MAILS if meta(p)["kind"] == "auto-reply")
    assert set(languages) == {"en", "de", "fr", "es", "it", "nl", "pt"} and min(languages.values()) >= 5
    assert sum(1 for p in MAILS if meta(p)["kind"] == "auto-reply" and not meta(p)["headers"]) >= 32


@pytest.mark.parametrize("path", [p for p in MAILS if meta(p)["kind"] == "auto-reply"], ids=lambda p: p.stem)
def test_an_auto_reply_is_no_request_and_gets_no_answer(path: Path) -> None:
    o = outcome(path)
    assert o.final is Disposition.SUPPRESSED, _trail(o)
    assert {"out-of-office", "auto-reply"} & {v.name for v in o.verdicts}, _trail(o)
    assert Mark.NO_AUTO_REPLY in o.marks and not o.notice_allowed
    assert o.verdicts[-1].reason  # the reasons are recorded


@pytest.mark.parametrize("path", [p for p in MAILS if meta(p)["kind"] == "request"], ids=lambda p: p.stem)
def test_a_person_writing_about_absence_or_auto_replies_is_not_one(path: Path) -> None:
    o = outcome(path)
    assert not {"out-of-office", "auto-reply"} & {v.name for v in o.verdicts}, _trail(o)
    assert o.final is not Disposition.SUPPRESSED, _trail(o)


@pytest.mark.parametrize("path", [p for p in MAILS if meta(p)["kind"] == "automatic-not-reply"],
                         ids=lambda p: p.stem)
def test_machine_mail_that_is_no_reply_is_a_request_without_an_answer(path: Path) -> None:
    """A monitoring alert or a scan from a representative's address is a request (a
    case), never answered automatically; from anyone else it is kept, unanswered."""
    o = outcome(path)
    assert not {"out-of-office", "auto-reply"} & {v.name for v in o.verdicts}, _trail(o)
    assert Mark.NO_AUTO_REPLY in o.marks and not o.notice_allowed, _trail(o)
    if o.sender is not None and o.sender.eligible:
        assert o.final is Disposition.PENDING, _trail(o)
