"""Foreign mail: the Zammad corpus (tests/corpus/zammad, AGPLv3 data, see its README).

Every one of the 115 mails is stored through the real ledger and parsed by the
parse stage.  Sender, subject and body are compared with the expectations
Zammad's own parser wrote (the ``.yml`` files).  Where we differ on purpose,
the mail is listed below with the reason; a listed mail that starts agreeing
fails the test too, so the lists stay honest.
"""

from __future__ import annotations

import base64
import functools
import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailcase.core.errors import MessageError
from mailcase.core.states import MessageState, ReceivedSource
from mailcase.domain.db import open_engine, transaction
from mailcase.domain.tables import MESSAGE, PARSED_MAIL
from mailcase.ingest.ledger import Incoming, Stored, store
from mailcase.ingest.stages import run_parse_stage
from mailcase.mail.parse.message import parse_email

CORPUS = Path(__file__).parent / "corpus" / "zammad"
NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
NO_BODY = "no visible content"  # Zammad's placeholder for an empty body

#: mails allowed to end quarantined (at most 2), with the reason
QUARANTINE_ALLOWED: dict[str, str] = {}

#: mails whose From address or Subject we read differently from Zammad (at most 10)
SENDER_SUBJECT_DIFFERENCES: dict[str, str] = {
    "mail016": "no From field at all; Zammad borrows the Reply-To address, which names "
    "where replies go, not who wrote the mail (RFC 5322 §3.6.2): we report no sender",
    "mail018": "the Subject's encoded-word is unicode-1-1-utf-7, folded across lines; we "
    "decode it ('Übermittlungsstatus'), Zammad leaves '+ANw-bermittlungsstatus' undecoded",
    "mail019": "From is '\"我\" <>', a null address; Zammad borrows the Reply-To address, we "
    "report no sender (as for mail016)",
    "mail027": "the Subject's encoded-word starts with CR LF; a field body holds no line "
    "break (RFC 5322 §2.2), so we drop it where Zammad keeps '\\r\\n' in the subject",
    "mail044": "<Claudia.Shu@yahoo.com.>: the trailing root dot names the same domain, and "
    "we compare addresses without it so it matches the account's address",
    "mail071": "'<power quadrant system@example.com>': a local part with spaces is only an "
    "address when quoted (RFC 5322 §3.4.1); we keep it quoted, so it can be written back into a "
    "mail, where Zammad keeps the unquoted form no mail can carry",
    "mail076": "'\"Millions Lottery Spain transfer\"@example.com>': Zammad keeps the stray '>'; "
    "we keep the quotes a local part with spaces needs (RFC 5322 §3.4.1)",
    "mail087": "'From: Test test@example.com' (no angle brackets): the parser reads the words "
    "before the '@' as one obsolete local part, which we keep quoted (as mail071)",
    "mail117": "an encoded-word inside an addr-spec is literal text (RFC 2047 §5 (3)); "
    "Zammad decodes part of it and so changes the address",
}

#: mails whose Zammad body text is not found in ours, with the reason
BODY_DIFFERENCES: dict[str, str] = {
    "mail017": "multipart/alternative whose plain and HTML parts carry different spam "
    "text; we take the plain part, Zammad the HTML one",
    "mail025": "a uuencoded file in the text body: we move it to the attachments "
    "(rulesets-report.csv), Zammad keeps the encoded lines as the body",
    "mail026": "plain and HTML alternatives differ; we take the plain part",
    "mail043": "newsletter whose plain alternative only links to the HTML version; we take "
    "the plain part",
    "mail072": "the plain alternative lacks a sentence the HTML one has; we take the plain part",
    "mail085": "Zammad's body is '123' from a nested HTML part; ours is the mail's own text",
}
#: share of sampled 10-character pieces of Zammad's body text that must be in ours
BODY_THRESHOLD = 0.5


class _Loader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML is untyped here: SafeLoader is Any
    pass


def _mapping(loader: yaml.SafeLoader, node: yaml.Node) -> dict[Any, Any]:
    assert isinstance(node, yaml.MappingNode)
    mapping: dict[Any, Any] = loader.construct_mapping(node, deep=True)
    return mapping


def _binary(loader: yaml.SafeLoader, node: yaml.Node) -> bytes:
    assert isinstance(node, yaml.ScalarNode)
    return base64.b64decode(str(loader.construct_scalar(node)))


_Loader.add_constructor("!ruby/hash:ActiveSupport::HashWithIndifferentAccess", _mapping)
_Loader.add_constructor("!binary", _binary)


def _names() -> list[str]:
    return sorted(p.stem for p in CORPUS.glob("*.box"))


@functools.lru_cache(maxsize=None)
def zammad_expectations(name: str) -> dict[str, Any]:
    """What Zammad's parser made of ``name`` (the .yml next to the .box)."""
    data = yaml.load((CORPUS / f"{name}.yml").read_bytes(), Loader=_Loader)
    assert isinstance(data, dict)
    return data


@dataclass(frozen=True)
class Row:
    state: str
    from_addr: str | None
    subject: str | None
    text_body: str | None


def _store_and_parse(db: Path, names: list[str]) -> tuple[dict[str, Row], list[str]]:
    """Store ``names`` in a fresh database and parse them; returns rows and the copies."""
    engine = open_engine(f"sqlite:///{db}")
    items = [
        Incoming("eml:tests/corpus/zammad", name, (CORPUS / f"{name}.box").read_bytes(), NOW,
                 ReceivedSource.DATE_HEADER, historical=True)
        for name in names
    ]
    with transaction(engine) as conn:
        results = store(conn, items, NOW)
    copies = [name for name, r in zip(names, results, strict=True) if r.outcome is Stored.COPY]
    assert {r.outcome for r in results} <= {Stored.NEW, Stored.COPY}
    result = run_parse_stage(engine, NOW)
    assert result.done + result.quarantined == len(names) - len(copies)
    with engine.connect() as c:
        rows = {
            r.id: r
            for r in c.execute(
                sa.select(MESSAGE.c.id, MESSAGE.c.state, MESSAGE.c.from_addr, MESSAGE.c.subject,
                          PARSED_MAIL.c.text_body)
                .select_from(MESSAGE.outerjoin(PARSED_MAIL, PARSED_MAIL.c.message_pk == MESSAGE.c.id))
            )
        }
    engine.dispose()
    out = {}
    for name, r in zip(names, results, strict=True):
        if r.outcome is Stored.NEW:
            row = rows[r.message_pk]
            out[name] = Row(row.state, row.from_addr, row.subject, row.text_body)
    return out, copies


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Row]:
    """Every corpus mail stored through the ledger and parsed by the parse stage.

    Some corpus mails are one logical mail to the ledger (same Message-ID,
    From, Date and body; they differ only in MIME headers): a later one is
    filed as a raw copy of the first and never parsed on its own.  So each
    round stores the mails the previous round filed as copies in a fresh
    database, until every mail has been parsed as itself.
    """
    todo = _names()
    parsed: dict[str, Row] = {}
    for round_ in range(3):
        rows, todo = _store_and_parse(tmp_path_factory.mktemp(f"zammad{round_}") / "m.db", todo)
        parsed.update(rows)
        if not todo:
            break
    assert not todo and len(parsed) == 115
    return parsed


def test_corpus_is_complete() -> None:
    assert len(_names()) == 115
    assert (CORPUS / "README.md").is_file() and (CORPUS / ".gitattributes").is_file()


def test_every_mail_is_parsed(stored: dict[str, Row]) -> None:
    assert len(QUARANTINE_ALLOWED) <= 2
    quarantined = {n for n, row in stored.items() if row.state == MessageState.QUARANTINED}
    assert quarantined == set(QUARANTINE_ALLOWED)
    assert {row.state for n, row in stored.items() if n not in quarantined} == {MessageState.PARSED}


def _agrees(name: str, row: Row) -> bool:
    exp = zammad_expectations(name)
    from_ok = (exp.get("from_email") or "").lower() == (row.from_addr or "").lower()
    return from_ok and (exp.get("subject") or "") == (row.subject or "")


def test_sender_and_subject_agree_with_zammad(stored: dict[str, Row]) -> None:
    assert len(SENDER_SUBJECT_DIFFERENCES) <= 10
    differing = {
        name: (zammad_expectations(name).get("from_email"), row.from_addr, zammad_expectations(name).get("subject"), row.subject)
        for name, row in stored.items()
        if not _agrees(name, row)
    }
    unlisted = {n: d for n, d in differing.items() if n not in SENDER_SUBJECT_DIFFERENCES}
    now_agreeing = sorted(set(SENDER_SUBJECT_DIFFERENCES) - set(differing))
    assert not unlisted, f"differ from Zammad (zammad from, ours, zammad subject, ours): {unlisted}"
    assert not now_agreeing, f"listed as differing but agree now; unlist them: {now_agreeing}"


def _words(text: str) -> str:
    return "".join(re.findall(r"\w+", text.lower()))


def _body_share(zammad: str, ours: str, size: int = 10, samples: int = 8) -> float:
    """Share of evenly spaced pieces of Zammad's text (letters and digits only) found in ours."""
    z, o = _words(zammad), _words(ours)
    if len(z) <= size:
        pieces = [z]
    else:
        n = min(samples, len(z) // size)
        step = (len(z) - size) / max(1, n - 1)
        pieces = [z[int(i * step) : int(i * step) + size] for i in range(n)]
    return sum(p in o for p in pieces) / len(pieces)


def test_body_text_agrees_with_zammad(stored: dict[str, Row]) -> None:
    compared = 0
    low: dict[str, float] = {}
    for name, row in stored.items():
        exp = zammad_expectations(name)
        body = str(exp.get("body") or "")
        if exp.get("content_type") == "text/html":
            body = html.unescape(re.sub(r"<[^>]+>", " ", body))
        if not _words(body) or body.strip() == NO_BODY:
            continue
        compared += 1
        share = _body_share(body, row.text_body or "")
        if share < BODY_THRESHOLD:
            low[name] = share
    assert compared >= 95  # the comparison means something only over most of the corpus
    unlisted = {n: s for n, s in low.items() if n not in BODY_DIFFERENCES}
    now_agreeing = sorted(set(BODY_DIFFERENCES) - set(low))
    assert not unlisted, f"body text differs from Zammad's: {unlisted}"
    assert not now_agreeing, f"listed as differing but agree now; unlist them: {now_agreeing}"
    assert len(BODY_DIFFERENCES) <= compared // 10


def test_parse_never_crashes_on_the_corpus() -> None:
    for name in _names():
        parsed = parse_email((CORPUS / f"{name}.box").read_bytes())
        assert parsed.headers.identity


# -- robustness: mutated corpus mails -------------------------------------------------------

_SEEDS = sorted(CORPUS.glob("*.box"))
_INSERTS = [b"\n", b"\r\n", b"\n\n", b"--", b"=?", b"?=", b"=?utf-8?q?", b"begin 644 x\n",
            b"\x1b$B", b"\xff\xfe", b"charset=", b"filename*0*=", b'"', b"<", b">", b"@", b";",
            b"Content-Type: multipart/mixed; boundary=x\n", b"--x\n",
            b"Content-Transfer-Encoding: x-uuencode\n", b"Content-Type: message/rfc822\n\n"]


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(st.sampled_from(_SEEDS)).read_bytes()[:30_000])
    for _ in range(draw(st.integers(1, 8))):
        if not raw:
            break
        at = draw(st.integers(0, len(raw) - 1))
        op = draw(st.integers(0, 3))
        if op == 0:
            raw[at] = draw(st.integers(0, 255))
        elif op == 1:
            del raw[at : at + draw(st.integers(1, 400))]
        elif op == 2:
            raw[at:at] = draw(st.sampled_from(_INSERTS))
        else:
            src = draw(st.integers(0, len(raw) - 1))
            raw[at:at] = raw[src : src + draw(st.integers(1, 400))]
    return bytes(raw)


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_mutated())
def test_parse_raises_nothing_but_message_error_on_mutated_mail(raw: bytes) -> None:
    try:
        parse_email(raw)
    except MessageError:
        pass
