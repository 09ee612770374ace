"""Representatives' PINs: found, hashed with the configured key, redacted.

A 4-digit PIN has 10,000 values: an unkeyed hash of it is no secret.  PINs
are stored only as HMAC-SHA256 under ``secrets.hmac_key`` (kept outside the
database), and a ``PIN: nnnn`` line is redacted from every text mailcase
derives from a mail, so the digits appear in no stored text, notice or log.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from mailcase.quoting import latest_reply

# one labelled line: "PIN: 1234" (also "PIN 1234", "Pin #1234")
_PIN_LINE = re.compile(r"^(?P<lead>[ \t]*PIN[ \t]*[:#=]?[ \t]*)(?P<pin>\d{4})[ \t]*$", re.IGNORECASE | re.MULTILINE)
_ANY_PIN = re.compile(r"(?P<lead>\bPIN[ \t]*[:#=]?[ \t]*)(?P<pin>\d{4})\b", re.IGNORECASE)
REDACTED = "[redacted]"


def pin_hmac(key: bytes, pin: str) -> str:
    return hmac.new(key, b"mailcase-pin:" + pin.encode("ascii"), hashlib.sha256).hexdigest()


def find_pins(text: str, reply: str | None = None) -> list[str]:
    """The PINs on labelled lines of the newest, unquoted part of ``text``
    (``reply``, when the caller worked it out already)."""
    if not _PIN_LINE.search(text):
        return []  # no PIN line anywhere: no need to find the newest part
    return [m.group("pin") for m in _PIN_LINE.finditer(latest_reply(text) if reply is None else reply)]


def redact(text: str) -> str:
    """``text`` with every labelled PIN replaced (quoted ones too)."""
    return _ANY_PIN.sub(lambda m: m.group("lead") + REDACTED, text)


def valid_pin(pin: str) -> bool:
    return bool(re.fullmatch(r"\d{4}", pin))
