"""Our Message-IDs: recognisable as ours, and naming what they belong to.

``<mc.KIND.CASE.UNIQUE.MAC@DOMAIN>``: MAC is a truncated HMAC over the rest
under ``secrets.hmac_key``, so mail claiming to be ours (a forged reply, a
bounce naming an invented Message-ID) cannot pass, and a real one found in
In-Reply-To/References of a reply names its case without a lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from mailcase.core.tokens import token_hex

_OURS = re.compile(r"^<mc\.([a-z-]{1,20})\.(\d{1,9})\.([0-9a-z]{6,40})\.([0-9a-f]{20})@([^<>@\s]+)>$", re.IGNORECASE)


@dataclass(frozen=True)
class OurId:
    kind: str
    case_number: int | None
    unique: str


def _mac(key: bytes, text: str) -> str:
    return hmac.new(key, b"mailcase-msgid:" + text.lower().encode("utf-8"), hashlib.sha256).hexdigest()[:20]


def make_message_id(key: bytes, domain: str, kind: str, case_number: int | None, unique: str | None = None) -> str:
    unique = (unique or token_hex(8)).lower()
    body = f"mc.{kind}.{case_number or 0}.{unique}"
    return f"<{body}.{_mac(key, body + '@' + domain)}@{domain}>"


def parse_our_message_id(key: bytes, message_id: str) -> OurId | None:
    m = _OURS.match(message_id.strip())
    if not m:
        return None
    kind, case, unique, mac, domain = m.groups()
    body = f"mc.{kind}.{case}.{unique}"
    if not hmac.compare_digest(_mac(key, body + "@" + domain), mac.lower()):
        return None
    number = int(case)
    return OurId(kind.lower(), number or None, unique.lower())


# -- VERP bounce addresses ---------------------------------------------------------------

_VERP = re.compile(r"^([^@+\s]+)\+(\d{1,12})-([0-9a-f]{10})@([^@\s]+)$", re.IGNORECASE)


def _verp_mac(key: bytes, row_id: int) -> str:
    return hmac.new(key, f"mailcase-verp:{row_id}".encode(), hashlib.sha256).hexdigest()[:10]


def verp_address(key: bytes, base: str, row_id: int) -> str:
    """The envelope sender of outbox row ``row_id``: ``local+ID-MAC@domain``."""
    local, _, domain = base.partition("@")
    return f"{local}+{row_id}-{_verp_mac(key, row_id)}@{domain}"


def parse_verp(key: bytes, base: str, address: str) -> int | None:
    """The outbox row a bounce address names, if it is ours and its MAC is right."""
    m = _VERP.match(address.strip().strip("<>"))
    if not m:
        return None
    local, row, mac, domain = m.groups()
    b_local, _, b_domain = base.partition("@")
    if local.lower() != b_local.lower() or domain.lower() != b_domain.lower():
        return None
    row_id = int(row)
    return row_id if hmac.compare_digest(_verp_mac(key, row_id), mac.lower()) else None
