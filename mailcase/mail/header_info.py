"""What the ledger reads from a header block: :class:`HeaderInfo`.

Enough to store the mail under its logical identity and to run the
ingest-time rules (loops, bounces, threading); the full parse (the parse
package) runs later.  Never raises on odd input: every oddity becomes a
defect string.

Logical identity (issue 2 decision): one logical mail is identified by its
Message-ID plus From, Date and a hash of the body with line ends normalised.
Raw copies of one mail differ (CRLF from IMAP, LF from a Maildir, extra
Received: lines at a second support address) but share all four; a forged
mail re-using a real Message-ID differs in the others and so cannot pre-empt
the real one.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from dateutil import parser as date_parser

from mailcase.mail.addresses import AddressList, parse_address_list
from mailcase.mail.headers import HeaderBlock, split_headers
from mailcase.mail.pins import redact as redact_pins

# no whitespace or control characters inside an id (RFC 5322 §3.6.4: dot-atom-text)
_MSGID = re.compile(r"<([^<>\s\x00-\x1f\x7f]+)>")
_BARE_MSGID = re.compile(r"^[^<>\s@\x00-\x1f\x7f]+@[^<>\s@\x00-\x1f\x7f]+$")
_MAX_IDS = 200
#: Received fields read for a time: RFC 5321 §6.3 treats a hundred hops as a loop
_MAX_RECEIVED = 100
#: characters of a Subject kept (display text; a case title, not a document)
MAX_SUBJECT_CHARS = 4000
#: characters of a Date value read: a date-time with a comment is under 100
_MAX_DATE_CHARS = 200
#: an id longer than a header line (RFC 5322 §2.1.1) is no Message-ID
_MAX_ID_CHARS = 998

DERIVED_MSGID_DOMAIN = "derived.mailcase.invalid"


def message_ids(value: str | None) -> tuple[str, ...]:
    """Every ``<id>`` in a Message-ID / In-Reply-To / References value."""
    if not value:
        return ()
    ids = tuple(f"<{m}>" for m in _MSGID.findall(value) if len(m) <= _MAX_ID_CHARS)
    if not ids:
        bare = value.strip()
        if len(bare) <= _MAX_ID_CHARS and _BARE_MSGID.match(bare):
            ids = (f"<{bare}>",)
    if len(ids) > _MAX_IDS:
        # keep the root and the most recent ancestors (RFC 5322 §3.6.4 trims the middle)
        ids = ids[:1] + ids[-(_MAX_IDS - 1) :]
    return ids


def parse_date(value: str | None) -> datetime | None:
    """An aware UTC datetime from a Date:-like value, or None."""
    if not value:
        return None
    # dateutil's fuzzy parser costs milliseconds per long value: a date is short
    value = " ".join(value[: _MAX_DATE_CHARS * 4].split())[:_MAX_DATE_CHARS]
    result: datetime | None
    try:
        result = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        try:
            with warnings.catch_warnings():
                # unknown zone names warn; the zone is then unknown, as for "-0000"
                warnings.simplefilter("ignore")
                result = date_parser.parse(value, fuzzy=True)
        except (ValueError, OverflowError, TypeError):
            return None
    if result is None:
        return None
    if result.tzinfo is None:
        result = result.replace(tzinfo=UTC)  # "-0000": zone unknown, RFC 5322 §3.3
    try:
        result = result.astimezone(UTC)
    except (OverflowError, ValueError):
        return None
    if not 1970 <= result.year <= 2200:
        return None
    return result


def normalised_body(raw: bytes, body_offset: int) -> bytes:
    """The body with CRLF -> LF and trailing blank space removed."""
    return raw[body_offset:].replace(b"\r\n", b"\n").rstrip(b"\n\r\t ")


_HASH_CHUNK = 1 << 20


_BARE_CR = re.compile(rb"\r(?!\n)")


def hash_normalised_body(h: "hashlib._Hash", raw: bytes, body_offset: int) -> None:
    """Feed :func:`normalised_body` to ``h`` a megabyte at a time.

    The same bytes, without the two or three whole copies of the body the
    one-liner makes (a 50 MB mail would cost 150 MB just to be hashed).
    """
    end = len(raw)
    while end > body_offset:  # trailing blank space, a chunk at a time
        start = max(body_offset, end - _HASH_CHUNK)
        kept = len(raw[start:end].rstrip(b"\n\r\t "))
        end = start + kept
        if kept:
            break
    view = memoryview(raw)
    pos = body_offset
    while pos < end:
        stop = min(pos + _HASH_CHUNK, end)
        if stop < end and raw[stop - 1] == 0x0D and stop - 1 > pos:  # never split a CRLF
            stop -= 1
        chunk = bytes(view[pos:stop])
        # with no bare CR, CRLF -> LF is deleting every CR: three times faster
        h.update(chunk.replace(b"\r\n", b"\n") if _BARE_CR.search(chunk) else chunk.translate(None, b"\r"))
        pos = stop


@dataclass(frozen=True)
class HeaderInfo:
    message_id: str
    message_id_derived: bool
    from_list: AddressList
    subject: str
    date_at: datetime | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    identity: str
    defects: tuple[str, ...] = field(default=())

    @property
    def from_addr(self) -> str | None:
        a = self.from_list.addresses
        return a[0].addr if a else None

    @property
    def from_name(self) -> str | None:
        a = self.from_list.addresses
        return a[0].name or None if a else None

    @property
    def from_strict(self) -> bool:
        return self.from_list.single is not None


def _from_list(block: HeaderBlock) -> AddressList:
    """The author; of several From fields, the first that holds an address.

    RFC 5322 §3.6 allows one From field.  With several the author is in
    doubt: the result says so in its defects, so it is never taken as a
    strict sender.
    """
    values = block.values("from")
    if len(values) <= 1:
        return parse_address_list(values[0] if values else None)
    chosen = None
    for value in values:
        candidate = parse_address_list(value)
        if candidate.addresses:
            chosen = candidate
            break
    chosen = chosen or parse_address_list(values[0])
    return AddressList(chosen.addresses, chosen.defects + (f"{len(values)} From fields",))


def read_headers(raw: bytes, block: HeaderBlock | None = None, identity: bool = True) -> HeaderInfo:
    """What the ledger reads from a header block.

    ``identity=False`` leaves out the logical identity (``identity`` is then
    empty, and a derived Message-ID is made without the body's hash): for a
    reader that wants the rest and has the identity stored already.
    """
    block = block or split_headers(raw)
    from_list = _from_list(block)
    if "from" in block.nul_fields:
        # what our receiving server authenticated may have ended at the NUL:
        # such a From is shown, never trusted
        from_list = AddressList(from_list.addresses, from_list.defects + ("NUL bytes in From",))
    full_subject = block.text("subject") or ""
    # a PIN written in the subject is redacted from everything derived from it
    # (the parse stage reads it from the raw header to check it)
    subject = redact_pins(full_subject)[:MAX_SUBJECT_CHARS]
    subject_cut = len(full_subject) > MAX_SUBJECT_CHARS
    date_value = block.first("date")
    date_at = parse_date(date_value)
    # the top-level MIME headers belong to the body: two mails with the same
    # bytes under a different Content-Type are different mails
    mime = "\0".join(" ".join((block.first(h) or "").lower().split())
                     for h in ("content-type", "content-transfer-encoding"))
    body_hash = ""
    if identity:
        hasher = hashlib.sha256(mime.encode("utf-8", "surrogatepass") + b"\0")
        hash_normalised_body(hasher, raw, block.body_offset)
        body_hash = hasher.hexdigest()
    from_key = from_list.addresses[0].addr if from_list.addresses else (block.first("from") or "")
    date_key = date_at.isoformat() if date_at else " ".join((date_value or "").split())

    ids = message_ids(block.first("message-id"))
    derived = not ids
    if ids:
        message_id = ids[0][:998]
    else:
        seed = "\0".join((from_key, date_key, full_subject, body_hash)).encode("utf-8", "surrogatepass")
        message_id = f"<{hashlib.sha256(seed).hexdigest()[:40]}@{DERIVED_MSGID_DOMAIN}>"

    identity_src = "\0".join((message_id, from_key, date_key, body_hash))
    key = hashlib.sha256(identity_src.encode("utf-8", "surrogatepass")).hexdigest() if identity else ""
    defects = list(block.defects) + [f"From: {d}" for d in from_list.defects]
    if not block.has("from"):
        defects.append("no From field")
    if derived:
        defects.append("no Message-ID; derived one")
    if date_value and date_at is None:
        defects.append("unparseable Date")
    if subject_cut:
        defects.append(f"Subject longer than {MAX_SUBJECT_CHARS} characters; cut")
    return HeaderInfo(
        message_id=message_id,
        message_id_derived=derived,
        from_list=from_list,
        subject=subject,
        date_at=date_at,
        in_reply_to=message_ids(block.first("in-reply-to")),
        references=message_ids(" ".join(block.values("references"))),
        identity=key,
        defects=tuple(defects),
    )


_RECEIVED_BY = re.compile(r"\bby\s+([A-Za-z0-9.\-\[\]:]+)", re.I)


def received_header_time(
    block: HeaderBlock, receiving_hosts: tuple[str, ...] = ()
) -> datetime | None:
    """The time on the topmost Received: our own server added.

    With ``receiving_hosts`` empty the topmost Received: counts (the last hop,
    which delivered the file to us); otherwise the topmost whose ``by`` host
    is one of them.  Anything lower down is the sender's to write.
    """
    hosts = {h.lower().rstrip(".") for h in receiving_hosts}
    for value in block.values("received")[:_MAX_RECEIVED]:
        if hosts:
            m = _RECEIVED_BY.search(value)
            if not m or m.group(1).lower().rstrip(".") not in hosts:
                continue
        _, semi, when = value.rpartition(";")
        if not semi:
            if hosts:
                return None
            continue
        at = parse_date(when)
        if at is not None or hosts:
            return at
    return None
