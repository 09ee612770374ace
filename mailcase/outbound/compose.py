"""Writing a mail we send: its headers, its addresses, its threading, its bytes.

Headers of every mail we send: our Message-ID (recognisable, naming the
case: msgid.py), In-Reply-To/References to the mail it answers (RFC 5322
§3.6.4), the case token in the subject, ``Auto-Submitted: auto-replied`` on
acknowledgements and notices (RFC 3834 §5), ``X-Auto-Response-Suppress: All``
so Exchange does not answer with out-of-office replies.  Mail goes to the
matched From address, never to a differing Reply-To; a mail copied to the
requester's colleagues names them in ``Cc`` and goes to each as a row of its
own with the same headers (outbound/copies.py).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import encode_rfc2231, format_datetime
from functools import lru_cache

from mailcase.config.settings import Config
from mailcase.core.errors import MailcaseError
from mailcase.core.states import MailKind, notice_kind
from mailcase.core.tokens import token_hex
from mailcase.mail.addresses import AddressError, format_mailbox
from mailcase.mail.msgid import make_message_id
from mailcase.mail.subjects import case_number as case_number_in
from mailcase.mail.subjects import format_case_token
from mailcase.mail.subjects import survey_number as survey_number_in
from mailcase.outbound.folding import HeaderTooLong, fold_field
from mailcase.outbound.render import Rendered, clean_header_text

#: RFC 3834 §5: replies to a person's mail are auto-replied; mail we start ourselves auto-generated
AUTO_SUBMITTED: dict[MailKind, str | None] = {
    MailKind.ACK: "auto-replied",
    MailKind.NOTICE: "auto-replied",
    MailKind.RESOLUTION: "auto-generated",
    MailKind.SURVEY: "auto-generated",
    MailKind.REPLY: None,  # a staff member wrote it
    MailKind.STAFF: "auto-generated",  # news of a case for staff
}


@dataclass(frozen=True)
class OutgoingAttachment:
    """A file sent with a mail (a staff reply's ``--attach``)."""

    name: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class OutgoingMail:
    key: str
    kind: MailKind
    notice_kind: str | None  # the notice (rules.base.Notice) a NOTICE is
    to_addr: str
    to_name: str
    rendered: Rendered
    case_id: int | None = None
    case_number: int | None = None
    case_ids: tuple[int, ...] = ()
    message_pk: int | None = None
    batch_id: int | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    attachments: tuple[OutgoingAttachment, ...] = ()
    #: the colleagues copied (the Cc header); every copy shows the same headers
    cc: tuple[str, ...] = ()
    #: a colleague's copy: the To header's address (the requester); ``to_addr`` is the colleague
    header_to: str | None = None
    #: the unique part of the Message-ID, shared by the requester's mail and its copies
    msgid_unique: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", MailKind(self.kind))  # a plain "reply" too; an unknown kind raises

    @property
    def is_copy(self) -> bool:
        """A colleague's copy of the requester's mail."""
        return self.header_to is not None

    @property
    def full_kind(self) -> str:
        """The kind as the outbox stores it: ``notice/<kind>`` for a notice."""
        return self.kind.value if not self.notice_kind else notice_kind(self.notice_kind)


class ComposeError(MailcaseError):
    """A mail cannot be written (an address no mail can carry, ...): that one mail
    fails with this reason; nothing else does."""


@lru_cache(maxsize=4096)  # the From line of every mail, a requester's To on each of their mails
def _address(name: str, addr: str) -> str:
    """A To/From value by RFC 5322/6532: quoted local parts stay quoted, the
    display name is a quoted-string or RFC 2047 encoded, never spliced."""
    try:
        return format_mailbox(name, addr).header
    except AddressError as exc:
        raise ComposeError(f"cannot address mail to {addr!r}: {exc}") from None


def _header(value: str) -> str:
    """Display text for a header (folded and, if not ASCII, encoded by :func:`_field`)."""
    return clean_header_text(value, 250)


def with_token(subject: str, case_number: int | None) -> str:
    """The subject with the case token, so replies thread even without headers."""
    if case_number is None or case_number_in(subject) == case_number or survey_number_in(subject) == case_number:
        return subject  # already names the case (a survey's own token does)
    return f"{format_case_token(case_number)} {subject}"


def compose(mail: OutgoingMail, config: Config, key: bytes, now: datetime) -> tuple[str, bytes]:
    """(our Message-ID, the exact bytes).

    Every header value passes through clean_header_text (no CR/LF, no
    control characters) so nothing a sender wrote can add a header line.
    """
    out = config.outgoing
    kind = mail.kind.value if mail.kind is not MailKind.NOTICE else f"n-{mail.notice_kind or 'x'}"[:20]
    message_id = make_message_id(key, out.domain, kind, mail.case_number, mail.msgid_unique)
    fields: list[tuple[str, str]] = [
        ("From", _address(out.from_name, out.from_address)),
        ("To", _address(mail.to_name, mail.header_to or mail.to_addr)),
        ("Subject", _header(with_token(mail.rendered.subject, mail.case_number))),
        ("Date", _date(now)),
        ("Message-ID", message_id),
    ]
    if mail.cc:
        fields.insert(2, ("Cc", ",\r\n ".join(_address("", a) for a in mail.cc)))  # folded between addresses
    parent = mail.in_reply_to if mail.in_reply_to and _MSG_ID.fullmatch(mail.in_reply_to) else None
    if parent:
        # only well-formed ASCII ids: a sender's odd Message-ID must not make
        # our header 8-bit or unparseable (RFC 5322 §3.6.4)
        refs = [r for r in mail.references if r != parent and _MSG_ID.fullmatch(r)][-20:] + [parent]
        fields.append(("In-Reply-To", parent))
        fields.append(("References", " ".join(refs)))
    auto = AUTO_SUBMITTED.get(mail.kind)
    if auto:
        fields.append(("Auto-Submitted", auto))
    fields.append(("X-Auto-Response-Suppress", "All"))
    fields.append(("X-Mailcase-Kind", mail.full_kind))
    return message_id, _alternative(fields, mail.rendered.text, mail.rendered.html, mail.attachments)


_MSG_ID = re.compile(r"<[!-;=?-~]{1,990}>")


@lru_cache(maxsize=64)  # a cutoff writes all its mail as of one instant
def _date(now: datetime) -> str:
    return format_datetime(now)

#: header fields holding addresses: written as composed, never re-folded (a
#: folder may not split inside a quoted local part, nor encode a UTF-8 one)
_ADDRESS_FIELDS = ("From", "To", "Cc")


def _field(name: str, value: str) -> str:
    """One header line, folded (RFC 5322 §2.2.3) when long, encoded (RFC 2047) when not ASCII."""
    if name in _ADDRESS_FIELDS or (len(name) + len(value) < 76 and value.isascii()):
        if len(name) + max(len(line) for line in value.split("\r\n")) > 996:
            raise ComposeError(f"{name} is longer than a header line may be")
        return f"{name}: {value}\r\n"
    try:
        return fold_field(name, value)
    except HeaderTooLong as exc:
        raise ComposeError(str(exc)) from None


def quoted_printable(text: str) -> str:
    """``text`` as UTF-8 quoted-printable with CRLF line ends (RFC 2045 §6.7).

    binascii's encoder, in C, rather than email.quoprimime's, in Python (a
    fifth of composing a cutoff's mail).  It decodes to the same text; soft
    line breaks may fall elsewhere, and a line of only "." is written "=2E"
    (a server that mishandles dot-stuffing cannot end the mail there).  Every
    line break (CRLF, LF, a lone CR) becomes CRLF.  binascii lets a line that
    ends in encoded white space run to 78 characters: such a line gets one
    more soft break.
    """
    data = text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    encoded = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False).decode("ascii")
    lines = encoded.split("\n")
    if max(map(len, lines)) > _QP_LINE:
        lines = [piece for line in lines for piece in _soft_breaks(line)]
    return "\r\n".join(lines)


#: the longest line quoted-printable allows (RFC 2045 §6.7 (5)), the soft break's "=" included
_QP_LINE = 76


def _soft_breaks(line: str) -> list[str]:
    """A too-long encoded line cut into lines of at most 76 characters, never inside an "=XX"."""
    out: list[str] = []
    while len(line) > _QP_LINE:
        cut = _QP_LINE - 1
        if line[cut - 1] == "=":
            cut -= 1
        elif line[cut - 2] == "=":
            cut -= 2
        out.append(line[:cut] + "=")
        line = line[cut:]
    out.append(line)
    return out


def _qp_part(subtype: str, text: str) -> str:
    """A text part, UTF-8, quoted-printable (what MIMEText with a QP charset writes)."""
    return (f'Content-Type: text/{subtype}; charset="utf-8"\r\nMIME-Version: 1.0\r\n'
            f"Content-Transfer-Encoding: quoted-printable\r\n\r\n{quoted_printable(text)}\r\n")


def _attachment_part(att: OutgoingAttachment) -> str:
    """A file as a base64 part; its name RFC 2231-encoded when not plain ASCII (never a path)."""
    name = re.sub(r"[\x00-\x1f\x7f\"\\/]", "_", att.name.replace("\\", "/").rsplit("/", 1)[-1])[:200] or "attachment"
    ctype = att.content_type if _CTYPE.fullmatch(att.content_type) else "application/octet-stream"
    try:
        name.encode("ascii")
        param = f'filename="{name}"'
    except UnicodeEncodeError:
        param = f"filename*={encode_rfc2231(name[:60], 'utf-8')}"  # a header line stays under 998
    body = base64.encodebytes(att.data).decode("ascii").replace("\n", "\r\n")
    return (f"Content-Type: {ctype}\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n"
            f"Content-Disposition: attachment; {param}\r\n\r\n{body}")


_CTYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}")


def _alternative(fields: Sequence[tuple[str, str]], text: str, html: str,
                 attachments: Sequence[OutgoingAttachment] = ()) -> bytes:
    """multipart/alternative of a text and an HTML part, CRLF line ends.

    Written directly rather than through email.generator (a fifth of the
    time: the generator re-folds every header and checks the boundary with a
    freshly compiled expression per message).  Every value was cleaned of
    CR/LF before it got here; the boundary starts with ``=_``, which no
    quoted-printable line can contain, so no body can end the part early.
    """
    boundary = f"=_mailcase_{token_hex(12)}"
    head = "".join(_field(n, v) for n, v in fields)
    alternative = (
        f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\n{_qp_part('plain', text)}--{boundary}\r\n{_qp_part('html', html)}--{boundary}--\r\n"
    )
    if attachments:  # multipart/mixed: the text first, then each file (base64: no line starts "--=_")
        mixed = f"=_mailcase_{token_hex(12)}"
        alternative = (
            f'Content-Type: multipart/mixed; boundary="{mixed}"\r\n\r\n--{mixed}\r\n{alternative}'
            + "".join(f"--{mixed}\r\n{_attachment_part(a)}" for a in attachments) + f"--{mixed}--\r\n"
        )
    # ASCII but for an internationalised address (RFC 6532: UTF-8 in the
    # header, sent only with SMTPUTF8)
    return f"{head}MIME-Version: 1.0\r\n{alternative}".encode("utf-8")
