"""Coding, billing and payer advice recognised by concept (issue 13).

tests/scope_corpus/ holds labelled questions (README there).  The rules were
tuned on ``questions.toml``'s tune split and on ``questions_extra.toml`` and
``questions_extra2.toml``; ``questions.toml``'s holdout split and
``questions_final.toml`` were held back.  The floors below are what the
held-back parts measured, a little rounded down, so a change that makes
them worse fails here.  Run this file as a script to print the figures::

    python tests/test_scope_corpus.py
"""

from __future__ import annotations

import sys
import tomllib
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from types import SimpleNamespace

import pytest

if __name__ == "__main__":  # run as a script from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailcase.rules.scope_concepts import judge

CORPUS = Path(__file__).parent / "scope_corpus"


def _load(name: str, split: str | None = None) -> list[dict[str, str]]:
    questions = tomllib.loads((CORPUS / name).read_text(encoding="utf-8"))["question"]
    return [q for q in questions if split is None or q.get("split") == split]


SETS: dict[str, list[dict[str, str]]] = {
    "tune": _load("questions.toml", "tune"),
    "extra": _load("questions_extra.toml"),
    "extra2": _load("questions_extra2.toml"),
    "holdout": _load("questions.toml", "holdout"),
    "final": _load("questions_final.toml"),
}
#: (precision, recall, right category among the found) each set must reach
FLOORS = {
    "tune": (0.97, 0.97, 0.95),
    "extra": (0.97, 0.97, 0.95),
    "extra2": (0.97, 0.97, 0.95),
    "holdout": (0.90, 0.85, 0.88),  # measured 0.917 / 0.868 / 0.909
    "final": (0.90, 0.80, 0.94),    # never tuned on: 0.905 / 0.826 / 0.965 at first, 0.919 / 0.826 after
                                    # a fix for false alarms on tests/kb's requests
}


@dataclass
class Figures:
    n: int
    tp: int = 0
    fp: int = 0
    fn: int = 0
    right_category: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def category(self) -> float:
        return self.right_category / self.tp if self.tp else 0.0

    def __str__(self) -> str:
        return (f"n={self.n} precision={self.precision:.3f} recall={self.recall:.3f} "
                f"category={self.category:.3f} (tp={self.tp} fp={self.fp} fn={self.fn})")


def measure(questions: list[dict[str, str]]) -> Figures:
    f = Figures(len(questions))
    for q in questions:
        found = judge(q["subject"], q["body"]).category
        out = q["label"] != "in-scope"
        if found and out:
            f.tp += 1
            f.right_category += found == q["label"]
        elif found:
            f.fp += 1
        elif out:
            f.fn += 1
    return f


def test_the_corpus_is_big_and_balanced_enough() -> None:
    allq = [q for qs in SETS.values() for q in qs]
    assert len(allq) >= 150 and len({q["id"] for q in allq}) == len(allq)
    for name, qs in SETS.items():
        labels = {q["label"] for q in qs}
        assert labels == {"in-scope", "coding", "billing", "payer"}, name
        # hard negatives: in-scope mails that name the field's objects
        assert sum(q["label"] == "in-scope" for q in qs) >= len(qs) // 3, name


@pytest.mark.parametrize("name", list(SETS))
def test_precision_and_recall(name: str) -> None:
    f = measure(SETS[name])
    p, r, c = FLOORS[name]
    print(f"{name}: {f}")
    assert f.precision >= p and f.recall >= r and f.category >= c, f"{name}: {f}"


def test_functional_requests_of_other_corpora_stay_in_scope() -> None:
    """The knowledge base's 103 requests (tests/kb) ask how the software works; one
    ("does Medicare cross it over or do we bill the secondary?") is a fair payer question."""
    requests = [r for rs in tomllib.loads((Path(__file__).parent / "kb" / "requests.toml").read_text()).values()
                for r in rs]
    flagged = [r["id"] for r in requests if judge(r["subject"], r["body"]).category]
    assert len(requests) == 103 and flagged == ["medicare-secondary-crossover"], flagged


def test_a_forwarded_question_is_read_below_the_quote_line() -> None:
    """The forward's own text says only "see below"; the question is the forwarded one."""
    from rules_fake import mail_from_bytes, settings

    from mailcase.rules.base import Outcome
    from mailcase.rules.scope import scope

    msg = EmailMessage()
    msg["From"] = "alice@acme.example"
    msg["To"] = "support@support.example"
    msg["Subject"] = "Fwd: sleep study"
    msg["Message-ID"] = "<fwd-scope@acme.example>"
    msg.set_content("Hi support, Sara asked me to send this on. Thanks, Mia\n\n"
                    "---------- Forwarded message ---------\nFrom: Sara <sara@acme.example>\n"
                    "Subject: sleep study\n\nDoes Molina need a prior auth for the home sleep test 95806,"
                    " or only for the in-lab 95810?\n")
    ctx = SimpleNamespace(settings=settings())  # the rule reads only the settings
    verdict = scope(mail_from_bytes(bytes(msg)), ctx, Outcome())
    assert verdict is not None and verdict.out_of_scope and "payer" in verdict.reason
    # the same words as a person's own report of what the software does: in scope
    msg.replace_header("Subject", "Sleep study codes")
    msg.set_content("The code picker has no 95806 since the update, only 95810. Where did it go?\n")
    assert scope(mail_from_bytes(bytes(msg)), ctx, Outcome()) is None


if __name__ == "__main__":
    for set_name, qs in SETS.items():
        print(f"{set_name:8} {measure(qs)}")
