"""The feedparser speed-up (mailcase/mail/feedparser_eol.py) is installed only on purpose, and only
where it is safe: importing mailcase leaves the standard library alone; the parse worker's initializer
installs it after the probe messages parse the same with it as without it; a standard library where
they would not (simulated here) keeps its own parser."""

from __future__ import annotations

import email.feedparser as feedparser
import logging
import re
import subprocess
import sys
from typing import Any

import pytest
from helpers import ROOT

from mailcase.mail import feedparser_eol
from mailcase.mail.feedparser_eol import PROBES, LineBreakAtEnd, incompatibility, install, tree_shape

STOCK = r"(\r\n|\r|\n)\Z"


def nlcre_eol() -> object:
    """``email.feedparser.NLCRE_eol`` now: a module global typeshed does not declare."""
    return vars(feedparser)["NLCRE_eol"]


@pytest.fixture
def stock(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh stock pattern in ``email.feedparser`` (restored afterwards), and install() asked anew."""
    pattern = re.compile(STOCK)
    monkeypatch.setattr(feedparser, "NLCRE_eol", pattern)
    monkeypatch.setattr(feedparser_eol, "_refused", object())
    monkeypatch.setattr(feedparser_eol, "_logged", False)
    return pattern


IMPORT_ALL = """
import email.feedparser, importlib, os, pkgutil, re, sys
import mailcase
before = email.feedparser.NLCRE_eol
assert isinstance(before, re.Pattern), type(before)
names = [m.name for m in pkgutil.walk_packages(mailcase.__path__, "mailcase.")
         if ".migrations" not in m.name and not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
assert "mailcase.mail.parse.message" in sys.modules and "mailcase.ingest.stages" in sys.modules
assert email.feedparser.NLCRE_eol is before, "importing mailcase replaced email.feedparser.NLCRE_eol"
from mailcase.mail.feedparser_eol import LineBreakAtEnd
from mailcase.mail.parse_worker import worker_init
worker_init(30, os.getppid())
assert isinstance(email.feedparser.NLCRE_eol, LineBreakAtEnd), "the worker's initializer did not install it"
print(len(names))
"""


def test_importing_mailcase_leaves_the_stdlib_parser_alone_and_the_worker_installs_it() -> None:
    r = subprocess.run([sys.executable, "-c", IMPORT_ALL], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert int(r.stdout.split()[-1]) > 50  # every module was imported


def test_install_replaces_the_pattern_and_the_probes_parse_the_same(stock: Any) -> None:
    before = [tree_shape(feedparser, raw) for raw in PROBES]
    assert incompatibility() is None
    assert install() is True
    assert isinstance(nlcre_eol(), LineBreakAtEnd)
    assert [tree_shape(feedparser, raw) for raw in PROBES] == before
    assert install() is True  # once is enough
    assert isinstance(nlcre_eol(), LineBreakAtEnd)


def test_the_probes_cover_every_line_end_and_the_boundary_cases() -> None:
    assert any(b"\r\n" in raw for raw in PROBES)
    assert any(b"\n" in raw and b"\r" not in raw for raw in PROBES)
    assert any(b"\r" in raw and b"\n" not in raw for raw in PROBES)
    assert any(b"\r\n" in raw and re.search(rb"[^\r]\n", raw) and re.search(rb"\r[^\n]", raw) for raw in PROBES)
    shapes = [tree_shape(feedparser, raw) for raw in PROBES]
    multipart = [s for s in shapes if len(s) > 1]
    assert multipart and all(s[0][3] for s in multipart)  # a preamble
    assert any(s[0][4] for s in multipart) and any(not s[0][4] for s in multipart)  # an epilogue, or none
    assert all(any(part[4] for part in s[1:]) for s in multipart)  # a nested multipart's epilogue


def test_a_different_pattern_keeps_the_stock_parser_and_says_so_once(
    stock: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """A later Python whose pattern is not the one this replaces (bare CR no longer a line end)."""
    other = re.compile(r"(\r\n|\n)\Z")
    monkeypatch.setattr(feedparser, "NLCRE_eol", other)
    with caplog.at_level(logging.WARNING, logger="mailcase.mail.feedparser_eol"):
        assert install() is False
        assert install() is False
    assert nlcre_eol() is other
    logged = [r for r in caplog.records if r.name == "mailcase.mail.feedparser_eol"]
    assert len(logged) == 1 and "feedparser-speedup-off" in logged[0].getMessage()


class _SamePatternOtherAnswers:
    """A stdlib whose matcher has the pattern text this replaces but answers otherwise."""

    pattern = STOCK
    _regex = re.compile(r"(\r\n|\n)\Z")

    def search(self, text: str) -> Any:
        return self._regex.search(text)


def test_the_same_pattern_text_that_behaves_otherwise_is_refused_by_the_probes(
    stock: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    odd = _SamePatternOtherAnswers()
    monkeypatch.setattr(feedparser, "NLCRE_eol", odd)
    reason = incompatibility()
    assert reason is not None and "probe message" in reason
    assert install() is False
    assert nlcre_eol() is odd


def test_a_replacement_that_answers_wrongly_is_refused(stock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The probes tell a subtly wrong replacement (CRLF taken for LF) from the real one."""
    right = LineBreakAtEnd.search

    def wrong(self: LineBreakAtEnd, text: str) -> Any:
        found = right(self, text)
        return found if found is None or found.group(0) != "\r\n" else right(self, "\n")

    monkeypatch.setattr(LineBreakAtEnd, "search", wrong)
    assert install() is False
    assert nlcre_eol() is stock


def test_a_failing_trial_keeps_the_stock_parser(stock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_copy() -> Any:
        raise ImportError("no source")

    monkeypatch.setattr(feedparser_eol, "_private_copy", no_copy)
    reason = incompatibility()
    assert reason is not None and "ImportError" in reason
    assert install() is False
    assert nlcre_eol() is stock
