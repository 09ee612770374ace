"""The quoted-printable writer of outgoing text parts (outbound/compose.py): every text
comes back as written (line breaks as CRLF), in lines of at most 76 characters."""

from __future__ import annotations

import binascii
import email
import random
from email import policy

import pytest

from mailcase.outbound.compose import _alternative, quoted_printable


def _decoded(encoded: str) -> str:
    return binascii.a2b_qp(encoded.replace("\r\n", "\n").encode("ascii")).decode("utf-8")


@pytest.mark.parametrize("text", [
    "", "a\n", "Å", "Ångström, naïve, 😀\r\n", "tab\tend\t\n", "trailing space \r\n", "x" * 74 + "é",
    "--=_mailcase_x\r\n", ".\r\n", "a = b\n", "\x0b\x0c\x85", "y" * 75 + " \n" + "z" * 74 + "\t\n",
])
def test_round_trips_with_crlf_lines_of_at_most_76(text: str) -> None:
    encoded = quoted_printable(text)
    assert encoded.isascii()
    assert all(len(line) <= 76 for line in encoded.split("\r\n"))
    assert "\n" not in encoded.replace("\r\n", "") and "\r" not in encoded.replace("\r\n", "")
    assert _decoded(encoded) == text.replace("\r\n", "\n").replace("\r", "\n")
    assert not any(line.startswith("--") and "=_" in line for line in encoded.split("\r\n"))


def test_random_texts_round_trip() -> None:
    r = random.Random(17)
    alphabet = "ab =\t.\r\n\nÅé€😀-_F\x0b\x0c"
    for _ in range(3000):
        text = "".join(r.choice(alphabet) for _ in range(r.randint(0, 400)))
        encoded = quoted_printable(text)
        assert max(len(line) for line in encoded.split("\r\n")) <= 76
        assert _decoded(encoded) == text.replace("\r\n", "\n").replace("\r", "\n")


def test_a_mail_reader_gets_the_text_back() -> None:
    """The email package's own reader decodes what we write: "Å" (UTF-8 C3 85) stays one letter."""
    text = "Hej Åsa,\n\nvi har mottagit ditt ärende.  = 100 %\n" + "lång rad " * 20 + "\n"
    raw = _alternative([("Subject", "x")], text, "<p>Åsa</p>")
    msg = email.message_from_bytes(raw, policy=policy.default)
    plain = msg.get_body(("plain",))
    assert plain is not None
    assert plain.get_content().replace("\r\n", "\n") == text
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))

