"""Hostile input (issue 8): bounded memory and time, and an end with a reason.

Every case here must end *stored* (parsed, classified, waiting for a cutoff
or suppressed), *quarantined* (with the stage and the reason) or *held* for
review -- and never make a stage raise.

The large cases run in a child process (:data:`CHILD`): it reads the mail
from a file, takes its peak RSS once its libraries are loaded and the mail
is in memory (``base``), then stores the mail with ``ledger.store``, runs
the parse and classify stages on SQLite, and reports the peak RSS, the time
of each stage and the outcome.  The peak is the kernel's ``VmHWM``, not
``ru_maxrss``: on Linux a child's ``ru_maxrss`` starts at its parent's peak
(here, pytest's, holding the generated 50 MB mails), so it would hide
everything under a few hundred megabytes.  The bounds are
generous but meaningful: before the fixes of issue 8 a 50 MB mail cost the
parser 7-9 times its size, 25 MB of header lines 1.4 GB and 15 s, 20,000
addresses in a To field 18 s.  ``pytest -s`` prints the figures.

The cases with small mails (charsets, NUL bytes, injections) run in this
process on both databases: PostgreSQL refuses NUL in text, and neither
database stores a lone surrogate.
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import json
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from batching import AUTH, Desk, ny
from helpers import ImapAccount, body_text, config, make_mail

from mailcase.core.clock import FixedClock
from mailcase.core.states import ReceivedSource
from mailcase.domain.db import open_engine, transaction
from mailcase.domain.tables import MESSAGE, PARSED_MAIL, QUARANTINE, RAW_COPY, VERDICT
from mailcase.ingest.ledger import Incoming, store
from mailcase.ingest.stages import run_parse_stage
from mailcase.mail.header_info import MAX_SUBJECT_CHARS, read_headers
from mailcase.mail.parse.limits import MAX_ATTACHMENTS, MAX_BODY_CHARS, MAX_DEPTH
from mailcase.outbound.effects import EFFECTS
from mailcase.rules.classify import run_classify_stage

TESTS = Path(__file__).resolve().parent
NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
MB = 1024 * 1024
HDR = (b"From: Mallory <mallory@evil.example>\r\nTo: support@support.example\r\n"
       b"Date: Mon, 23 Nov 2026 08:00:00 -0500\r\n")


def _mail(msgid: bytes, headers: bytes, body: bytes) -> bytes:
    return HDR + b"Message-ID: <" + msgid + b"@evil.example>\r\n" + headers + b"\r\n" + body


# -- the hostile mails ----------------------------------------------------------------------


def big_attachment(size: int = 50 * MB) -> tuple[bytes, int, str]:
    """A 50 MB mail: a line of text and one base64 attachment.  (mail, file size, its sha256)"""
    data = random.Random(8).randbytes(size * 3 // 4)
    encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
    raw = _mail(b"big", b"Subject: the log you asked for\r\nMIME-Version: 1.0\r\n"
                b"Content-Type: multipart/mixed; boundary=B\r\n",
                b"--B\r\nContent-Type: text/plain\r\n\r\nsee the attachment\r\n--B\r\n"
                b"Content-Type: application/octet-stream; name=big.bin\r\n"
                b"Content-Disposition: attachment; filename=big.bin\r\n"
                b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"--B--\r\n")
    return raw, len(data), hashlib.sha256(data).hexdigest()


def big_text(size: int = 50 * MB) -> bytes:
    line = b"All work and no play makes Jack a dull boy. " * 2 + b"\r\n"
    return _mail(b"text", b"Subject: a long story\r\nContent-Type: text/plain; charset=utf-8\r\n",
                 line * (size // len(line)))


def many_attachments(count: int = 10_000) -> bytes:
    parts = [b"--B\r\nContent-Type: text/plain\r\n\r\nten thousand files\r\n"]
    parts += [b"--B\r\nContent-Type: application/octet-stream; name=f%d.bin\r\nContent-Disposition: "
              b"attachment; filename=f%d.bin\r\nContent-Transfer-Encoding: base64\r\n\r\nQUJD\r\n" % (i, i)
              for i in range(count)]
    return _mail(b"many", b"Subject: many files\r\nMIME-Version: 1.0\r\n"
                 b"Content-Type: multipart/mixed; boundary=B\r\n", b"".join(parts) + b"--B--\r\n")


def nested(depth: int) -> bytes:
    inner = b"Content-Type: text/plain\r\n\r\nthe innermost text\r\n"
    for d in range(depth - 1, -1, -1):
        inner = (b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (d, d)
                 + inner + b"\r\n--b%d--\r\n" % d)
    return HDR + b"Message-ID: <nested%d@evil.example>\r\nSubject: nested\r\nMIME-Version: 1.0\r\n" % depth + inner


def long_header_line(size: int = MB) -> bytes:
    return _mail(b"longline", b"Subject: " + b"A" * size + b"\r\n", b"body\r\n")


def many_header_lines(count: int = 100_000) -> bytes:
    return _mail(b"manylines", b"Subject: many header lines\r\n"
                 + b"".join(b"X-Filler-%d: v\r\n" % i for i in range(count)), b"the body\r\n")


def header_line_flood(size: int = 25 * MB) -> bytes:
    """Found in issue 8: 8 million 3-byte header lines (stdlib parser: 15 s, 1.4 GB)."""
    return _mail(b"hflood", b"Subject: header flood\r\n" + b"X:\n" * (size // 3), b"the body\r\n")


def empty_lines(size: int = 25 * MB) -> bytes:
    """Found in issue 8: a body of 25 million empty lines (stdlib parser: 6 s, 390 MB)."""
    return _mail(b"empty", b"Subject: empty lines\r\nContent-Type: text/plain\r\n", b"\n" * size)


def tiny_parts(count: int = 500_000) -> bytes:
    """Found in issue 8: half a million empty parts in 5 MB (the parser builds one object each)."""
    return _mail(b"tiny", b"Subject: tiny parts\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; "
                 b"boundary=B\r\n", b"--B\r\n\r\nx\r\n" * count + b"--B--\r\n")


def many_recipients(count: int = 20_000) -> bytes:
    """Found in issue 8: the stdlib address parser is quadratic (20,000 addresses: 18 s;
    an address of 100,000 dots: 62 s)."""
    to = b", ".join(b"User %d <u%d@x.example>" % (i, i) for i in range(count))
    return (b"From: mallory@evil.example\r\nTo: " + to + b"\r\nCc: a" + b"." * 100_000 + b"@b.example\r\n"
            b"Reply-To: " + b"(" * 3000 + b"x@y.example\r\nDate: Mon, 23 Nov 2026 08:00:00 -0500\r\n"
            b"Message-ID: <rcpt@evil.example>\r\nSubject: many recipients\r\n\r\nbody\r\n")


def received_dates(count: int = 4_000) -> bytes:
    """Found in issue 8: 4,000 Received fields with long unparseable dates (dateutil: 15 s)."""
    received = b"".join(b"Received: from a%d by b; " % i + b"1 2 3 " * 300 + b"\r\n" for i in range(count))
    return received + _mail(b"received", b"Subject: long trail\r\n", b"body\r\n")


# -- the child -------------------------------------------------------------------------------

CHILD = r"""
import json, resource, sys, time
tests, raw_path, tmp, mailbox = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
sys.path.insert(0, tests)
from datetime import UTC, datetime
from pathlib import Path
import sqlalchemy as sa
from helpers import config
from mailcase.domain.tables import CLASSIFICATION, VERDICT
from mailcase.outbound.effects import EFFECTS
from mailcase.rules.classify import run_classify_stage
from mailcase.core.clock import FixedClock
from mailcase.domain.db import open_engine, transaction
from mailcase.ingest.ledger import MESSAGE, QUARANTINE, RAW_COPY, Incoming, store
from mailcase.ingest.stages import PARSED_MAIL, run_parse_stage
from mailcase.core.states import ReceivedSource
import mailcase.mail.parse.message, mailcase.rules.chain, mailparser, lxml.html, mailparser_reply  # loaded before base

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
url = f"sqlite:///{tmp}/mailcase.db"
boxes = json.loads(mailbox)
cfg = config(url, Path(tmp), boxes)
engine = open_engine(url)
# one mail, or a folder of them
paths = [] if raw_path == "-" else sorted(Path(raw_path).iterdir()) if Path(raw_path).is_dir() else [Path(raw_path)]
raws = [p.read_bytes() for p in paths]


def peak_rss():
    # VmHWM: the high-water mark of this process's memory since exec.  ru_maxrss
    # is not: Linux carries the forking parent's peak (pytest's) into it
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


base = peak_rss()
times = {}
t = time.perf_counter()
if boxes:
    from mailcase.ingest.fetch import sync_imap
    sync_imap(engine, cfg.mailboxes[0], NOW)
else:
    with transaction(engine) as conn:
        store(conn, [Incoming("eml:/hostile", p.name, raw, NOW, ReceivedSource.DATE_HEADER, False)
                     for p, raw in zip(paths, raws)], NOW)
times["store"] = time.perf_counter() - t
del raws
t = time.perf_counter()
run_parse_stage(engine, NOW, cfg.hmac_key())
times["parse"] = time.perf_counter() - t
t = time.perf_counter()
run_classify_stage(engine, cfg, FixedClock(NOW), EFFECTS)
times["classify"] = time.perf_counter() - t
peak = peak_rss()
if len(paths) > 1:
    with engine.connect() as c:
        rows = c.execute(sa.select(RAW_COPY.c.source_key, MESSAGE.c.state, QUARANTINE.c.stage, QUARANTINE.c.error)
                         .join(MESSAGE, MESSAGE.c.id == RAW_COPY.c.message_pk)
                         .outerjoin(QUARANTINE, QUARANTINE.c.message_pk == MESSAGE.c.id)).all()
    print(json.dumps({"base": base, "peak": peak, "times": times, "states": [list(r) for r in rows]}))
    sys.exit(0)
with engine.connect() as c:
    m = c.execute(sa.select(MESSAGE.c.id, MESSAGE.c.state, MESSAGE.c.subject, MESSAGE.c.from_addr)).one()
    q = c.execute(sa.select(QUARANTINE.c.stage, QUARANTINE.c.error)).all()
    copy = c.execute(sa.select(RAW_COPY.c.size, RAW_COPY.c.truncated_from)).one()
    p = c.execute(sa.select(PARSED_MAIL.c.text_body, PARSED_MAIL.c.attachments, PARSED_MAIL.c.defects,
                            PARSED_MAIL.c.parser)).first()
    d = c.execute(sa.select(CLASSIFICATION.c.disposition)).scalar()
    v = c.execute(sa.select(VERDICT.c.name, VERDICT.c.reason).order_by(VERDICT.c.seq)).all()
print(json.dumps({
    "base": base, "peak": peak, "times": times, "state": m.state, "subject_chars": len(m.subject or ""),
    "from": m.from_addr, "quarantine": [list(r) for r in q], "copy_size": copy.size,
    "truncated_from": copy.truncated_from, "body_chars": len(p.text_body) if p else None,
    "body_head": p.text_body[:80] if p else None,
    "attachments": len(p.attachments) if p else None,
    "first_attachments": p.attachments[:2] if p else None, "defects": p.defects if p else None,
    "parser": p.parser if p else None, "disposition": d, "verdicts": [list(r) for r in v],
}))
"""


def measure(name: str, raw: bytes | None, tmp: Path, mailbox: dict[str, Any] | None = None,
            size: int | None = None) -> dict[str, Any]:
    """Store, parse and classify ``raw`` (or sync ``mailbox``, holding a mail of ``size``) in a child."""
    path = tmp / "hostile.eml"
    if raw is not None:
        path.write_bytes(raw)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(TESTS), str(path) if raw is not None else "-", str(tmp),
         json.dumps([mailbox] if mailbox else [])],
        capture_output=True, text=True, timeout=300,
    )
    wall = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["size"] = len(raw) if raw is not None else size
    out["wall"] = wall
    work = sum(out["times"].values())
    print(f"\n{name}: {out['size'] or 0:,} bytes; store {out['times']['store']:.2f} s, parse "
          f"{out['times']['parse']:.2f} s, classify {out['times']['classify']:.2f} s (total {work:.2f} s); "
          f"peak RSS {out['peak'] / MB:.0f} MB = base {out['base'] / MB:.0f} MB + "
          f"{(out['peak'] - out['base']) / MB:.0f} MB; {out['state']}"
          f"{' (' + out['quarantine'][0][0] + ': ' + out['quarantine'][0][1][:70] + ')' if out['quarantine'] else ''}")
    return out


def bounded(out: dict[str, Any], *, per_byte: float, extra_mb: int, seconds: float) -> None:
    """Peak RSS within ``per_byte`` x the mail + ``extra_mb`` over the base; time within ``seconds``."""
    grown = out["peak"] - out["base"]
    limit = per_byte * (out["size"] or 0) + extra_mb * MB
    assert grown <= limit, f"peak RSS grew {grown / MB:.0f} MB, bound {limit / MB:.0f} MB"
    work = sum(out["times"].values())
    assert work <= seconds, f"took {work:.1f} s, bound {seconds} s ({out['times']})"


def finished(out: dict[str, Any]) -> None:
    """Stored and classified with verdicts, or quarantined with a reason."""
    if out["state"] == "quarantined":
        assert out["quarantine"] and out["quarantine"][0][1]
        return
    assert out["state"] in ("pending", "classified", "held"), out["state"]
    assert out["verdicts"] and all(reason for _, reason in out["verdicts"])


# -- the large cases, each in a child ---------------------------------------------------------


def test_50_mb_mail_is_parsed_in_bounded_memory(tmp_path: Path) -> None:
    raw, size, sha = big_attachment()
    out = measure("50 MB mail (one base64 attachment)", raw, tmp_path)
    finished(out)
    # the attachment is listed with the size and hash of the file, read by streaming
    att = [a for a in out["first_attachments"] if a["name"] == "big.bin"]
    assert att and att[0]["size"] == size and att[0]["sha256"] == sha
    assert out["body_head"].startswith("see the attachment")
    # store + parse + classify; the SQLite blob and its reads are most of it
    bounded(out, per_byte=3.5, extra_mb=60, seconds=20)


def test_50_mb_text_is_cut_not_read_whole(tmp_path: Path) -> None:
    out = measure("50 MB text body", big_text(), tmp_path)
    finished(out)
    assert out["body_chars"] == MAX_BODY_CHARS
    assert any("truncated" in d for d in out["defects"])
    bounded(out, per_byte=3.5, extra_mb=150, seconds=20)


def test_ten_thousand_attachments(tmp_path: Path) -> None:
    out = measure("10,000 attachments", many_attachments(), tmp_path)
    finished(out)
    assert out["attachments"] == MAX_ATTACHMENTS + 1  # and "(more not listed)"
    assert f"more than {MAX_ATTACHMENTS} attachments; rest not listed" in out["defects"]
    assert out["body_head"].startswith("ten thousand files")
    bounded(out, per_byte=40, extra_mb=80, seconds=10)


def test_200_nested_multiparts(tmp_path: Path) -> None:
    out = measure("200-level nested multiparts", nested(200), tmp_path)
    finished(out)
    assert f"MIME nesting deeper than {MAX_DEPTH}; rest not read" in out["defects"]
    bounded(out, per_byte=0, extra_mb=40, seconds=5)


def test_one_megabyte_header_line(tmp_path: Path) -> None:
    out = measure("1 MB Subject line", long_header_line(), tmp_path)
    finished(out)
    assert out["subject_chars"] == MAX_SUBJECT_CHARS
    bounded(out, per_byte=20, extra_mb=40, seconds=5)


def test_100_000_header_lines(tmp_path: Path) -> None:
    out = measure("100,000 header lines", many_header_lines(), tmp_path)
    finished(out)
    assert out["body_head"] == "the body"  # the skipped header lines are not the body
    assert "more than 5000 header fields; rest ignored" in out["defects"]
    bounded(out, per_byte=5, extra_mb=30, seconds=5)  # before issue 8: 54 MB


@pytest.mark.parametrize("make", [header_line_flood, empty_lines, tiny_parts, many_recipients],
                         ids=lambda f: f.__name__)
def test_found_in_issue_8(make: Any, tmp_path: Path) -> None:
    raw = make()
    out = measure(make.__name__, raw, tmp_path)
    finished(out)
    bounded(out, per_byte=3, extra_mb=80, seconds=10)


def test_received_time_of_a_file_with_a_long_trail_of_received_fields() -> None:
    """Maildir, mbox and .eml imports date a mail by its Received fields (sources.py)."""
    from mailcase.ingest.sources import received_at

    raw = received_dates()
    started = time.perf_counter()
    at, how, _ = received_at(raw, 1_700_000_000.0, ())
    took = time.perf_counter() - started
    print(f"\nreceived time of 4,000 unparseable Received fields: {took:.2f} s")
    assert took < 2  # 15 s before issue 8
    assert at is not None and how.value == "date-header"  # their dates are junk: Date: it is


def test_nesting_the_parser_cannot_follow_is_quarantined_with_the_reason(tmp_path: Path) -> None:
    # the standard library's parser recurses once a level: past ~900 it cannot
    out = measure("2,000-level nested multiparts", nested(2000), tmp_path)
    assert out["state"] == "quarantined"
    assert out["quarantine"][0][0] == "parse" and "RecursionError" in out["quarantine"][0][1]
    bounded(out, per_byte=0, extra_mb=60, seconds=10)


def test_50_mb_mail_by_imap_keeps_headers_and_stays_on_the_server(
    imap: ImapAccount, tmp_path: Path
) -> None:
    raw, _, _ = big_attachment()
    imap.append(raw)
    box = imap.mailbox_config(post_action="move", move_to="Done")  # default max_message_bytes
    out = measure("50 MB mail by IMAP", None, tmp_path, box, size=len(raw))
    assert out["state"] == "quarantined"
    assert out["quarantine"][0][0] == "fetch"
    assert f"message is {len(raw)} bytes, over max_message_bytes {25 * MB}" in out["quarantine"][0][1]
    assert out["truncated_from"] == len(raw) and out["copy_size"] < 2000
    assert out["subject_chars"] == len("the log you asked for")  # the headers were kept
    assert imap.uids("INBOX") == [1]  # left on the server, not moved
    bounded(out, per_byte=0.2, extra_mb=40, seconds=10)


# -- small hostile mails, in this process, on both databases -------------------------------------

SMALL: dict[str, bytes] = {
    # NUL bytes everywhere: in header names and values, ids, addresses, part headers, the body
    "nul": (b"From: Mal\x00lory <mal\x00lory@evil.example>\r\nTo: support@support.example, x\x00y@z.example\r\n"
            b"Date: Mon, 23 Nov 2026 08:00:00 -0500\r\nMessage-ID: <nul\x00id@evil.example>\r\n"
            b"In-Reply-To: <a\x00b@x.example>\r\nReferences: <c\x00d@x.example>\r\n"
            b"Subject: hi\x00there =?utf-8?q?enc=00oded?=\r\nAuto-Submitted: no\x00pe\r\nX-Nul\x00Name: v\r\n"
            b"Reply-To: =?utf-8?q?R=00?= <r@x.example>\r\nX-Auto-Response-Suppress: O\x00OF\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B\x00B\"\r\n\r\n"
            b"--B\x00B\r\nContent-Type: text/pl\x00ain; charset=\"utf\x00-8\"\r\n\r\nbody\x00text\r\n"
            b"--B\x00B\r\nContent-Type: application/x\x00y; name=\"f\x00.txt\"\r\n"
            b"Content-Disposition: attachment; filename=\"a\x00b.bin\"\r\n\r\nda\x00ta\r\n--B\x00B--\r\n"),
    "nul-body": _mail(b"nulbody", b"Subject: nul body\r\nContent-Type: text/plain; charset=utf-16\r\n",
                      b"\x00h\x00i\x00\r\x00\n" * 1000 + b"\x00\x00\x00"),
    # UTF-7 and UTF-16 decode to lone surrogates, which neither database stores
    "surrogates": (b"From: =?utf-7?q?+2D0-?= <m@evil.example>\r\nTo: support@support.example\r\n"
                   b"Date: Mon, 23 Nov 2026 08:00:00 -0500\r\nMessage-ID: <u7@evil.example>\r\n"
                   b"Subject: =?utf-7?q?hi+2D0-?= =?utf-16-le?b?AdgA?=\r\nMIME-Version: 1.0\r\n"
                   b"Content-Type: multipart/mixed; boundary=S\r\n\r\n"
                   b"--S\r\nContent-Type: text/plain; charset=utf-7\r\n\r\nbody +2D0- x\r\n"
                   b"--S\r\nContent-Type: text/plain; charset=utf-16-le\r\n\r\n\x01\xd8a\x00\r\n"
                   b"--S\r\nContent-Type: application/pdf; name*=utf-7''%2B2D0-.pdf\r\n\r\nx\r\n--S--\r\n"),
    # invalid and unknown charsets: in encoded-words, in bodies, in parameters; base64 and QP garbage
    "charsets": (b"From: =?x-bogus?q?Mal=FFlory?= <m@evil.example>\r\nTo: support@support.example\r\n"
                 b"Date: Mon, 23 Nov 2026 08:00:00 -0500\r\nMessage-ID: <cs@evil.example>\r\n"
                 b"Subject: =?unicode_escape?q?\\x41?= =?rot13?b?abc?= =?utf-8?b?!!!garbage$$?= "
                 b"=?utf-32?b?AAAA//8=?= =?idna?q?xn--?= =?hex?q?41?= =?zlib?b?eJw=?= =?base64?b?QUJD?= "
                 b"=?mbcs?q?a?= =?x-\xff\xfe?q?a?= =?undefined?q?a?= =?" + b"a" * 5000 + b"?q?b?= raw \xe9\xff\xfe\r\n"
                 b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B; charset=zlib_codec\r\n\r\n"
                 b"--B\r\nContent-Type: text/plain; charset=unicode-escape\r\nContent-Transfer-Encoding: "
                 b"quoted-printable\r\n\r\n=ZZ=\r\n=4\r\n=\xff\\u0041\\N{LATIN SMALL LETTER A}\r\n"
                 b"--B\r\nContent-Type: text/plain; charset=rot13\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                 b"!!!!not base64 at all====\r\nQUJD=QUJD\r\n\xff\xfe\r\nQ\r\n"
                 b"--B\r\nContent-Type: text/html; charset=hex\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n"
                 b"begin 644 x\r\nzzzz\r\nend\r\n"
                 b"--B\r\nContent-Type: text/plain; charset*=utf-8''%FF%FE; format=flowed\r\n\r\n\xfe\xff\x00a\r\n"
                 b"--B\r\nContent-Type: text/plain; charset=\"utf-16\"\r\nContent-Transfer-Encoding: base64\r\n\r\n/v8A\r\n"
                 b"--B\r\nContent-Type: text/plain; charset=iso-2022-jp\r\n\r\n\x1b$B\x7f\x7f\x1b(B\x1b$(Q!!\r\n"
                 b"--B\r\nContent-Type: text/plain; charset=" + b"x" * 100_000 + b"\r\n\r\nlong label\r\n"
                 b"--B\r\nContent-Type: application/octet-stream; name*=bogus''%FF%00%41\r\n"
                 b"Content-Transfer-Encoding: base64\r\n\r\n@@@@\r\n--B--\r\n"),
    # header injection: encoded and bare CR/LF in Subject and display names
    "header-injection": (b"From: =?utf-8?q?Alice=0D=0ABcc:_evil@x.example?= <alice@acme.example>\r\n"
                         b"To: support@support.example\r\nDate: Mon, 23 Nov 2026 08:00:00 -0500\r\n"
                         b"Message-ID: <inj@acme.example>\r\n"
                         b"Subject: =?utf-8?q?hi=0D=0ABcc:_evil@x.example?= and\rBcc: bare@x.example\r\n"
                         b"Content-Type: text/plain\r\n\r\nhello\r\n"),
    # template injection: literal text, never template source
    "template-injection": (b"From: \"{{ 7*7 }} {% for x in y %}\" <alice@acme.example>\r\n"
                           b"To: support@support.example\r\nDate: Mon, 23 Nov 2026 08:00:00 -0500\r\n"
                           b"Message-ID: <tpl@acme.example>\r\nSubject: {{ ''.__class__ }} {% for %}\r\n"
                           b"Content-Type: text/plain\r\n\r\n{{ 7*7 }} {% for x in range(3) %}x{% endfor %}\r\n"),
    # a delivery status notification with NUL in its fields (its recipient goes in a table)
    "dsn-nul": (b"From: MAILER-DAEMON@mx.example\r\nTo: support@support.example\r\n"
                b"Date: Mon, 23 Nov 2026 08:00:00 -0500\r\nMessage-ID: <dsn@mx.example>\r\n"
                b"Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
                b"Content-Type: multipart/report; report-type=delivery-status; boundary=R\r\n\r\n"
                b"--R\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--R\r\nContent-Type: message/delivery-status\r\n\r\n"
                b"Reporting-MTA: dns; mx.example\r\n\r\nFinal-Recipient: rfc822; vic\x00tim@x.example\r\n"
                b"Action: failed\r\nStatus: 5.1.1\r\n\r\n--R--\r\n"),
    "big-lists": many_recipients(3000) + b"",
}


def test_small_hostile_mails_end_stored_on_both_databases(db_url: str, tmp_path: Path) -> None:
    cfg = config(db_url, tmp_path)
    engine = open_engine(db_url)
    with transaction(engine) as conn:
        store(conn, [Incoming("eml:/hostile", name, raw, NOW, ReceivedSource.DATE_HEADER, False)
                     for name, raw in SMALL.items()], NOW)
    started = time.perf_counter()
    run_parse_stage(engine, NOW, cfg.hmac_key())
    run_classify_stage(engine, cfg, FixedClock(NOW), EFFECTS)
    assert time.perf_counter() - started < 20
    with engine.connect() as c:
        rows = c.execute(
            sa.select(RAW_COPY.c.source_key, MESSAGE.c.state, MESSAGE.c.subject, MESSAGE.c.from_name,
                      MESSAGE.c.message_id, PARSED_MAIL.c.text_body, QUARANTINE.c.stage, QUARANTINE.c.error)
            .join(MESSAGE, MESSAGE.c.id == RAW_COPY.c.message_pk)
            .outerjoin(PARSED_MAIL, PARSED_MAIL.c.message_pk == MESSAGE.c.id)
            .outerjoin(QUARANTINE, QUARANTINE.c.message_pk == MESSAGE.c.id)
        ).all()
    outcome = {r.source_key: r for r in rows}
    assert set(outcome) == set(SMALL)
    for name, r in outcome.items():
        if name == "dsn-nul" and r.state == "quarantined":
            # PostgreSQL refuses the NUL in the bounce row (rules/bounce.py, see
            # test_bounce_with_nul_is_recorded_on_postgresql): quarantined, with the reason
            assert r.stage == "classify" and "NUL" in r.error
            continue
        assert r.state in ("pending", "classified"), (name, r.state, r.error)
        for text in (r.subject, r.from_name, r.message_id, r.text_body):
            assert "\x00" not in (text or "") and "\r" not in (text or "").replace("\r\n", "")
    # the boundary lost its NUL with the header, the delimiter lines kept theirs:
    # the body is read as text (with a defect), all of it, without the NULs
    assert "bodytext" in outcome["nul"].text_body
    assert outcome["nul"].message_id == "<nulid@evil.example>"  # NUL is dropped from the header
    assert read_headers(SMALL["nul"]).from_strict is False  # but a From with NUL is never trusted
    assert outcome["surrogates"].subject == "hi\ufffd\ufffd"
    assert "\ufffd" in outcome["surrogates"].text_body
    assert outcome["header-injection"].subject == "hi Bcc: evil@x.example and Bcc: bare@x.example"
    assert outcome["header-injection"].from_name == "Alice Bcc: evil@x.example"
    assert outcome["template-injection"].subject == "{{ ''.__class__ }} {% for %}"
    assert outcome["template-injection"].text_body.startswith("{{ 7*7 }} {% for x in range(3) %}")


def test_small_hostile_mails_in_bounded_memory_and_time(tmp_path: Path) -> None:
    folder = tmp_path / "small"
    folder.mkdir()
    for name, raw in SMALL.items():
        (folder / name).write_bytes(raw)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(TESTS), str(folder), str(tmp_path), "[]"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["size"] = sum(len(r) for r in SMALL.values())
    work = sum(out["times"].values())
    print(f"\n{len(SMALL)} small hostile mails (NUL, surrogates, charsets, injections, DSN, big lists): "
          f"{out['size']:,} bytes; {work:.2f} s; peak RSS +{(out['peak'] - out['base']) / MB:.0f} MB")
    assert sorted(key for key, *_ in out["states"]) == sorted(SMALL)
    assert all(state in ("pending", "classified") for _, state, _, _ in out["states"]), out["states"]
    bounded(out, per_byte=20, extra_mb=30, seconds=10)


def test_every_charset_label_decodes_any_bytes() -> None:
    """Every codec name and alias Python knows, as a body's label, an encoded-word's,
    and a header's declared charset: text comes back, never an exception or a surrogate."""
    import encodings.aliases

    from mailcase.mail.charsets import decode_8bit_header, decode_encoded_words, decode_text

    labels = sorted(set(encodings.aliases.aliases) | set(encodings.aliases.aliases.values())
                    | {"x-bogus", "unknown-8bit", "", " ", "utf-8\x00", "\udcff", "a" * 300})
    samples = [b"", b"\x00", b"\xff\xfe\x00", b"+2D0-", b"\x1b$B\x7f", b"\xed\xa0\x80", bytes(range(256)),
               "Grüße €".encode("utf-8"), b"=?=?\xc3"]
    for label in labels:
        for data in samples:
            for text in (decode_text(data, label), decode_8bit_header(data, [label, "utf-16"]),
                         decode_encoded_words(f"=?{label}?b?{base64.b64encode(data).decode()}?= x")):
                assert isinstance(text, str)
                text.encode("utf-8")  # no lone surrogate


# -- 5,000 mails from one sender within an hour ------------------------------------------------


def test_5000_mails_from_one_sender_are_held_by_the_flood_rule(tmp_path: Path) -> None:
    desk = Desk(f"sqlite:///{tmp_path}/mailcase.db", tmp_path)
    desk.directory()
    start = ny(2026, 11, 23, 7, 0)  # Monday, before the 09:30 cutoff
    name, value = AUTH
    items = []
    for i in range(5000):
        at = start + timedelta(seconds=i * 3600 / 5000)
        raw = make_mail(i, sender="alice@acme.example", date=at, msgid=f"<flood{i}@acme.example>",
                        headers={name: value.format(d="acme.example")})
        items.append(Incoming("eml:/flood", f"f{i}", raw, at, ReceivedSource.DATE_HEADER, False))
    with transaction(desk.engine) as conn:
        store(conn, items, start + timedelta(hours=1))
    now = start + timedelta(hours=1, minutes=1)
    desk.clock.at = now
    run_parse_stage(desk.engine, now, desk.config.hmac_key())
    started = time.perf_counter()
    result = run_classify_stage(desk.engine, desk.config, desk.clock, EFFECTS)
    took = time.perf_counter() - started
    print(f"\nclassifying 5,000 mails from one sender: {took:.2f} s")
    assert (result.done, result.quarantined) == (5000, 0)
    assert took < 30  # 4 s here (flood counting is a bisect per mail)
    states = dict(desk.rows(sa.select(MESSAGE.c.state, sa.func.count()).group_by(MESSAGE.c.state)))
    # flood_sender_count = 50 per 30 minutes: the first 50 are requests, every later one is held
    assert states == {"pending": 50, "held": 4950}
    reasons = desk.rows(sa.select(VERDICT.c.name, VERDICT.c.reason).where(VERDICT.c.rule == "floods"))
    assert len(reasons) == 4950 and {n for n, _ in reasons} == {"flood-sender"}
    assert "mails from alice@acme.example within 30 min (limit 50): held for review" in reasons[-1][1]
    run = desk.process(ny(2026, 11, 23, 9, 31))
    from mailcase.domain.tables import CASE

    assert desk.scalar(sa.select(sa.func.count()).select_from(CASE)) == 50
    # one acknowledgement per case (acknowledgements of an eligible requester are never capped)
    acks = desk.outbox()
    assert [r.kind for r in acks] == ["ack"] * 50 and len({r.case_id for r in acks}) == 50
    assert run.results[0].mails == 50
    states = dict(desk.rows(sa.select(MESSAGE.c.state, sa.func.count()).group_by(MESSAGE.c.state)))
    assert states == {"batched": 50, "held": 4950}


# -- injection through a real cutoff -----------------------------------------------------------------


def test_injection_attempts_appear_literally_in_what_mailcase_sends(db_url: str, tmp_path: Path) -> None:
    desk = Desk(db_url, tmp_path)
    desk.directory()
    at = ny(2026, 11, 23, 8, 0)
    name, value = AUTH
    items = []
    # a representative (an acknowledgement) and a stranger (an unknown-sender notice);
    # written by hand: the stdlib's own mail builder refuses such a From
    for i, (sender, domain) in enumerate([("alice@acme.example", "acme.example"),
                                          ("stranger@evil.example", "evil.example")]):
        raw = (f"From: =?utf-8?q?Alice=0D=0ABcc:_evil@x.example?= {{{{ 7*7 }}}} <{sender}>\r\n"
               f"To: support@support.example\r\nDate: Mon, 23 Nov 2026 08:00:00 -0500\r\n"
               f"Message-ID: <inj{i}@{domain}>\r\n{name}: {value.format(d=domain)}\r\n"
               "Subject: =?utf-8?q?hi=0D=0ABcc:_evil@x.example?= {{ 7*7 }} {% for x in y %}"
               "{{ ''.__class__ }}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
               "{{ 7*7 }} {% for x in range(3) %}x{% endfor %} {{ ''.__class__.__mro__ }}\r\n").encode()
        items.append(Incoming("eml:/inj", f"inj{i}", raw, at, ReceivedSource.DATE_HEADER, False))
    with transaction(desk.engine) as conn:
        store(conn, items, at)
    desk.process(ny(2026, 11, 23, 9, 31))
    outbox = desk.outbox()
    assert sorted(r.kind for r in outbox) == ["ack", "notice/unknown-sender"]
    for row in outbox:
        msg = email.message_from_bytes(row.raw, policy=email.policy.default)
        names = sorted(k.lower() for k in msg.keys())
        assert "bcc" not in names and names.count("to") == 1 and names.count("subject") == 1
        assert msg["To"].addresses[0].addr_spec in ("alice@acme.example", "stranger@evil.example")
        subject = str(msg["Subject"])
        assert "{{ 7*7 }}" in subject and "49" not in subject and "<class" not in subject
        assert "\r" not in subject and "\n" not in subject
        text = body_text(msg)
        html = body_text(msg, "html")
        assert "49" not in text and "<class" not in text and "str'>" not in text
        assert "{{ 7*7 }}" in text  # the sender's words, as they wrote them
        assert "{{ 7*7 }}" in html or "{{ 7*7 }}" in html.replace("&#34;", '"')
        assert "<class" not in html


# -- files over the size limit (sources.py) -------------------------------------------------------


def test_file_over_the_limit_keeps_its_headers_and_is_quarantined(db_url: str, tmp_path: Path) -> None:
    from mailcase.ingest.sources import FileKind, incoming_from_files

    big = make_mail(1, body="x" * 200_000 + "\n")
    folder = tmp_path / "eml"
    folder.mkdir()
    (folder / "big.eml").write_bytes(big)
    (folder / "small.eml").write_bytes(make_mail(2))
    items = list(incoming_from_files(folder, "eml:/x", historical=False, receiving_hosts=(),
                                     kind=FileKind.EML, max_message_bytes=50_000))
    head = next(i for i in items if i.truncated_from is not None)
    small = next(i for i in items if i is not head)
    assert small.truncated_from is None and small.quarantine_reason is None
    assert head.truncated_from == len(big) and len(head.raw) < 1000 and head.raw.endswith(b"\r\n\r\n")
    assert "over max_message_bytes 50000" in (head.quarantine_reason or "")
    # the key is the hash of the whole file, as if it had been read whole
    assert head.source_key == "sha256:" + hashlib.sha256(big).hexdigest()
    engine = open_engine(db_url)
    with transaction(engine) as conn:
        results = store(conn, items, NOW)
    assert sorted(r.outcome.value for r in results) == ["new", "quarantined"]


# -- found here, fixed in the modules named: regressions ------------------------------------------


def bounce_header_flood(lines: int = 1_000_000) -> bytes:
    return (b"From: MAILER-DAEMON@mx.example\r\nTo: support@support.example\r\n"
            b"Date: Mon, 23 Nov 2026 08:00:00 -0500\r\nMessage-ID: <bh@mx.example>\r\n"
            b"Subject: Undelivered Mail Returned to Sender\r\n" + b"X:\n" * lines + b"\r\nbody\r\n")


def test_bounce_rule_reads_a_bounce_looking_mail_in_bounded_memory(tmp_path: Path) -> None:
    out = measure("bounce-looking mail, 1M header lines (classify)", bounce_header_flood(), tmp_path)
    finished(out)
    bounded(out, per_byte=3, extra_mb=60, seconds=10)


def test_flood_counting_is_not_quadratic(tmp_path: Path) -> None:
    from mailcase.rules.base import RuleSettings
    from mailcase.rules.context import DbContext, PassCache

    def run(n: int) -> float:
        cache = PassCache()
        start = NOW - timedelta(hours=1)
        mails = [(start + timedelta(seconds=i * 3600 / n), i, "s", "h", "l") for i in range(n)]
        cache._sender["a@x.example"] = mails
        rules = RuleSettings.from_config(config("sqlite://", tmp_path))
        ctx = DbContext(None, NOW, rules, None, b"k", cache)  # type: ignore[arg-type]  # no connection nor directory: the cache answers
        t = time.perf_counter()
        for at, pk, _, _, _ in mails:
            ctx.message_pk = pk
            ctx.sender_mails_before("a@x.example", at - timedelta(minutes=30), at)
            ctx.similar_mails_before("a@x.example", "s", "h", at - timedelta(seconds=60), at)
        return time.perf_counter() - t

    small, large = run(1000), run(4000)
    # four times the mails: four times the work (and a log), not sixteen
    assert large / small < 8, f"1,000 mails: {small:.2f} s; 4,000: {large:.2f} s"


CLASSIFY_ONLY = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from datetime import UTC, datetime
from pathlib import Path
from helpers import config
from mailcase.outbound.effects import EFFECTS
from mailcase.rules.classify import run_classify_stage
from mailcase.core.clock import FixedClock
from mailcase.domain.db import open_engine
import mailcase.mail.parse.message, mailcase.rules.chain, mailparser, mailparser_reply


def hwm():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024


url = f"sqlite:///{sys.argv[2]}/mailcase.db"
cfg = config(url, Path(sys.argv[2]))
engine = open_engine(url)
base = hwm()
r = run_classify_stage(engine, cfg, FixedClock(datetime(2026, 11, 23, 14, 0, tzinfo=UTC)), EFFECTS)
print(json.dumps({"base": base, "peak": hwm(), "done": r.done}))
"""


def test_classify_batch_is_bounded_by_bytes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/mailcase.db"
    cfg = config(url, tmp_path)
    engine = open_engine(url)
    with transaction(engine) as conn:  # 24 mails of 4 MB: 96 MB of raw mail
        store(conn, [Incoming("eml:/big", f"b{i}", make_mail(i, body=f"{i}\n" + "x" * (4 * MB) + "\n"), NOW,
                              ReceivedSource.DATE_HEADER, False) for i in range(24)], NOW)
    run_parse_stage(engine, NOW, cfg.hmac_key())
    engine.dispose()
    proc = subprocess.run([sys.executable, "-c", CLASSIFY_ONLY, str(TESTS), str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["done"] == 24
    grown = (out["peak"] - out["base"]) / MB
    assert grown < 48, f"classifying 96 MB of mail took {grown:.0f} MB"


def test_bounce_with_nul_is_recorded_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    cfg = config(pg_url, tmp_path)
    engine = open_engine(pg_url)
    with transaction(engine) as conn:
        store(conn, [Incoming("eml:/dsn", "dsn", SMALL["dsn-nul"], NOW, ReceivedSource.DATE_HEADER, False)], NOW)
    run_parse_stage(engine, NOW, cfg.hmac_key())
    run_classify_stage(engine, cfg, FixedClock(NOW), EFFECTS)
    with engine.connect() as c:
        assert c.execute(sa.select(MESSAGE.c.state)).scalar_one() == "classified"
    engine.dispose()


def test_maildir_mail_over_the_limit_keeps_its_headers(tmp_path: Path) -> None:
    from mailcase.ingest.fetch import sync_maildir

    md = tmp_path / "md"
    for sub in ("new", "cur", "tmp"):
        (md / sub).mkdir(parents=True)
    (md / "new" / "1.host").write_bytes(make_mail(1, body="x" * 200_000 + "\n"))
    url = f"sqlite:///{tmp_path}/mailcase.db"
    cfg = config(url, tmp_path, [{"name": "box", "kind": "maildir", "path": str(md), "start_at": "all",
                                  "max_message_bytes": 50_000}])
    engine = open_engine(url)
    sync_maildir(engine, cfg.mailboxes[0], cfg, NOW)
    with engine.connect() as c:
        assert c.execute(sa.select(MESSAGE.c.state)).scalar_one() == "quarantined"


def test_a_sender_cannot_forge_the_thinning_marker() -> None:
    """A thinned part is marked in the tree by a line with a per-parse random token;
    the same words in a mail are the sender's text (found by the fuzzer)."""
    import mailcase.mail.parse.message as parse

    fake = "mailcase-elided-" + "0" * 32 + "-0"
    raw, _, _ = big_attachment(9 * MB)  # over THIN_ABOVE_BYTES: thinned
    raw = raw.replace(b"see the attachment", f"see the attachment {fake} mailcase-elided-".encode())
    parsed = parse.parse_email(raw)
    assert parsed.text_body == f"see the attachment {fake} mailcase-elided-"
    big = [a for a in parsed.attachments if a.name == "big.bin"]
    assert big and big[0].size == 9 * MB * 3 // 4
