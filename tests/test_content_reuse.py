"""The cutoff reuses what the content-only rules worked out at classification (issue 17).

Whether a mail is a bounce, an auto-reply or machine mail, and what advice
it asks for, depends on the mail alone: the classify stage stores those
results with the classification (rules/content.py) and the cutoff's judge
reads them instead of working them out again.  Proved here on a generated
batch -- every mail of the rules, auto-reply and scope corpora, as sent and
as sent by the directory's representatives -- by judging every pending mail
at the cutoff both ways and comparing every verdict and outcome, and by
closing the cutoff on two copies of the database, one without the stored
results (as a mail classified by an older version), and comparing what each
recorded and queued.
"""

from __future__ import annotations

import shutil
import tomllib
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from email import message_from_bytes
from email.policy import compat32
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from batching import Desk, ny
from helpers import make_mail

from mailcase.core.states import MessageState, ReceivedSource
from mailcase.cutoff.batch import run_due
from mailcase.cutoff.judge import Judge
from mailcase.cutoff.make import open_batch
from mailcase.domain.calendar import BusinessCalendar
from mailcase.domain.db import open_engine, transaction
from mailcase.domain.tables import CLASSIFICATION, MESSAGE, OUTBOX, VERDICT
from mailcase.ingest.ledger import Incoming, store
from mailcase.ingest.stages import run_parse_stage
from mailcase.outbound.effects import EFFECTS
from mailcase.rules import content
from mailcase.rules.classify import run_classify_stage
from mailcase.rules.loading import load_mails

HERE = Path(__file__).parent
ACCOUNTS = 40
AUTH = "mx.support.example; spf=pass smtp.mailfrom={d}; dkim=pass header.d={d}; dmarc=pass header.from={d}"
#: the day the batch arrives, before the 15:30 cutoff
DAY = ny(2026, 3, 3, 9, 45)
CUTOFF_AT = ny(2026, 3, 3, 15, 31)


def _directory() -> str:
    rows = ["account,account_name,standing,pin_required,address,name,role,pin"]
    for i in range(ACCOUNTS):
        standing = "hold" if i % 13 == 5 else "good"
        rows.append(f"A{i:03d},Clinic {i},{standing},no,rep{i}@clinic{i}.example,Rep {i},representative,")
        rows.append(f"A{i:03d},Clinic {i},,,user{i}@clinic{i}.example,User {i},user,")
    return "\n".join(rows) + "\n"


def _as_sent_by(raw: bytes, sender: str) -> bytes | None:
    """The corpus mail with ``sender`` in From and our server's authentication result."""
    msg = message_from_bytes(raw, policy=compat32)
    del msg["From"]
    del msg["Authentication-Results"]
    msg["From"] = sender
    msg["Authentication-Results"] = AUTH.format(d=sender.rpartition("@")[2])
    try:
        return msg.as_bytes()
    except Exception:  # a corpus mail compat32 cannot write back: it is in the batch as sent
        return None


def _corpus(step: int) -> Iterator[bytes]:
    """The corpora's mails (every ``step``-th of them)."""
    mails: list[bytes] = []
    for folder in ("rules_corpus", "autoreply_corpus"):
        mails += [path.read_bytes() for path in sorted((HERE / folder).glob("*.eml"))]
    for name in sorted((HERE / "scope_corpus").glob("*.toml")):
        for i, q in enumerate(tomllib.loads(name.read_text(encoding="utf-8"))["question"]):
            if i % 3 == 0:  # a third of each set: enough of every category
                mails.append(make_mail(i, subject=q.get("subject", ""), body=q.get("body", "")))
    yield from mails[::step]


def _batch(desk: Desk, step: int) -> int:
    """Store the batch over the morning: each corpus mail as sent and as a representative's (or a user's)."""
    items: list[Incoming] = []
    for n, raw in enumerate(_corpus(step)):
        k = n % ACCOUNTS
        who = f"user{k}@clinic{k}.example" if n % 7 == 3 else f"rep{k}@clinic{k}.example"
        at = DAY + timedelta(seconds=37 * n)
        items.append(Incoming("eml:/corpus", f"a{n}", raw, at, ReceivedSource.DATE_HEADER, False))
        mine = _as_sent_by(raw, who)
        if mine is not None:
            items.append(Incoming("eml:/corpus", f"b{n}", mine, at + timedelta(seconds=5), ReceivedSource.DATE_HEADER,
                                  False))
    with transaction(desk.engine) as conn:
        for i in range(0, len(items), 200):
            store(conn, items[i : i + 200], DAY)
    return len(items)


def _classified(tmp: Path, step: int) -> Desk:
    """A database with the batch stored, parsed and classified, the cutoff not yet run."""
    desk = Desk(f"sqlite:///{tmp}/mailcase.db", tmp)
    desk.directory(_directory())
    assert _batch(desk, step) > 900 // step
    desk.clock.at = CUTOFF_AT - timedelta(hours=1)
    run_parse_stage(desk.engine, desk.clock.at, desk.config.hmac_key())
    run_classify_stage(desk.engine, desk.config, desk.clock, EFFECTS)
    desk.engine.dispose()
    return desk


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Desk:
    """A fifth of the corpora (the fast lane)."""
    return _classified(tmp_path_factory.mktemp("sample"), 5)


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> Desk:
    return _classified(tmp_path_factory.mktemp("whole"), 1)


def _pending(conn: Any) -> list[int]:
    return [int(r[0]) for r in conn.execute(
        sa.select(MESSAGE.c.id).where(MESSAGE.c.state == MessageState.PENDING.value).order_by(MESSAGE.c.id))]


def _judge_both_ways(desk: Desk, at_least: int) -> set[str]:
    """Judge every pending mail at the cutoff with the stored results and without; the verdicts seen."""
    cal = BusinessCalendar(desk.config.calendar)
    kinds: set[str] = set()
    with desk.engine.connect() as conn:
        claimed = _pending(conn)
        assert len(claimed) >= at_least
        stored = load_mails(conn, claimed, reread_headers=False)
        # every pending mail carries the results of the rules it reached, under a key that matches
        assert all("auto-reply" in stored[pk].facts and "bounce" in stored[pk].facts for pk in claimed)
        assert sum("scope" in stored[pk].facts for pk in claimed) > len(claimed) // 4
        batch = open_batch(conn, cal, cal.cutoff_for(CUTOFF_AT - timedelta(minutes=2)), CUTOFF_AT, [])
        assert batch is not None
        judge = Judge(conn, desk.config, cal, batch, claimed)
        seen = 0
        for chunk in judge.chunks(claimed):
            for pk, mail in chunk:
                before = dict(mail.facts)
                reused = judge.judge(pk, mail)
                # nothing was worked out again: the stored results answered
                assert mail.facts == before, pk
                fresh_mail = replace(mail, facts={})
                fresh = judge.judge(pk, fresh_mail)
                assert reused == fresh, pk  # every verdict, its reason, the outcome
                assert fresh_mail.facts == before, pk
                kinds.update(v.name for v in fresh.verdicts)
                seen += 1
        assert seen == len(claimed)
    desk.engine.dispose()
    return kinds


def _copy(desk: Desk, tmp_path: Path, name: str) -> str:
    src = desk.config.database_url.removeprefix("sqlite:///")
    dst = tmp_path / f"{name}.db"
    desk.engine.dispose()
    shutil.copyfile(src, dst)
    return f"sqlite:///{dst}"


def _recorded(url: str) -> tuple[list[Any], list[Any], list[Any]]:
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            verdicts = conn.execute(sa.select(VERDICT.c.message_pk, VERDICT.c.phase, VERDICT.c.seq, VERDICT.c.rule,
                                              VERDICT.c.name, VERDICT.c.reason, VERDICT.c.disposition)
                                    .order_by(VERDICT.c.message_pk, VERDICT.c.phase, VERDICT.c.seq)).all()
            columns = [c for c in CLASSIFICATION.c if c.name != "content"]
            classifications = conn.execute(sa.select(*columns).order_by(CLASSIFICATION.c.message_pk)).all()
            outbox = conn.execute(sa.select(OUTBOX.c.kind, OUTBOX.c.to_addr, OUTBOX.c.case_id, OUTBOX.c.subject)
                                  .order_by(OUTBOX.c.id)).all()
        return list(verdicts), list(classifications), list(outbox)
    finally:
        engine.dispose()


def _cutoff_both_ways(desk: Desk, tmp_path: Path) -> None:
    """Close the cutoff on a copy with the stored results and on one without: the same recorded."""
    with_url, without_url = _copy(desk, tmp_path, "with"), _copy(desk, tmp_path, "without")
    engine = open_engine(without_url)
    with transaction(engine) as conn:
        # as if every mail had been classified by a version that stored nothing
        assert conn.execute(sa.update(CLASSIFICATION).values(content=None)).rowcount > 100
    engine.dispose()
    for url in (with_url, without_url):
        engine = open_engine(url)
        results = run_due(engine, desk.config, _Clock(CUTOFF_AT)).results  # the engine names the copy
        engine.dispose()
        assert len(results) == 1 and results[0].mails >= 40
    with_rows, without_rows = _recorded(with_url), _recorded(without_url)
    assert len(with_rows[0]) > 300
    assert with_rows[0] == without_rows[0]  # every verdict of classification and cutoff
    assert with_rows[1] == without_rows[1]  # every outcome
    assert with_rows[2] == without_rows[2] and with_rows[2]  # every notice and acknowledgement
    # the cutoff stores the results again (a mail judged at a later cutoff too reads them)
    engine = open_engine(without_url)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(CLASSIFICATION)
                            .where(CLASSIFICATION.c.content.is_not(None))).scalar_one() > 100
    engine.dispose()


class _Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


def test_the_cutoff_judges_every_mail_the_same_with_the_stored_results(sample: Desk) -> None:
    kinds = _judge_both_ways(sample, 40)
    assert {"automatic", "authenticated", "representative"} <= kinds, kinds


def test_a_cutoff_with_and_without_the_stored_results_records_the_same(sample: Desk, tmp_path: Path) -> None:
    _cutoff_both_ways(sample, tmp_path)


def test_the_whole_corpus_is_judged_the_same_at_the_cutoff_both_ways(whole: Desk, tmp_path: Path) -> None:
    kinds = _judge_both_ways(whole, 200)
    assert {"automatic", "no-auto-reply", "out-of-scope", "authenticated", "unknown-sender", "not-authorized",
            "account-on-hold", "severity-keyword"} <= kinds, kinds
    _cutoff_both_ways(whole, tmp_path)


def test_results_of_other_code_or_of_another_mail_are_not_used(sample: Desk) -> None:
    with sample.engine.connect() as conn:
        pk, data = conn.execute(sa.select(CLASSIFICATION.c.message_pk, CLASSIFICATION.c.content)
                                .where(CLASSIFICATION.c.content.is_not(None)).limit(1)).one()
        other_pk = conn.execute(sa.select(CLASSIFICATION.c.message_pk).where(
            CLASSIFICATION.c.message_pk != pk, CLASSIFICATION.c.content.is_not(None)).limit(1)).scalar_one()
        mails = load_mails(conn, [pk, other_pk], reread_headers=False)
    mail, other = mails[pk], mails[other_pk]
    assert content.content_from_json(data, mail) == data["facts"]
    assert content.content_from_json(data, other) == {}  # another mail's results
    assert content.content_from_json({**data, "key": "0" * 64}, mail) == {}  # another version's
    assert content.content_from_json(None, mail) == {}
    assert content.content_from_json({"key": data["key"]}, mail) == {}
    # a result the database could not hold is not stored: the cutoff works it out
    odd = replace(mail, facts={"machine": "a machine's subject '\udc80'"})
    assert content.content_json(odd) is None
    assert content.content_json(replace(mail, facts={})) is None
    sample.engine.dispose()
