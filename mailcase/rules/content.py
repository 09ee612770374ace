"""What the content-only rules work out from a mail alone, kept with its classification.

A cutoff runs the whole chain again on every pending mail, so that what
depends on the directory, the cases, the clock and other mail is judged as of
the cutoff.  Some answers depend on nothing but the mail: whether it is a
bounce, an auto-reply or machine mail, what advice it asks for, the severity
it names (a configured keyword's is kept with the keywords it was found
under).  Those are the chain's dearest steps, and the classify stage worked
them out minutes earlier: their results are kept (the ``content`` column of
the classification, beside ``auth``) and a cutoff reads them instead of
working them out again.  Identity, standing, PIN, threading, floods, repeats,
abuse counts and notices still run as of the cutoff.

A stored result is used only when it was computed from the same mail by the
same code: it carries a key, a digest of the code of the modules that compute
it and of everything of the mail they read (the header block, and the
charsets its 8-bit bytes are decoded by; the header fields as the pass sees
them; the text and its newest part).  A mail classified by an older version,
or seen differently by the two passes, has no usable results and is worked
out afresh, as before.

Every result goes through its JSON form before a rule reads it, also when it
was just computed, so a rule reads the same thing whether it was stored or
not.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from collections.abc import Callable
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

from mailcase.rules.base import Mail

T = TypeVar("T")

#: the modules whose code computes the stored results (a change to any makes them stale)
_CODE = (
    "mailcase.rules.content", "mailcase.rules.base", "mailcase.rules.bounce", "mailcase.rules.automatic",
    "mailcase.rules.autoreplies", "mailcase.rules.prefilter", "mailcase.rules.scope", "mailcase.rules.scope_concepts",
    "mailcase.rules.severity", "mailcase.mail.subjects", "mailcase.mail.parse.tree", "mailcase.mail.header_info",
    "mailcase.mail.headers",
)


@cache
def code_digest() -> str:
    """A digest of the code the results come from, the bounce detector's version and Python's."""
    h = hashlib.sha256(sys.version.encode())
    try:
        h.update(version("flufl.bounce").encode())
    except PackageNotFoundError:  # pragma: no cover - a dependency
        pass
    for name in _CODE:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        h.update(name.encode() + b"\0")
        if origin:
            with open(origin, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def _key(mail: Mail) -> str:
    """What the results were computed from: the code and every part of the mail they read
    (worked out once per pass: the pass reads the stored results and stores them again)."""
    key = mail.memo.get("content-key")
    if key is None:
        key = mail.memo["content-key"] = _work_out_key(mail)
    return str(key)


def _work_out_key(mail: Mail) -> str:
    h = hashlib.sha256(code_digest().encode())
    info = mail.info
    for part in (mail.subject, mail.sender or "", info.from_name or "", "1" if info.in_reply_to else "0",
                 mail.body, mail.reply_text):
        encoded = part.encode("utf-8", "surrogatepass")
        h.update(len(encoded).to_bytes(8, "big") + encoded)
    head = mail.raw[: mail.block.body_offset]
    h.update(head)
    if not head.isascii():
        # 8-bit header bytes are decoded by the charsets the whole message declares,
        # and a cutoff reads only the head of a large mail
        h.update(repr(mail.block.charsets).encode())
    return h.hexdigest()


def remembered(mail: Mail, name: str, compute: Callable[[], T], encode: Callable[[T], Any],
               decode: Callable[[Any], T], given: str | None = None) -> T:
    """The result ``name`` for this mail: stored, or computed now and kept for the record.

    ``encode`` makes its JSON form (lists, strings, numbers, booleans, None)
    and ``decode`` reads it back; the rule always reads the decoded form.
    ``given`` names what else the result depends on (configured phrases): a
    result stored under another ``given`` is worked out again.
    """
    facts = mail.facts
    if given is None:
        if name not in facts:
            facts[name] = encode(compute())
        return decode(facts[name])
    stored = facts.get(name)
    if not (isinstance(stored, list) and len(stored) == 2 and stored[0] == given):
        stored = facts[name] = [given, encode(compute())]
    return decode(stored[1])


def settings_digest(value: object) -> str:
    """A short digest of configured values (``given`` of :func:`remembered`)."""
    return hashlib.sha256(repr(value).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def content_json(mail: Mail) -> dict[str, Any] | None:
    """The results to store with the classification (None: none worked out, or not storable)."""
    if not mail.facts:
        return None
    data = {"key": _key(mail), "facts": dict(mail.facts)}
    try:
        # a text the database cannot hold (a lone surrogate, NUL) is not stored: the cutoff works it out
        text = json.dumps(data, ensure_ascii=False)
        text.encode("utf-8")
    except (TypeError, ValueError, UnicodeError):
        return None
    if "\x00" in text or "\\u0000" in text:
        return None
    return data


def content_from_json(data: Any, mail: Mail) -> dict[str, Any]:
    """The stored results, if they were computed from this mail by this code; else none."""
    if not isinstance(data, dict) or not isinstance(data.get("facts"), dict) or data.get("key") != _key(mail):
        return {}
    return dict(data["facts"])
