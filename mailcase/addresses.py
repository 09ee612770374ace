"""Exact address parsing (DESIGN §3).

``email.utils.parseaddr`` is fooled by ``alice@example.org)<bob@example.org>``;
the RFC 5322 parser of ``email.headerregistry`` is not, and reports defects.
A From header counts as *strict* only when it holds exactly one mailbox with
a local part and a domain and the parser found nothing wrong: anything else
is kept for display but never matched against a representative.

Encoded-words are decoded before parsing (with mailcase's charset mapping)
and re-quoted when the decoded text holds specials, so
``=?utf-8?q?Doe=2C_John?= <j@x.org>`` stays one mailbox.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import errors as email_errors
from email.policy import default as default_policy

from mailcase.charsets import ENCODED_WORD, decode_encoded_words

_SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]')


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
    """The form addresses are compared in: trimmed, lower case, no trailing dot."""
    return addr.strip().strip("<>").rstrip(".").lower()


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
                nxt = re.match(r"\s*", value[end:])
                j = end + (nxt.end() if nxt else 0)
                m2 = ENCODED_WORD.match(value, j)
                if not m2:
                    break
                end = m2.end()
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
    text = _requote_encoded_words(value).replace("\r", " ").replace("\n", " ")
    try:
        header = default_policy.header_factory("To", text)
        parsed = header.addresses
        defects = tuple(
            str(d) for d in header.defects if isinstance(d, email_errors.InvalidHeaderDefect)
        )
    except Exception as exc:  # the stdlib parser has raised IndexError etc. on garbage
        return AddressList((), (f"unparseable address header: {type(exc).__name__}",))
    out: list[Address] = []
    bad: list[str] = list(defects)
    for a in parsed:
        if not a.username or not a.domain:
            bad.append(f"not a complete address: {a.addr_spec!r}")
            continue
        try:
            name = str(a.display_name or "").strip()
            spec = str(a.addr_spec)
        except Exception:  # surrogates from undecodable bytes
            bad.append("undecodable address")
            continue
        out.append(Address(name=name, addr=normalise(spec)))
    return AddressList(tuple(out), tuple(bad))


def domain_of(addr: str) -> str:
    return addr.rpartition("@")[2].lower()
