"""The literal prefilter (mailcase/rules/prefilter.py) answers exactly as the pattern it fronts (issue 17).

It skips a body pattern when the text lacks the words its phrases need; a
wrong word would make an auto-reply look like a request.  Checked against the
pattern itself on the auto-reply corpus, on texts made of the phrases' own
words, and on the characters case-insensitive matching treats specially
(dotted capital I, long s, Kelvin sign).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from rules_fake import mail_from_bytes

from mailcase.rules import autoreplies
from mailcase.rules.prefilter import Phrases, canon

CORPUS = Path(__file__).parent / "autoreply_corpus"
PREFILTERED = {
    **{f"ooo:{k}": p for k, p in autoreplies.OOO_KINDS.items() if isinstance(p, Phrases)},
    **{f"receipt:{k}": p for k, p in autoreplies.RECEIPT_KINDS.items() if isinstance(p, Phrases)},
    "read-notice": autoreplies.READ_NOTICE, "machine-body": autoreplies.MACHINE_BODY,
}


def same(p: Phrases, text: str) -> None:
    want = p.pattern.search(text)
    got = p.search(text)
    assert (got and (got.span(), got.group(0))) == (want and (want.span(), want.group(0))), text[:200]


def test_the_body_patterns_that_matter_are_prefiltered() -> None:
    assert {"receipt:automated", "receipt:received", "read-notice", "machine-body"} <= set(PREFILTERED)
    for p in PREFILTERED.values():
        assert p.phrases, "every phrase needs some word, or the prefilter never skips"


def test_the_corpus_gets_the_same_answers() -> None:
    mails = [mail_from_bytes(path.read_bytes()) for path in sorted(CORPUS.glob("*.eml"))]
    texts = [t for m in mails for t in (m.reply_text or "", m.body or "", m.subject or "")]
    hits = 0
    for p in PREFILTERED.values():
        for text in texts:
            same(p, text)
            hits += p.search(text) is not None
    assert hits > 20  # the corpus's auto-replies do match: the comparison is not all None


def test_texts_made_of_the_phrases_own_words_get_the_same_answers() -> None:
    rng = random.Random(17)
    words = sorted({w for p in PREFILTERED.values() for ph in p.phrases or () for s in ph.sets for w in s})
    filler = ["the", "export", "fails", "since", "Monday", "2026-11-24", "#4711", "\n", "Ünïcödé", "?"]
    skipped = 0
    for _ in range(1500):
        text = " ".join(rng.choice(words + filler) for _ in range(rng.randint(1, 12)))
        text = text.upper() if rng.random() < 0.2 else text
        for p in PREFILTERED.values():
            same(p, text)
            if p.phrases and not any(ph.may_match(canon(text)) for ph in p.phrases):
                skipped += 1
    assert skipped > 500  # the prefilter did skip the pattern, and rightly


@pytest.mark.parametrize(("text", "matches"), [
    ("TH\u0130S MAİLBOX İS NOT MONİTORED", True),       # dotted capital I: "i" to re, "i̇" to str.lower
    ("thi\u017f mailbox i\u017f not monitored", True),  # long s: "s" to re, itself to str.lower
    ("\u212aindly do not reply to this", True),           # Kelvin sign
    ("Mensaje automático", True), ("MENSAJE AUTOMÁTICO", True),
    ("Automatische Antwort: ich bin außer Haus", False), ("the export fails since Monday", False),
])
def test_characters_case_folding_treats_specially(text: str, matches: bool) -> None:
    p = autoreplies.RECEIPT_KINDS["automated"]
    assert isinstance(p, Phrases)
    same(p, text)
    assert (p.search(text) is not None) is matches


def test_a_phrase_that_needs_no_word_turns_the_prefilter_off() -> None:
    p = Phrases([r"\bthis\s+mailbox\b", r"\d{4,}"], re.IGNORECASE)
    assert p.phrases is None
    assert p.search("ticket 12345") is not None
