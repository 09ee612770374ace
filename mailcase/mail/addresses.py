"""Exact address parsing (docs/design.md §3).

``email.utils.parseaddr`` is fooled by ``alice@example.org)<bob@example.org>``;
the RFC 5322 parser of ``email.headerregistry`` is not, and reports defects.
A From header counts as *strict* only when it holds exactly one mailbox with
a local part and a domain and the parser found nothing wrong: anything else
is kept for display but never matched against a representative.

Encoded-words are decoded before parsing (with mailcase's charset mapping)
and re-quoted when the decoded text holds specials, so
``=?utf-8?q?Doe=2C_John?= <j@x.org>`` stays one mailbox.

The standard library's parser slices the rest of the value at every token,
so its cost grows with the square of the value's length: 20,000 addresses
in one To field take 18 s, an address of 100,000 dots a minute.  A long
value is therefore split into its addresses first (outside quotes, comments,
angle brackets and groups) and each is parsed alone; at most
``MAX_ADDRESSES`` are read and an address longer than ``_MAX_ADDRESS_CHARS``
is not read at all (a defect says so).  Control characters never reach a
stored name or address: in a name they become spaces, in an address they
are removed and the address is never strict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import errors as email_errors
from email.policy import default as default_policy

from mailcase.mail.charsets import ENCODED_WORD, decode_encoded_words, storable

_SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]')
_ROOT_DOT = re.compile(r"(?<=[A-Za-z0-9])\.(?=\s*>)")
_WS = re.compile(r"\s*")
_LINE_BREAKS = re.compile(r"[\r\n]+")
_AT_NEXT = re.compile(r"\s*@")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]+")
_ADDR_JUNK = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
#: addresses read from one field
MAX_ADDRESSES = 1000
#: a value longer than this is split into addresses before parsing
_SPLIT_ABOVE = 4096
#: a single address longer than this is not read (RFC 5321 §4.5.3.1.3: a
#: path is at most 256 octets; a display name rarely reaches a hundred)
_MAX_ADDRESS_CHARS = 4096


@dataclass(frozen=True)
class Address:
    name: str
    addr: str  # normalised: lower case, no surrounding space

    def formatted(self) -> str:
        return f"{self.name} <{self.addr}>" if self.name else self.addr


@dataclass(frozen=True)
class AddressList:
    addresses: tuple[Address, ...]
    defects: tuple[str, ...]

    @property
    def single(self) -> Address | None:
        """The one well-formed mailbox, or None when there is not exactly one."""
        if len(self.addresses) == 1 and not self.defects:
            return self.addresses[0]
        return None


def normalise(addr: str) -> str:
    """The form addresses are compared in.

    Trimmed and lower case, without the root dot of a fully qualified
    domain, and with a quoted local part in its canonical form: a
    quoted-string is the same local part as its content (RFC 5322 §3.2.4,
    §3.4.1), so ``"john"@example.org`` is ``john@example.org``; content that
    is no dot-atom (``"john doe"``, ``"a,b"``, ``"x@y"``) keeps its quotes,
    so the stored address stays one that can be written back into a mail
    and can never pass for another address.
    """
    addr = addr.strip().strip("<>")
    local, at, domain = addr.rpartition("@")
    if not at:
        return addr.rstrip(".").lower()
    return f"{_unquote_local(local)}@{domain.strip().rstrip('.')}".lower()


def _unquote_local(local: str) -> str:
    """A quoted local part in its one canonical form: bare when its content
    is a dot-atom (RFC 5322 §3.4.1: the same local part), else quoted with
    only ``"`` and ``\\`` escaped -- never unquoted into something that is
    no addr-spec (``"john doe"`` stays quoted)."""
    if len(local) < 2 or not (local.startswith('"') and local.endswith('"')):
        return local
    inner = re.sub(r"\\(.)", r"\1", local[1:-1])
    return quote_local(inner)


# RFC 5322 §3.2.3 atext, with RFC 6532's UTF-8 (any non-ASCII character)
_ATEXT_U = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+"
_DOT_ATOM_U = re.compile(rf"{_ATEXT_U}(?:\.{_ATEXT_U})*")
# qtext and quoted-pair content: printable ASCII, space, tab, UTF-8
_QUOTABLE = re.compile(r"[ \t!-~\u0080-\U0010ffff]*")
_LDH_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_DOMAIN_LITERAL = re.compile(r"\[[!-Z^-~]*\]")
_PHRASE_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]+")


def quote_local(local: str) -> str:
    """``local`` as an RFC 5322 local part: a dot-atom as it is, anything else quoted."""
    if _DOT_ATOM_U.fullmatch(local):
        return local
    return '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'


class AddressError(ValueError):
    """An address that cannot be written into a mail (the text says why)."""


@dataclass(frozen=True)
class Formatted:
    """A mailbox ready for a header and the SMTP envelope."""

    header: str    # ``name <addr>`` or ``addr`` for a To/From field
    envelope: str  # the addr-spec for MAIL FROM / RCPT TO (without angle brackets)
    #: the address needs SMTPUTF8 (RFC 6531): its local part is not ASCII
    utf8: bool


def ascii_domain(domain: str) -> str:
    """The domain as A-labels (IDNA 2008, UTS #46 mapping), or a domain literal; AddressError if neither."""
    if _DOMAIN_LITERAL.fullmatch(domain):
        return domain
    if not domain.isascii():
        import idna

        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise AddressError(f"domain {domain!r} is not a valid internationalised domain: {exc}") from None
    labels = domain.rstrip(".").split(".")
    if len(labels) < 1 or not all(_LDH_LABEL.fullmatch(label) for label in labels) or len(domain) > 253:
        raise AddressError(f"domain {domain!r} is not a host name")
    return domain.rstrip(".").lower()


def addr_spec(addr: str) -> tuple[str, bool]:
    """(the addr-spec to write, needs SMTPUTF8) for a stored address.

    The local part keeps (or gets) its quotes (RFC 5322 §3.4.1); an
    internationalised domain becomes A-labels, so only a non-ASCII local
    part needs SMTPUTF8 (RFC 6531).  AddressError for anything that is no
    deliverable address: control characters, no domain, a bad domain.
    """
    if _ADDR_JUNK.search(addr) or "\r" in addr or "\n" in addr:
        raise AddressError(f"address {addr!r} holds control characters")
    local, at, domain = addr.strip().rpartition("@")
    if not at or not local or not domain:
        raise AddressError(f"{addr!r} is not an address (no local part and domain)")
    if len(local) >= 2 and local.startswith('"') and local.endswith('"'):
        content = re.sub(r"\\(.)", r"\1", local[1:-1])
    else:
        content = local
    if not _QUOTABLE.fullmatch(content):
        raise AddressError(f"local part of {addr!r} holds characters no address may hold")
    written = quote_local(content)
    if len(written.encode("utf-8")) > 64 * 4:  # RFC 5321 §4.5.3.1.1 says 64 octets; be lenient, not unbounded
        raise AddressError(f"local part of {addr!r} is too long")
    return f"{written}@{ascii_domain(domain)}", not written.isascii()


def display_phrase(name: str) -> str:
    """A display name as an RFC 5322 phrase: atoms as they are, ASCII with
    specials quoted, anything else RFC 2047 encoded -- never spliced raw."""
    if not name:
        return ""
    if name.isascii():
        if _PHRASE_ATOMS.fullmatch(name):
            return name
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    from email.header import Header

    return Header(name, "utf-8").encode(linesep="")


def format_mailbox(name: str, addr: str) -> Formatted:
    """``name <addr>`` for a header, safe whatever the name and address hold."""
    spec, utf8 = addr_spec(addr)
    phrase = display_phrase(" ".join(_CONTROLS.sub(" ", storable(name or "")).split())[:100])
    return Formatted(f"{phrase} <{spec}>" if phrase else spec, spec, utf8)


def _requote_encoded_words(value: str) -> str:
    """Decode encoded-words, keeping the header's structure intact."""
    if "=?" not in value:
        return value
    out: list[str] = []
    in_quotes = False
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and in_quotes and i + 1 < len(value):
            out.append(value[i : i + 2])
            i += 2
            continue
        if ch == '"':
            in_quotes = not in_quotes
            out.append(ch)
            i += 1
            continue
        m = ENCODED_WORD.match(value, i)
        if m:
            # swallow a run of adjacent encoded-words (whitespace between them is not shown)
            end = m.end()
            while True:
                ws = _WS.match(value, end)
                m2 = ENCODED_WORD.match(value, ws.end() if ws else end)
                if not m2:
                    break
                end = m2.end()
            before = i
            while before > 0 and value[before - 1].isspace():
                before -= 1
            if _AT_NEXT.match(value, end) or value[before - 1 : before] == "@":
                # RFC 2047 §5 (3): never an encoded-word inside an addr-spec;
                # decoding one there would change the address
                out.append(value[i:end])
                i = end
                continue
            text = decode_encoded_words(value[i:end])
            escaped = text.replace("\\", "\\\\").replace('"', '\\"')
            if in_quotes:
                out.append(escaped)
            elif _SPECIALS.search(text):
                out.append(f'"{escaped}"')
            else:
                out.append(text)
            i = end
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def parse_address_list(value: str | None) -> AddressList:
    """Parse an address header value (already decoded from bytes)."""
    if not value or not value.strip():
        return AddressList((), ())
    # a line break an encoded-word smuggled in is one space, as in display_text
    text = _LINE_BREAKS.sub(" ", _requote_encoded_words(value))
    if len(text) <= _SPLIT_ABOVE:
        return _parse(text)
    addresses: list[Address] = []
    defects: list[str] = []
    pieces = split_addresses(text)
    if len(pieces) > MAX_ADDRESSES:
        defects.append(f"more than {MAX_ADDRESSES} addresses; rest not read")
        pieces = pieces[:MAX_ADDRESSES]
    for piece in pieces:
        if len(piece) > _MAX_ADDRESS_CHARS:
            defects.append(f"an address longer than {_MAX_ADDRESS_CHARS} characters; not read")
            continue
        one = _parse(piece)
        addresses.extend(one.addresses)
        defects.extend(d for d in one.defects if d not in defects)
    return AddressList(tuple(addresses), tuple(defects))


def split_addresses(text: str) -> list[str]:
    """The comma-separated items of an address list, split where RFC 5322 allows.

    Commas inside a quoted string, a comment, an angle-addr or a group
    (``name: a, b;``) do not split.  Linear in the length of ``text``.
    """
    pieces: list[str] = []
    start = 0
    quoted = False
    comment = angle = 0
    group = False
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and (quoted or comment):
            i += 2
            continue
        if quoted:
            quoted = ch != '"'
        elif ch == '"':
            quoted = True
        elif ch == "(":
            comment += 1
        elif ch == ")" and comment:
            comment -= 1
        elif comment:
            pass
        elif ch == "<":
            angle += 1
        elif ch == ">" and angle:
            angle -= 1
        elif angle:
            pass
        elif ch == ":":
            group = True
        elif ch == ";":
            group = False
        elif ch == "," and not group:
            if text[start:i].strip():
                pieces.append(text[start:i])
            start = i + 1
        i += 1
    if text[start:].strip():
        pieces.append(text[start:])
    return pieces


# The common forms, ASCII only: ``local@domain``, ``<local@domain>``,
# ``Plain Name <local@domain>``, ``"Quoted Name" <local@domain>``, comma
# separated.  The RFC 5322 parser reads them exactly so (tests/test_fuzz.py
# checks the two agree) at a twentieth of its cost; anything else (comments,
# groups, encoded or non-ASCII names, obsolete syntax, a stray special) goes to it.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SPEC = rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
_NAME_WORD = r"[A-Za-z0-9!#$%&'*+/^_`{|}~-]+"  # no = or ?: an encoded-word is the parser's
_QCHARS = r"[!#-+\--<>@-\[\]-~]+"  # printable, no quote, backslash, comma, = or ?
_SIMPLE = re.compile(
    rf"[ \t]*(?:({_SPEC})|(?:({_NAME_WORD}(?: {_NAME_WORD})*)|\"({_QCHARS}(?: {_QCHARS})*)\")?[ \t]*<({_SPEC})>)[ \t]*"
)


def _parse_simple(text: str) -> AddressList | None:
    if not text.isascii() or "=?" in text:
        return None
    out: list[Address] = []
    for piece in text.split(","):
        m = _SIMPLE.fullmatch(piece)
        if m is None:
            return None
        bare, phrase, quoted, spec = m.groups()
        out.append(Address(name=phrase or quoted or "", addr=normalise(bare or spec)))
    return AddressList(tuple(out), ())


def _parse(text: str) -> AddressList:
    return _parse_simple(text) or _parse_rfc5322(text)


def _parse_rfc5322(text: str) -> AddressList:
    root_dot: tuple[str, ...] = ()
    if ".>" in text.replace(" ", ""):
        # a fully qualified domain's root dot (`<a@example.org.>`) is no
        # RFC 5322 dot-atom and throws the parser off the whole address
        text, count = _ROOT_DOT.subn("", text)
        root_dot = ("domain ends in a dot",) if count else ()
    try:
        header = default_policy.header_factory("To", text)
        parsed = header.addresses
        defects = tuple(
            storable(str(d)) for d in header.defects if isinstance(d, email_errors.InvalidHeaderDefect)
        )
    except Exception as exc:  # the stdlib parser has raised IndexError etc. on garbage
        return AddressList((), (f"unparseable address header: {type(exc).__name__}",))
    out: list[Address] = []
    bad: list[str] = list(defects) + list(root_dot)
    for a in parsed:
        try:
            name = str(a.display_name or "").strip()
            local = str(a.username or "")
            domain = str(a.domain or "")
            spec = str(a.addr_spec)
        except Exception:
            bad.append("undecodable address")
            continue
        name = storable(name)
        if _CONTROLS.search(name):
            name = " ".join(_CONTROLS.sub(" ", name).split())
        if _ADDR_JUNK.search(spec):
            # a NUL or line break inside an address: kept for display without
            # it, never trusted (a defect makes the list not strict)
            bad.append("control characters in an address; removed")
            spec = _ADDR_JUNK.sub("", spec)
            local = _ADDR_JUNK.sub("", local)
        if not local.strip():
            bad.append(f"not a complete address: {spec!r}")
            continue
        if not domain:
            # RFC 5322 §3.4.1 requires a domain, but local bounces come from
            # a bare MAILER-DAEMON: kept (as written, quotes and all) so rules
            # can see it, and a defect, so it is never a strict sender
            bad.append(f"no domain: {spec!r}")
            out.append(Address(name=name, addr=spec.strip().lower()))
            continue
        out.append(Address(name=name, addr=normalise(spec)))
    return AddressList(tuple(out), tuple(bad))


def domain_of(addr: str) -> str:
    return addr.rpartition("@")[2].lower()
