"""Fingerprints of a mail's text: equal for resent copies and for an autoresponder's variations.

The parse worker stores them; the rules compute them for mail parsed before
they were stored.  One definition for both sides.
"""

from __future__ import annotations

import hashlib
import re


def fingerprint(text: str) -> str:
    """sha256 of ``text`` with whitespace collapsed: equal for resent copies."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8", "replace")).hexdigest()


_NOT_WORD = re.compile(r"[\W\d_]+")


def loose_fingerprint(text: str) -> str:
    """sha256 of the words of ``text``, lower case, numbers and punctuation gone:
    equal for the texts of an autoresponder that only change a date or a number."""
    return hashlib.sha256(" ".join(_NOT_WORD.sub(" ", text[:20000].lower()).split()).encode("utf-8")).hexdigest()
