"""Properties of the rules chain over arbitrary mail (Hypothesis).

* the chain never raises, whatever the header values and the body hold
  (non-ASCII, control characters, line breaks, raw 8-bit bytes);
* an out-of-office reply (``Auto-Submitted: auto-replied`` or an
  X-Autoreply header) is never a case, whoever sent it and whatever else
  the mail says;
* ``Auto-Submitted: no`` alone changes nothing: the outcome with and
  without it is the same (RFC 3834 §5: it declares a person's mail).

Mails are classified against the rules corpus's directory, so senders
include representatives (eligible, authenticated or not), users, staff and
strangers.  Examples are bounded so the module runs in well under 20 s.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rules_fake import FakeContext, load_directory, mail_from_bytes, our_message_id
from rules_fake import settings as rule_settings

from mailcase.rules.base import Disposition, Outcome
from mailcase.rules.chain import run_chain

CORPUS = Path(__file__).parent / "rules_corpus"
DIRECTORY, CASES, MSGIDS, RESOLVED = load_directory(CORPUS / "directory.toml")
NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
ACK_123 = our_message_id(123)
SETTINGS = {
    "authserv": rule_settings("mx.support.example"),
    "insecure": rule_settings(None),
    "spam": rule_settings("mx.support.example", spam_header="X-Spam-Flag"),
}

# the senders that reach different branches of the chain
KNOWN_SENDERS = [
    "Alice Admin <alice.admin@acme.example>",          # administrator, PIN-free account
    "ops-monitor@acme.example",                         # representative (monitoring)
    "Erin Example <erin@acme.example>",                 # user: outside the channel
    "dana@consult.example",                             # representative of two accounts
    "Peter Gibbons <peter@initech.example>",            # account on hold
    "Pat Pin <pat@pinco.example>",                      # PIN required
    "lou@locked.example",                               # PIN acceptance locked
    "Jordan Lee <jordan.lee@support.example>",          # staff domain
    "helpdesk@partner.example",                         # staff address
    "Support <support@support.example>",                # our own address
    "someone@stranger.example",                         # unknown
    "MAILER-DAEMON@mx.example",                         # a mail system
    '"alice.admin@acme.example" <mallory@evil.example>',
    "bob@globex.example)<mallory@evil.example>",
]
AUTH_RESULTS = [
    "mx.support.example; spf=pass smtp.mailfrom=acme.example; dkim=pass header.d=acme.example; "
    "dmarc=pass header.from=acme.example",
    "mx.support.example; spf=pass smtp.mailfrom=pinco.example; dkim=pass header.d=pinco.example; "
    "dmarc=pass header.from=pinco.example",
    "mx.support.example; spf=fail smtp.mailfrom=acme.example; dkim=none; dmarc=fail header.from=acme.example",
    "mx.support.example; dmarc=none header.from=kimfp.example",
    "mx.evil.example; dmarc=pass header.from=acme.example",
    "mx.support.example 1; (comment) dkim=pass header.d=support.example; dmarc=pass",
]
REPLY_IDS = [ACK_123, "<c1a7e2f0.4410@mail.acme.example>", "<globex-200@globex.example>",
             our_message_id(None, "notice"), "<unknown@elsewhere.example>"]
HEADER_NAMES = [
    "Subject", "From", "To", "Cc", "Reply-To", "Sender", "Date", "Message-ID", "In-Reply-To",
    "References", "Auto-Submitted", "Precedence", "Authentication-Results", "Content-Type",
    "Content-Transfer-Encoding", "MIME-Version", "Return-Path", "List-Id", "List-Unsubscribe",
    "X-Autoreply", "X-Auto-Response-Suppress", "X-Spam-Flag", "Feedback-ID",
    "X-MS-Exchange-Generated-Message-Source", "Received", "Disposition-Notification-To",
]
# header names whose extra copies would change what the property is about
OOO_NAMES = {"auto-submitted", "x-autoreply", "x-autorespond", "x-autoresponder", "x-auto-reply",
             "x-autoreply-from", "x-mail-autoreply", "precedence"}

# text of every kind: non-ASCII, control characters, line breaks, encoded-words
any_text = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    st.sampled_from([
        "=?utf-8?q?Out_of_office?=", "=?iso-8859-1?Q?R=E9ponse_automatique?=", "=?utf-8?b?AAAA?=",
        "multipart/report; report-type=delivery-status; boundary=x",
        "multipart/report; report-type=disposition-notification", "multipart/alternative",
        "text/plain; charset=bogus-charset", "<>", "bulk", "list", "auto_reply", "no", "auto-replied",
        "auto-generated", "[Case #000123]", "[S1] system down", "PIN: 4321", "All", "DR, OOF",
        "", " ", "\t", "\x00", "\r\n", "\n\n", "a\r\nb: c", "\udcff",
    ]),
)
body_text = st.one_of(
    st.text(max_size=400),
    st.sampled_from([
        "PIN: 4321\n", "Severity: 1\n", "which CPT code should we use?\n",
        "> PIN: 4321\n> Severity: 1\n",
        "--x\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822; a@b\nAction: failed\n"
        "Status: 5.1.1\n\n--x--\n",
        "Hi. This is the qmail-send program at x.\n\n<a@b.example>:\nno mailbox\n",
    ]),
)
raw_bytes = st.binary(max_size=60)


def header_line(name: str, value: str | bytes) -> bytes:
    data = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
    return name.encode("ascii") + b": " + data + b"\n"


def build(headers: list[tuple[str, str | bytes]], body: str | bytes) -> bytes:
    data = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    return b"".join(header_line(n, v) for n, v in headers) + b"\n" + data


def context(which: str) -> FakeContext:
    return FakeContext(now=NOW, settings=SETTINGS[which], directory=DIRECTORY, cases=CASES,
                       case_message_ids=MSGIDS, resolved=RESOLVED)


def classify(raw: bytes, which: str = "authserv") -> Outcome:
    return run_chain(mail_from_bytes(raw), context(which))


value = st.one_of(any_text, raw_bytes)
extra_headers = st.lists(st.tuples(st.sampled_from(HEADER_NAMES), value), max_size=8)
base_headers = st.fixed_dictionaries({
    "From": st.one_of(st.sampled_from(KNOWN_SENDERS), any_text),
    "Subject": any_text,
    "Authentication-Results": st.one_of(st.sampled_from(AUTH_RESULTS), any_text),
    "In-Reply-To": st.one_of(st.sampled_from(REPLY_IDS), any_text),
})
contexts = st.sampled_from(sorted(SETTINGS))
common = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@common
@given(base=base_headers, extra=extra_headers, body=st.one_of(body_text, raw_bytes), which=contexts)
def test_chain_never_raises(base: dict[str, str], extra: list[tuple[str, str | bytes]],
                            body: str | bytes, which: str) -> None:
    headers: list[tuple[str, str | bytes]] = list(base.items()) + extra
    outcome = classify(build(headers, body), which)
    assert isinstance(outcome.final, Disposition)
    assert outcome.verdicts == () or all(v.rule and v.name and v.reason for v in outcome.verdicts)


@common
@given(marker=st.sampled_from([
           ("Auto-Submitted", "auto-replied"), ("Auto-Submitted", "Auto-Replied"),
           ("Auto-Submitted", "auto-replied (vacation)"), ("Auto-Submitted", "auto-replied; owner=x"),
           ("X-Autoreply", "yes"), ("X-Autoreply", ""), ("X-Autorespond", "true"),
       ]),
       also_x_autoreply=st.booleans(),
       base=base_headers,
       extra=st.lists(st.tuples(st.sampled_from([n for n in HEADER_NAMES if n.lower() not in OOO_NAMES]),
                                value), max_size=6),
       body=st.one_of(body_text, raw_bytes), which=contexts)
def test_out_of_office_is_never_a_case(marker: tuple[str, str], also_x_autoreply: bool,
                                       base: dict[str, str], extra: list[tuple[str, str | bytes]],
                                       body: str | bytes, which: str) -> None:
    # the marker comes first, so no malformed header before it can end the header block
    headers: list[tuple[str, str | bytes]] = [marker]
    if also_x_autoreply:
        headers.append(("X-Autoreply", "yes"))
    headers += list(base.items()) + extra
    outcome = classify(build(headers, body), which)
    trail = [f"{v.rule}:{v.name}" for v in outcome.verdicts]
    assert outcome.final is not Disposition.PENDING, trail
    assert outcome.final in (Disposition.SUPPRESSED, Disposition.HELD_FOR_REVIEW), trail


# values without line breaks: a header inserted among lines that a stray
# line break made ambiguous would change how the header block is read,
# which is the parser's business, not this property's
one_line = st.one_of(any_text, raw_bytes).map(
    lambda v: v.replace(b"\r", b" ").replace(b"\n", b" ") if isinstance(v, bytes)
    else v.replace("\r", " ").replace("\n", " "))


@common
@given(base=st.fixed_dictionaries({
           "From": st.one_of(st.sampled_from(KNOWN_SENDERS), one_line),
           "Subject": st.one_of(st.sampled_from(["Out of office: Re: your mail", "Automatic reply: x",
                                                 "Abwesenheitsnotiz", "Reports are empty"]), one_line),
           "Authentication-Results": st.one_of(st.sampled_from(AUTH_RESULTS), one_line),
           "In-Reply-To": st.one_of(st.sampled_from(REPLY_IDS), one_line),
       }),
       extra=st.lists(st.tuples(st.sampled_from([n for n in HEADER_NAMES if n != "Auto-Submitted"]),
                                one_line), max_size=6),
       spelling=st.sampled_from(["no", "No", "NO", " no ", "no (a person)", "no; x=y"]),
       where=st.integers(min_value=0, max_value=20),
       body=st.one_of(body_text, raw_bytes), which=contexts)
def test_auto_submitted_no_changes_nothing(base: dict[str, str], extra: list[tuple[str, str | bytes]],
                                           spelling: str, where: int, body: str | bytes,
                                           which: str) -> None:
    headers: list[tuple[str, str | bytes]] = list(base.items()) + extra
    with_no = list(headers)
    with_no.insert(min(where, len(with_no)), ("Auto-Submitted", spelling))
    plain, marked = build(headers, body), build(with_no, body)
    plain_mail, marked_mail = mail_from_bytes(plain), mail_from_bytes(marked)
    # the premise: the two mails differ by that one field and nothing else
    assert [f for f in marked_mail.block.fields if f[0] != "auto-submitted"] == list(plain_mail.block.fields)
    a, b = run_chain(plain_mail, context(which)), run_chain(marked_mail, context(which))
    assert a.final == b.final
    assert a.marks == b.marks
    assert (a.notice, a.notice_allowed) == (b.notice, b.notice_allowed)
    assert [(v.rule, v.name) for v in a.verdicts] == [(v.rule, v.name) for v in b.verdicts]


# -- the phrase rules' prefilter ------------------------------------------------------------

PHRASES = ("system down", "cannot submit claims", "billing", "ICD-10 code", "c++", "payer")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.lists(st.sampled_from([
    "System", "DOWN", "down", "systemdown", " ", "\n", "\t", "can", "not", "cannot", "submit", "claims", "Billing",
    "BILLING", "icd-10", "ICD", "-10", "code", "C++", "c+", "payer", "PAYER", "ſystem", "K", "é", "x", ".", "_",
    "\u0130CD", "b\u0131lling", "\u00a0", "\u2003", "\u212aode", "ß", "ﬁ", "\u0130",
]), max_size=12).map(" ".join))
def test_phrase_prefilter_never_hides_a_match(text: str) -> None:
    """Where the substring test says no phrase can match, the expression finds none."""
    from mailcase.rules.scope import may_hold, phrase_pattern

    pattern = phrase_pattern(PHRASES)
    assert pattern is not None
    if not may_hold(text, PHRASES):
        assert pattern.search(text) is None, text


def test_phrase_prefilter_knows_every_character_that_folds_to_ascii() -> None:
    """The prefilter maps exactly the non-ASCII characters that match an ASCII letter ignoring case."""
    import re
    import sys

    from mailcase.rules.scope import _ASCII_FOLDS

    letter = re.compile(r"[a-z]", re.IGNORECASE)
    folding = {c for c in range(0x80, sys.maxunicode + 1) if letter.match(chr(c))}
    lowering = {c for c in range(0x80, sys.maxunicode + 1) if any("a" <= ch <= "z" for ch in chr(c).lower())}
    assert folding | lowering == set(_ASCII_FOLDS)
