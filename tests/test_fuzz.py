"""Fuzzing parse + rules on mutated real mails (issue 8), with Hypothesis.

The seeds are real mail: the 115 mails of Zammad's parser corpus and the
122 of the rules corpus.  Each example takes one and applies one to four
mutations of the kinds real damage and real attacks take: bytes flipped,
the mail cut short, header blocks duplicated, MIME boundaries corrupted,
charset labels swapped for wrong, bogus or hostile ones, header fields
inserted with hostile values, and a splice of another mail.  Then:

* :func:`mailcase.mail.header_info.read_headers` never raises;
* :func:`mailcase.mail.parse.message.parse_email` raises nothing but ``MessageError``
  (the mail is then quarantined), and what it returns is storable (no NUL,
  no lone surrogate: PostgreSQL refuses the one, both databases the other)
  and bounded;
* :func:`mailcase.rules.chain.run_chain` never raises, whatever the context's
  counters say;
* the header splitter's fast path (a regular expression for well-formed
  blocks) reads every block exactly as the careful line-by-line reader does,
  or leaves it to that reader; so does the address parser's fast path (the
  common ``Name <a@b>`` forms) against the RFC 5322 parser.

CI runs a fixed budget, derandomized (the same examples every run, no
example database).  ``MAILCASE_FUZZ_EXAMPLES=N`` raises the budget per test
and ``MAILCASE_FUZZ_SEED=S`` draws fresh examples from seed ``S``, for a
longer run by hand::

    MAILCASE_FUZZ_EXAMPLES=5000 MAILCASE_FUZZ_SEED=1 .venv/bin/pytest -q tests/test_fuzz.py
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from rules_fake import FakeContext, load_directory, mail_from_bytes, our_message_id
from rules_fake import settings as rule_settings

from mailcase.core.errors import MessageError
from mailcase.mail.addresses import _parse_rfc5322, _parse_simple
from mailcase.mail.feedparser_eol import _PATTERN as EOL_PATTERN
from mailcase.mail.feedparser_eol import LineBreakAtEnd
from mailcase.mail.header_info import read_headers
from mailcase.mail.headers import _split_any, _split_well_formed, split_headers
from mailcase.mail.parse.limits import MAX_ATTACHMENTS, MAX_BODY_CHARS
from mailcase.mail.parse.message import parse_email
from mailcase.mail.parse.result import ParsedEmail
from mailcase.mail.quoting import _first_reply, _header_regex, _library_header_regex, _parser
from mailcase.rules.base import Disposition
from mailcase.rules.chain import run_chain

TESTS = Path(__file__).parent
SEEDS: list[bytes] = [p.read_bytes() for p in sorted((TESTS / "corpus" / "zammad").glob("*.box"))] + [
    p.read_bytes() for p in sorted((TESTS / "rules_corpus").glob("*.eml"))
]
DIRECTORY, CASES, MSGIDS, RESOLVED = load_directory(TESTS / "rules_corpus" / "directory.toml")
NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
SETTINGS = [rule_settings("mx.support.example"), rule_settings(None),
            rule_settings("mx.support.example", spam_header="X-Spam-Flag")]

EXAMPLES = int(os.environ.get("MAILCASE_FUZZ_EXAMPLES", "500"))
FUZZ_SEED = os.environ.get("MAILCASE_FUZZ_SEED")
budget = settings(
    max_examples=EXAMPLES, deadline=None, database=None, derandomize=FUZZ_SEED is None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


def seeded(test: Callable[..., None]) -> Callable[..., None]:
    return seed(int(FUZZ_SEED))(test) if FUZZ_SEED is not None else test


# -- mutations ------------------------------------------------------------------------------

Draw = Callable[[st.SearchStrategy[Any]], Any]

CHARSETS = [
    "utf-8", "us-ascii", "iso-8859-1", "windows-1252", "utf-7", "utf-16", "utf-16-le", "utf-32", "gb2312",
    "iso-2022-jp", "shift_jis", "euc-kr", "koi8-r", "x-bogus", "unknown-8bit", "unicode_escape", "rot13",
    "hex", "zlib", "base64", "idna", "mbcs", "undefined", "", "utf-8\x00", "\xff\xfe", "a" * 300,
]
HEADER_NAMES = [
    "From", "To", "Cc", "Reply-To", "Sender", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
    "Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "MIME-Version", "Received",
    "Return-Path", "Auto-Submitted", "Precedence", "List-Id", "X-Autoreply", "Authentication-Results",
    "X-Auto-Response-Suppress", "X-Spam-Flag", "X-\x00Nul", "Bcc", "Resent-From", "From ", ":",
]
HOSTILE_VALUES = [
    b"=?utf-8?q?hi=0D=0ABcc:_evil@x.example?=", b"{{ 7*7 }} {% for x in y %}{{ ''.__class__ }}",
    b"=?utf-7?q?+2D0-?=", b"=?x-bogus?b?!!!?=", b"=?utf-8?b?" + b"A" * 10_000 + b"?=", b"<>", b"\x00\x00",
    b"a\rb", b"multipart/mixed; boundary=", b'multipart/mixed; boundary=""', b"multipart/report; "
    b"report-type=delivery-status; boundary=x", b"text/plain; charset=utf-16", b"base64",
    b"quoted-printable", b"x-uuencode", b"auto-replied", b"bulk", b"(" * 500, b"@" * 500,
    b"a" + b"." * 3000 + b"@b", b", ".join(b"u%d@x.example" for i in range(300)), b"\xff\xfe\xfd",
    b"Mon, 32 Foo 99999 99:99:99 +9999", b"\\", b'"', b"mx.support.example; dmarc=pass header.from=acme.example",
    our_message_id(123).encode(), b"[Case #000123] PIN: 1234 Severity: 1",
]
_BOUNDARY = re.compile(rb'boundary="?([^";\r\n]{1,100})', re.I)
_CHARSET = re.compile(rb"""charset\s*=\s*"?([A-Za-z0-9_.:+-]{1,40})|=\?([^?\s]{1,40})\?[QqBb]\?""", re.I)


def _pos(draw: Draw, raw: bytes) -> int:
    return int(draw(st.integers(0, len(raw))))


def flip_bytes(draw: Draw, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(draw(st.integers(1, 16))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


def truncate(draw: Draw, raw: bytes) -> bytes:
    return raw[: _pos(draw, raw)]


def duplicate_headers(draw: Draw, raw: bytes) -> bytes:
    block = split_headers(raw)
    head = raw[block.header_start : block.body_offset]
    times: int = draw(st.integers(2, 4))
    return raw[: block.header_start] + head * times + raw[block.body_offset :]


def duplicate_slice(draw: Draw, raw: bytes) -> bytes:
    a, b = sorted((_pos(draw, raw), _pos(draw, raw)))
    times: int = draw(st.integers(1, 3))
    return raw[:b] + raw[a:b] * times + raw[b:]


def corrupt_boundary(draw: Draw, raw: bytes) -> bytes:
    found = list(_BOUNDARY.finditer(raw))
    if not found:
        return raw
    boundary: bytes = draw(st.sampled_from(found)).group(1)
    delimiters = [m.start() for m in re.finditer(rb"^--" + re.escape(boundary), raw, re.M)]
    how = draw(st.sampled_from(["drop", "close", "mangle", "fake", "declare", "empty"]))
    if how == "declare":  # the declared boundary changes, the delimiters do not
        return raw.replace(b"boundary=" + boundary, b"boundary=" + boundary[::-1], 1)
    if how == "fake":  # a delimiter where there was none
        at = _pos(draw, raw)
        close: bytes = draw(st.sampled_from([b"", b"--"]))
        return raw[:at] + b"\r\n--" + boundary + close + b"\r\n" + raw[at:]
    if how == "empty":
        return raw.replace(b"boundary=\"" + boundary + b"\"", b"boundary=\"\"").replace(
            b"boundary=" + boundary, b"boundary=")
    if not delimiters:
        return raw
    at = draw(st.sampled_from(delimiters))
    end = raw.find(b"\n", at)
    end = len(raw) if end < 0 else end
    if how == "drop":
        return raw[:at] + raw[end:]
    if how == "close":
        return raw[:at] + b"--" + boundary + b"--" + raw[end:]
    line = bytearray(raw[at:end])
    if len(line) > 3:
        line[draw(st.integers(2, len(line) - 1))] = draw(st.integers(0, 255))
    return raw[:at] + bytes(line) + raw[end:]


def swap_charset(draw: Draw, raw: bytes) -> bytes:
    found = list(_CHARSET.finditer(raw))
    if not found:
        return raw
    m: re.Match[bytes] = draw(st.sampled_from(found))
    group = 1 if m.group(1) is not None else 2
    label: bytes = draw(st.sampled_from(CHARSETS)).encode("utf-8", "surrogateescape")
    return raw[: m.start(group)] + label + raw[m.end(group) :]


def insert_header(draw: Draw, raw: bytes) -> bytes:
    block = split_headers(raw)
    lines = [0] + [m.end() for m in re.finditer(rb"\n", raw[: block.body_offset])]
    at: int = draw(st.sampled_from(lines))
    name: bytes = draw(st.sampled_from(HEADER_NAMES)).encode("utf-8", "surrogateescape")
    value: bytes = draw(st.one_of(st.sampled_from(HOSTILE_VALUES), st.binary(max_size=80)))
    end: bytes = draw(st.sampled_from([b"\r\n", b"\n", b"\r", b""]))
    return raw[:at] + name + b": " + value + end + raw[at:]


def splice(draw: Draw, raw: bytes) -> bytes:
    other: bytes = draw(st.sampled_from(SEEDS))
    a, b = sorted((_pos(draw, other), _pos(draw, other)))
    at = _pos(draw, raw)
    return raw[:at] + other[a:b] + raw[at:]


MUTATIONS = [flip_bytes, truncate, duplicate_headers, duplicate_slice, corrupt_boundary, swap_charset,
             insert_header, splice]


@st.composite
def mutated_mails(draw: Draw) -> bytes:
    raw: bytes = draw(st.sampled_from(SEEDS))
    for mutate in draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=4)):
        raw = mutate(draw, raw)
    return raw


# -- properties ------------------------------------------------------------------------------


def storable(text: str | None) -> bool:
    if not text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def assert_sound(p: ParsedEmail) -> None:
    h = p.headers
    texts = [h.subject, h.message_id, p.text_body, *p.to, *p.cc, *p.reply_to, *p.defects,
             *h.in_reply_to, *h.references, *h.defects]
    texts += [x for a in h.from_list.addresses for x in (a.name, a.addr)]
    texts += [x for a in p.attachments for x in (a.name, a.content_type, *a.contents)]
    bad = [t for t in texts if not storable(t)]
    assert not bad, bad
    assert "\r" not in h.subject and "\n" not in h.subject
    assert len(p.text_body) <= MAX_BODY_CHARS
    assert len(p.attachments) <= MAX_ATTACHMENTS + 1
    assert all(len(a.name) <= 255 for a in p.attachments)
    assert len(h.message_id) <= 998


@budget
@seeded
@given(raw=mutated_mails())
def test_parse_raises_only_message_error_and_returns_storable_text(raw: bytes) -> None:
    info = read_headers(raw)  # never raises
    assert storable(info.subject) and storable(info.message_id) and storable(info.from_name)
    try:
        parsed = parse_email(raw)
    except MessageError:
        return  # quarantined with the error
    assert parsed.headers.identity == info.identity
    assert_sound(parsed)


@budget
@seeded
@given(raw=mutated_mails(), which=st.sampled_from(range(len(SETTINGS))),
       counters=st.tuples(st.integers(0, 100), st.integers(0, 100), st.integers(0, 10), st.integers(0, 60)))
def test_rules_chain_never_raises_on_mutated_mail(raw: bytes, which: int, counters: tuple[int, ...]) -> None:
    try:
        mail = mail_from_bytes(raw)
    except MessageError:
        return  # quarantined at parse: the chain never sees it
    ctx = FakeContext(now=NOW, settings=SETTINGS[which], directory=DIRECTORY, cases=CASES,
                      case_message_ids=MSGIDS, resolved=RESOLVED, similar_before=counters[0],
                      sender_before=counters[1], pin_failures_before=counters[2],
                      account_requests_before=counters[3])
    outcome = run_chain(mail, ctx)
    assert isinstance(outcome.final, Disposition)
    assert all(v.rule and v.name and v.reason for v in outcome.verdicts)
    assert all(storable(v.reason) for v in outcome.verdicts)


@budget
@seeded
@given(raw=mutated_mails(), keep=st.integers(0, 20_000), small=st.integers(0, 2_000),
       header_lines=st.integers(1, 60))
def test_thinning_holds_the_same_promises(raw: bytes, keep: int, small: int, header_lines: int) -> None:
    """Large mails are thinned before the tree is built (mailcase.mail.parse.thinning.thin): here every mail
    is, with a small budget, so the thinning sees every kind of damage too."""
    import mailcase.mail.parse.limits as limits

    saved = {k: getattr(limits, k) for k in ("THIN_ABOVE_BYTES", "THIN_ABOVE_LINES", "KEEP_BYTES", "KEEP_LINES",
                                             "SMALL_PART_BYTES", "MAX_PART_HEADER_LINES")}
    try:
        limits.THIN_ABOVE_BYTES = limits.THIN_ABOVE_LINES = 0
        limits.KEEP_BYTES, limits.KEEP_LINES = keep, keep // 40
        limits.SMALL_PART_BYTES, limits.MAX_PART_HEADER_LINES = small, header_lines
        try:
            parsed = parse_email(raw)
        except MessageError:
            return
    finally:
        for k, v in saved.items():
            setattr(limits, k, v)
    assert_sound(parsed)
    # no marker of the thinning shows (Hypothesis finds the prefix in thinning.py
    # and writes it into mails: then it is the sender's text, and stays)
    assert parsed.text_body.count("mailcase-elided-") <= raw.count(b"mailcase-elided-")


HEADER_BYTES = st.lists(st.sampled_from([
    b"Subject: hi", b"Subject : spaced", b"X-A:", b"X-A:\t tabbed ", b" folded", b"\tfolded", b"no colon here",
    b"X B: space in name", b":empty name", b"From x@y Mon", b"X-\x00: nul", b"v\x00", b"a\rb", b"\xff\xfe: 8bit",
    b"To: =?utf-8?q?x?=", b"", b"\r",
]), max_size=12).map(lambda lines: b"".join(line + b"\n" for line in lines))


def _same_block(raw: bytes, pos: int) -> None:
    fast = _split_well_formed(raw, pos)
    if fast is not None:
        slow = _split_any(raw, pos)
        assert (fast.fields, fast.body_offset, fast.defects, fast.header_start, fast.folded_at, fast.fields_end,
                fast.nul_fields) == (slow.fields, slow.body_offset, slow.defects, slow.header_start, slow.folded_at,
                                     slow.fields_end, slow.nul_fields)


@budget
@seeded
@given(raw=mutated_mails())
def test_fast_header_split_agrees_with_the_careful_reader_on_mutated_mail(raw: bytes) -> None:
    _same_block(raw, 0)


@budget
@seeded
@given(head=HEADER_BYTES, crlf=st.booleans())
def test_fast_header_split_agrees_with_the_careful_reader_on_odd_lines(head: bytes, crlf: bool) -> None:
    raw = head.replace(b"\n", b"\r\n") if crlf else head
    _same_block(raw + b"\nbody\n", 0)


def test_fast_header_split_takes_the_seed_mails() -> None:
    """The fast path is the common path: most real mail takes it."""
    taken = sum(_split_well_formed(raw, 0) is not None for raw in SEEDS if not raw.startswith(b"From "))
    assert taken >= 0.8 * len([raw for raw in SEEDS if not raw.startswith(b"From ")])
    for raw in SEEDS:
        _same_block(raw, 0)


# -- the address parser's fast path ------------------------------------------------------

ADDRESS_PIECES = st.lists(st.sampled_from([
    "a", "B", "john.smith", "x+y", "o'neil", "a..b", ".a", "a.", "@", "<", ">", '"', "\\", ",", " ", "  ", "\t",
    "example.org", "EXAMPLE.ORG", "ex-ample.org", "-x.org", "x-.org", "x.org.", "[1.2.3.4]", "(comment)", ":", ";",
    "Smith", "Doe, John", "=?utf-8?q?J=C3=B6rg?=", "?", "=", "é", "\x00", "group:", "undisclosed-recipients:;",
]), min_size=1, max_size=14).map("".join)


def _agree(text: str) -> None:
    fast = _parse_simple(text)
    if fast is not None:
        assert fast == _parse_rfc5322(text), text


@budget
@seeded
@given(text=ADDRESS_PIECES)
def test_fast_address_parse_agrees_with_the_rfc5322_parser(text: str) -> None:
    _agree(text)


@budget
@seeded
@given(name=st.sampled_from(["", "John Smith", '"Smith J"', '"J  S"', "J", '" J"', '"J "', "A B C"]),
       local=st.from_regex(r"[A-Za-z0-9._%+'=?-]{1,12}", fullmatch=True),
       domain=st.from_regex(r"[A-Za-z0-9.-]{1,12}", fullmatch=True),
       angle=st.booleans(), pad=st.sampled_from(["", " ", "\t", "  "]), n=st.integers(1, 3))
def test_fast_address_parse_agrees_on_common_forms(
    name: str, local: str, domain: str, angle: bool, pad: str, n: int
) -> None:
    one = f"{name}{pad}<{local}@{domain}>" if angle or name else f"{local}@{domain}"
    _agree(",".join([pad + one + pad] * n))


def test_fast_address_parse_takes_the_seed_mails() -> None:
    """Every address field of the seed mails: same answer, and most take the fast path."""
    fields = [v for raw in SEEDS for name in ("from", "to", "cc", "reply-to")
              for v in split_headers(raw).values(name)]
    for v in fields:
        _agree(v)
    assert sum(_parse_simple(v) is not None for v in fields) >= 0.5 * len(fields)


# -- the feedparser's end-of-line check (mailcase.mail.feedparser_eol) ---------------------------

def _eol_answer(matcher: Any, text: str) -> str | None:
    mo = matcher.search(text)
    return None if mo is None else str(mo.group(0))


def test_line_break_at_end_agrees_with_the_pattern_it_replaces() -> None:
    """Every string of up to six characters from a, \\r, \\n and space."""
    from itertools import product

    regex, ours = re.compile(EOL_PATTERN), LineBreakAtEnd()
    for n in range(7):
        for chars in product("a\r\n ", repeat=n):
            text = "".join(chars)
            assert _eol_answer(ours, text) == _eol_answer(regex, text), repr(text)


def _tree(raw: bytes) -> list[Any]:
    import email
    from email.policy import compat32

    msg = email.message_from_bytes(raw, policy=compat32)
    # _payload: as parsed, undecoded (a private attribute typeshed does not declare)
    return [(part.get_content_type(), part.preamble, part.epilogue, [type(d).__name__ for d in part.defects],
             vars(part)["_payload"] if not part.is_multipart() else None) for part in msg.walk()]


def _trees_agree(raw: bytes) -> None:
    import email.feedparser as feedparser

    module_globals = vars(feedparser)  # NLCRE_eol is a module global typeshed does not declare
    saved = module_globals["NLCRE_eol"]
    try:
        module_globals["NLCRE_eol"] = LineBreakAtEnd()  # as install() puts it
        ours = _tree(raw)
        module_globals["NLCRE_eol"] = re.compile(EOL_PATTERN)
        assert _tree(raw) == ours
    finally:
        module_globals["NLCRE_eol"] = saved


def test_line_break_at_end_builds_the_same_trees_from_the_seed_mails() -> None:
    for raw in SEEDS:
        _trees_agree(raw)


@budget
@seeded
@given(raw=mutated_mails())
def test_line_break_at_end_builds_the_same_trees_from_mutated_mail(raw: bytes) -> None:
    _trees_agree(raw)


# -- the identity's body hash ------------------------------------------------------------------

@budget
@seeded
@given(body=st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n", b" ", b"\t", b"\xff", b"\r\r\n"]), max_size=60)
       .map(b"".join), chunk=st.sampled_from([2, 3, 7, 1 << 20]), offset=st.integers(0, 3))
def test_body_hash_in_chunks_is_the_hash_of_the_normalised_body(body: bytes, chunk: int, offset: int) -> None:
    """hash_normalised_body (in chunks of two bytes or more, so that one holds a CRLF; CRs deleted
    where none is bare) == sha256(normalised_body)."""
    import hashlib

    from mailcase.mail import header_info

    raw = b"X: y\r\n\r\n"[:offset] + body
    saved = header_info._HASH_CHUNK
    header_info._HASH_CHUNK = chunk
    try:
        h = hashlib.sha256()
        header_info.hash_normalised_body(h, raw, offset)
    finally:
        header_info._HASH_CHUNK = saved
    assert h.hexdigest() == hashlib.sha256(header_info.normalised_body(raw, offset)).hexdigest()


# -- the reply-header pattern, anchored (mailcase.mail.quoting._header_regex) ------------------------

REPLY_LINES = st.lists(st.sampled_from([
    "", " ", "Hello,", "Thanks for the quick answer.", "> quoted", ">> deeper", "> ", "-- ", "Best,", "Alice",
    "On Mon, 23 Nov 2026 at 09:00, Bob <bob@x.example> wrote:", "> On Mon, Bob wrote:", "On Mon",
    "bob wrote:", "Am 23.11.2026 um 09:00 schrieb Bob <b@x.example>:", "Le lun. 23 nov. 2026 à 09:00, Bob a écrit :",
    "El lun, 23 nov 2026 a las 09:00, Bob escribió:", "Il giorno lun 23 nov 2026 Bob ha scritto:",
    "Op ma 23 nov 2026 om 09:00 schreef Bob:", "Den 23 nov 2026 skrev Bob:", "Dnia 23.11.2026 Bob napisał(a):",
    "From: Bob <bob@x.example>", "Sent: Monday, November 23, 2026 9:00 AM", "To: support@x.example",
    "Subject: RE: [Case #000123] printer", "Date: Mon, 23 Nov 2026", "Von: Bob", "Gesendet: Montag", "An: x",
    "Betreff: AW: y", "De : Bob", "Envoyé : lundi", "Objet : z", "*From:* Bob", "> From: Bob", "> Sent: x",
    "-----Original Message-----", "----- Original Message -----", "-----Oprindelig meddelelse-----",
    "________________________________", "From: a\rb", "Från: Bob", "Skickat: måndag", "Od: Bob", "Temat: x",
    "ON MON BOB WROTE:", "\u00e9crit", "wrote:", "From:", "Subject:",
]), max_size=30).map("\n".join)


def _header_matches(pattern: Any, text: str) -> list[tuple[tuple[int, int], tuple[Any, ...]]]:
    return [(m.span(), m.groups()) for m in pattern.finditer(text)]


def _anchored_agrees(text: str) -> None:
    from mailparser_reply.parser import EmailMessage

    body = EmailMessage(text=text, languages=["en"]).text  # normalised as _first_reply reads it
    assert _header_matches(_header_regex(), body) == _header_matches(_library_header_regex(), body)


@budget
@seeded
@given(text=REPLY_LINES)
def test_anchored_reply_header_pattern_agrees_on_generated_replies(text: str) -> None:
    _anchored_agrees(text)


def test_anchored_reply_header_pattern_agrees_on_the_seed_mails() -> None:
    quoted = 0
    for raw in SEEDS:
        try:
            text = parse_email(raw).text_body
        except MessageError:
            continue
        _anchored_agrees(text)
        quoted += bool(_header_matches(_library_header_regex(), text))
    assert quoted >= 20  # the seeds do quote earlier mail: the comparison is not empty


# -- the newest reply, read lazily (mailcase.mail.quoting._first_reply) -----------------------------

def _first_reply_agrees(text: str) -> None:
    """Ours, which uses only the library's public API, against the library's own answer."""
    assert _first_reply(text) == _parser().parse_reply(text), repr(text)


@budget
@seeded
@given(text=REPLY_LINES)
def test_first_reply_is_the_librarys_latest_reply_on_generated_replies(text: str) -> None:
    _first_reply_agrees(text)


def test_first_reply_is_the_librarys_latest_reply_on_the_seed_mails() -> None:
    for raw in SEEDS:
        try:
            text = parse_email(raw).text_body
        except MessageError:
            continue
        _first_reply_agrees(text[:200_000])
