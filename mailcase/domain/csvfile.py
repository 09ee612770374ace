"""Read an operator's CSV file: detect its encoding and its delimiter, or fail in one line.

Spreadsheets save CSV as UTF-8 (with or without a BOM) or, on Windows, as
Windows-1252; Excel in many European locales separates columns with ``;``.
Both are accepted and said; anything else (UTF-16, binary) is refused with
a hint naming the file.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mailcase.core.errors import UsageError

#: the delimiter a file is expected to use; the others are sniffed from its header
EXPECTED_DELIMITER = ","
OTHER_DELIMITERS = ";\t"
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}
SAVE_HINT = "save it as UTF-8 (Excel: 'CSV UTF-8')"


@dataclass(frozen=True)
class CsvText:
    """A CSV file's text with what was detected about it."""

    text: str
    encoding: str = "utf-8"
    delimiter: str = EXPECTED_DELIMITER
    #: why the encoding is not UTF-8 (the first line that is not), empty when it is
    why: str = ""

    def notes(self) -> list[str]:
        """What differs from UTF-8 with commas, one phrase each (empty when nothing does)."""
        notes = []
        if self.encoding != "utf-8":
            notes.append(f"read as {self.encoding} ({self.why})")
        if self.delimiter != EXPECTED_DELIMITER:
            notes.append(f"columns separated by {DELIMITER_NAMES[self.delimiter]}s")
        return notes


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def decode(data: bytes, label: str) -> tuple[str, str, str]:
    """(text, encoding, why): UTF-8 (a BOM stripped), else Windows-1252; UsageError otherwise."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data:
        raise UsageError(f"{label}: not UTF-8 or Windows-1252 text (UTF-16?); {SAVE_HINT}")
    try:
        return data.decode("utf-8-sig"), "utf-8", ""
    except UnicodeDecodeError as exc:
        why = f"not UTF-8 at line {_line_of(data, exc.start)}"
    try:
        return data.decode("cp1252"), "Windows-1252", why
    except UnicodeDecodeError as exc:
        raise UsageError(f"{label}: line {_line_of(data, exc.start)}: not UTF-8 or Windows-1252 text; "
                         f"{SAVE_HINT}") from None


def sniff_delimiter(text: str) -> str:
    """A comma when the header line has one; else ``;`` or tab as found there (csv.Sniffer decides ties)."""
    header = text.split("\n", 1)[0]
    if EXPECTED_DELIMITER in header:
        return EXPECTED_DELIMITER
    candidates = [d for d in OTHER_DELIMITERS if d in header]
    if len(candidates) <= 1:
        return candidates[0] if candidates else EXPECTED_DELIMITER
    try:
        return csv.Sniffer().sniff(text[:8192], delimiters="".join(candidates)).delimiter
    except csv.Error:
        return max(candidates, key=header.count)


def read_csv(source: Path | str) -> CsvText:
    """A CSV from a file (encoding detected) or from text; the delimiter sniffed either way."""
    if isinstance(source, str):
        return CsvText(source, delimiter=sniff_delimiter(source))
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise UsageError(f"{source}: cannot read: {exc.strerror or exc}") from None
    text, encoding, why = decode(data, str(source))
    return CsvText(text, encoding, sniff_delimiter(text), why)


def header_hint(found: Sequence[str] | None, delimiter: str) -> str:
    """A hint for a header without the expected columns: the columns found, and the delimiter used."""
    shown = " | ".join(found or ()) or "nothing"
    return (f"found: {shown} (read as {DELIMITER_NAMES.get(delimiter, repr(delimiter))}-separated; "
            f"separate columns by commas, or by semicolons or tabs throughout)")
