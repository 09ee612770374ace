"""Logs for ops (issue 12): priorities for the journal, a repeating error once then counted, quoted values."""

from __future__ import annotations

import io
import logging
import os
import tempfile
import time

import pytest

from mailcase.core import log as logsetup
from mailcase.core.log import KeyValueFormatter, RepeatFilter, kv


def _logger(stream: io.StringIO, window: float = 60.0) -> logging.Logger:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(KeyValueFormatter())
    handler.addFilter(RepeatFilter(window))
    logger = logging.getLogger(f"mailcase.test.{id(stream)}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


def test_a_repeating_error_is_written_once_then_with_a_count() -> None:
    out = io.StringIO()
    logger = _logger(out, window=0.3)
    for _ in range(50):
        logger.warning("event=job-waiting job=stages error=%s", kv("database: connection refused"))
    logger.warning("event=other")
    time.sleep(0.35)
    logger.warning("event=job-waiting job=stages error=%s", kv("database: connection refused"))
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert "repeated=" not in lines[0] and lines[1].endswith("event=other")
    assert lines[2].endswith("repeated=49")


def test_info_is_never_held_back() -> None:
    out = io.StringIO()
    logger = _logger(out)
    for _ in range(5):
        logger.info("event=synced mailbox=support new=1")
    assert len(out.getvalue().splitlines()) == 5


@pytest.mark.parametrize("value, written", [
    ("plain", "plain"), ("two words", '"two words"'), ('say "hi"', '"say \\"hi\\""'),
    ("a=b", '"a=b"'), ("line\nbreak", '"line break"'), ("", '""'), ("back\\slash", '"back\\\\slash"'),
])
def test_values_are_quoted_for_key_value_parsers(value: str, written: str) -> None:
    assert kv(value) == written


def test_priorities_for_the_journal(monkeypatch: pytest.MonkeyPatch) -> None:
    with tempfile.TemporaryFile("w+") as fh:
        st = os.fstat(fh.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        logsetup.setup(logging.DEBUG, fh)
        try:
            log = logging.getLogger("mailcase.test.journal")
            log.error("event=a")
            log.warning("event=b")
            log.info("event=c")
            log.debug("event=d")
            fh.seek(0)
            prefixes = [line[:3] for line in fh.read().splitlines()]
        finally:
            logsetup.setup(logging.WARNING)
    assert prefixes == ["<3>", "<4>", "<6>", "<7>"]


def test_no_priorities_off_the_journal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")
    out = io.StringIO()
    handler_formatter = KeyValueFormatter(journal=logsetup._journal(out))
    record = logging.LogRecord("mailcase", logging.ERROR, __file__, 1, "event=x", (), None)
    assert handler_formatter.format(record).startswith("ts=")
