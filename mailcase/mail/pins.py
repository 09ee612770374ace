"""Representatives' PINs: found wherever a person writes one, hashed, redacted.

A 4-digit PIN has 10,000 values: an unkeyed hash of it is no secret.  PINs
are stored only as HMAC-SHA256 under ``secrets.hmac_key`` (kept outside the
database), and every form of a PIN is redacted from every text mailcase
derives from a mail (text, subject, reply, notices, logs, CLI output): the
digits survive only in the raw mail, which is kept byte for byte.

A PIN is four digits next to the word PIN, in any of the forms people
write: ``PIN: 4321``, ``PIN 4321``, ``PIN#4321``, ``PIN-4321``, ``PIN：４３２１``
(full-width), ``P.I.N. 4321``, ``Pin-Code: 4321``, ``PIN number is 4321``,
``my PIN is 4321``, ``meine PIN lautet 4321``, ``mon code PIN est 4321``,
``mi PIN es 4321``, ``pincode 4321``, ``4321 is my PIN``, ``PIN (4321)``,
``**PIN:** 4321``, the label on one line and the digits on the next, in the
body or the subject.  The Québec ``NIP`` counts (in capitals only).
Digits of other scripts are read as ASCII.  A PIN label followed by a
number of another length, or the PIN of another device (``SIM PIN``), is no
PIN of ours but is redacted all the same: it is somebody's secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata

from mailcase.mail.quoting import latest_reply

REDACTED = "[redacted]"

# the label: PIN and its spellings; NIP (Québec French) only in capitals
_LABEL = (
    r"(?:(?<![^\W\d_])(?i:p\s?\.\s?i\s?\.\s?n\s?\.?|p\s+i\s+n|pin(?:[\s-]?(?:code|nummer|number|no\.?|nr\.?|num(?:é|e)ro"
    r"|n(?:ú|u)mero))?|pin[\s-]?code|kunden-?pin|support-?pin|geheim-?pin)(?![^\W\d_])"
    r"|(?<![^\W\d_])NIP(?![^\W\d_]))"
)
# what may stand between the label and the digits: punctuation, "is", "lautet", ...
_GLUE = (
    r"(?:[\s:：﹕#=\-–—>→'\"“”„‘’‚«»*(\[|\u200b\u200c\u200d\u2060\ufeff]|&nbsp;|\bis\b|\bwas\b|\bes\b|\bé\b|\bè\b"
    r"|\best\b|\bist\b|\blautet\b|\bel\b|\bo\b|\bil\b|\bmio\b|\bmia\b|\bis\b"
    r"|\ble\b|\bla\b|\bde\b|\bdu\b|\bdo\b|\bmy\b|\bour\b|\bmeine?\b|\bmon\b|\bmi\b|\bmeu\b|\bmijn\b|\bonze\b|\bnumber\b"
    r"|\bnummer\b|\bcode\b|\bno\.?|\bnr\.?|\bthe\b|\bsupport\b|\bcustomer\b|\bis:)"
)
# the digits: four (2+2 with one space also), not part of a longer number
_DIGITS = r"(?<!\d)(?P<pin>\d{2} ?\d{2})(?![\d])"
_FORWARD = re.compile(_LABEL + r"(?:" + _GLUE + r"){0,8}?" + _DIGITS)
# "4321 is my PIN", "4321 (PIN)"
_BACKWARD = re.compile(r"(?<!\d)(?P<pin>\d{4})(?!\d)\s*(?:\(\s*" + _LABEL + r"\s*\)|(?:is|=)\s+(?:my|our|the)\s+"
                       + _LABEL + r")")
# any label followed by a number of any length: redacted, not accepted
_ANY_NUMBER = re.compile(_LABEL + r"(?:" + _GLUE + r"){0,8}?(?P<pin>\d(?:[\d ]{0,10}\d)?)(?!\d)")
# a secret of another kind written the same way
_OTHER_SECRET = re.compile(r"(?<![^\W\d_])(?i:sim[\s-]?pin|puk|geheimzahl|passcode|password|passwort|kennwort)"
                           r"(?:" + _GLUE + r"){0,8}?(?P<pin>\d{3,8})(?!\d)")
# the PIN of something else: not a PIN of ours (still redacted above)
_NOT_OURS = re.compile(r"(?i:\bsim[\s-]?$|\bphone\s?$|\bcard\s?$|\bbank\s?$|\bkarten-?$)")


def _mirror(text: str) -> str:
    """``text`` with each character folded to its compatibility form when that is one
    character (full-width letters, digits and colons), so positions stay the same."""
    if text.isascii():
        return text
    out = []
    for ch in text:
        if ch.isascii():
            out.append(ch)
            continue
        folded = unicodedata.normalize("NFKC", ch)
        if len(folded) == 1:
            out.append(folded)
        elif ch.isdigit():
            out.append(str(unicodedata.digit(ch)))
        else:
            out.append(ch)
    return "".join(out)


def _ascii_digits(text: str) -> str:
    return "".join(str(unicodedata.decimal(c)) for c in text if c.isdecimal())


def pin_hmac(key: bytes, pin: str) -> str:
    return hmac.new(key, b"mailcase-pin:" + _ascii_digits(pin).encode("ascii"), hashlib.sha256).hexdigest()


def _ours(mirror: str, start: int) -> bool:
    """The label at ``start`` is not another device's PIN (SIM PIN, card PIN)."""
    return not _NOT_OURS.search(mirror[max(0, start - 8):start])


def pins_in(text: str) -> list[str]:
    """The PINs written in ``text``, ASCII digits, in order (duplicates kept)."""
    mirror = _mirror(text.replace("\u00a0", " "))
    found: list[tuple[int, str]] = []
    for m in _FORWARD.finditer(mirror):
        if _ours(mirror, m.start()):
            found.append((m.start("pin"), _ascii_digits(m.group("pin"))))
    for m in _BACKWARD.finditer(mirror):
        found.append((m.start("pin"), _ascii_digits(m.group("pin"))))
    return [pin for _, pin in sorted(set(found))]


def find_pins(text: str, reply: str | None = None, subject: str = "") -> list[str]:
    """The PINs in the newest, unquoted part of ``text`` (``reply``, when the
    caller worked it out already) and in ``subject``."""
    out = pins_in(subject) if subject else []
    if _FORWARD.search(_mirror(text)) is None and _BACKWARD.search(_mirror(text)) is None:
        return out  # no PIN anywhere: no need to find the newest part
    return out + pins_in(latest_reply(text) if reply is None else reply)


def redact(text: str) -> str:
    """``text`` with every PIN-like secret replaced: accepted forms, numbers of
    another length after a PIN label, PINs in quoted text, other devices' PINs."""
    if not text:
        return text
    mirror = _mirror(text.replace("\u00a0", " "))
    spans: list[tuple[int, int]] = []
    for pattern in (_ANY_NUMBER, _FORWARD, _BACKWARD, _OTHER_SECRET):
        for m in pattern.finditer(mirror):
            digits = m.group("pin")
            if pattern is _ANY_NUMBER and len(_ascii_digits(digits)) < 3:
                continue  # "pin 4" of a connector: a count or a position, no secret
            spans.append(m.span("pin"))
    if not spans:
        return text
    out = []
    last = 0
    for start, end in sorted(spans):
        if start < last:
            continue
        out.append(text[last:start])
        out.append(REDACTED)
        last = end
    out.append(text[last:])
    return "".join(out)


def valid_pin(pin: str) -> bool:
    return len(_ascii_digits(pin)) == 4 and pin.strip().isdecimal()
