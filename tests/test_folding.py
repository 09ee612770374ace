"""Header lines of outgoing mail (outbound/folding.py): folded and encoded so that a
reader gets back exactly the value, lines within RFC 5322's limits."""

from __future__ import annotations

import email
import random
from email import policy
from email.header import decode_header, make_header

import pytest

from mailcase.outbound.compose import ComposeError, _alternative, _field
from mailcase.outbound.folding import LINE, encoded_words, fold_field


def _unfold(lines: str) -> str:
    assert lines.endswith("\r\n")
    return lines[:-2].replace("\r\n", "")


@pytest.mark.parametrize("value", [
    "short", "word " * 40, "[#1234] Re: " + "a" * 100 + " tail", "a  b   c" * 20, "x" * 200,
    "<a@b> <c@d> " * 12, "lead\tand tab " * 10,
])
def test_ascii_values_unfold_to_themselves(value: str) -> None:
    value = value.strip()
    lines = fold_field("Subject", value)
    assert _unfold(lines) == f"Subject: {value}"
    for n, line in enumerate(lines[:-2].split("\r\n")):
        assert line.strip(" \t"), "no line of only white space"
        words = line[len("Subject: "):] if n == 0 else line.lstrip(" \t")
        assert len(line) <= LINE or not any(c in words for c in " \t")  # only an unbreakable word runs over


@pytest.mark.parametrize("value", [
    "Ärende: skrivaren", "😀" * 40, "Réf. " + "é" * 120, "日本語の件名です" * 6, "mixed ascii and ü " * 8, "e\u0301",
])
def test_other_values_decode_to_themselves(value: str) -> None:
    lines = fold_field("Subject", value)
    for line in lines[:-2].split("\r\n"):
        assert line.isascii() and len(line) <= LINE
    for word in encoded_words(value):
        assert len(word) <= 75
    assert str(make_header(decode_header(_unfold(lines)[len("Subject: "):]))) == value


def test_random_subjects_through_a_mail_reader() -> None:
    r = random.Random(3)
    alphabet = "ab c  ÅéZ😀-[]#1\t"
    for _ in range(500):
        value = "".join(r.choice(alphabet) for _ in range(r.randint(1, 250))).strip(" \t") or "x"
        raw = _alternative([("Subject", value), ("References", " ".join(f"<{i}@x.example>" for i in range(30)))],
                           "t", "<p>h</p>")
        head = raw.split(b"\r\n\r\n", 1)[0]
        assert all(len(line) <= 998 for line in head.split(b"\r\n"))
        msg = email.message_from_bytes(raw, policy=policy.default)
        assert str(msg["Subject"]) == " ".join(value.split()) or str(msg["Subject"]) == value
        assert msg["References"].split() == [f"<{i}@x.example>" for i in range(30)]


def test_a_word_longer_than_998_is_refused() -> None:
    with pytest.raises(ComposeError):
        _field("References", "<" + "a" * 1200 + "@x>")
