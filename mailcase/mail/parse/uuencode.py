"""uuencoded files: a part sent with ``Content-Transfer-Encoding: x-uuencode``,
or ``begin 644 name`` ... ``end`` inside a plain-text body (old mailers put
attachments there), which is cut out of the text and listed as a file.
"""

from __future__ import annotations

import binascii
import mimetypes
import re
from email.message import Message as EmailMessage

UU_ENCODINGS = ("x-uuencode", "uuencode", "x-uue", "uue")
# a uuencoded file inside a text body: "begin <mode> <name>" ... "end"
UU_BEGIN = re.compile(r"^begin [0-7]{3,4} ([^\r\n]+?)[ \t]*\r?$", re.M)
UU_END = re.compile(r"^end[ \t]*\r?$", re.M)
UU_BEGIN_BYTES = re.compile(rb"^begin [0-7]{3,4} [^\r\n]+?[ \t]*\r?$", re.M)


def uu_line(line: str) -> bytes:
    """One uuencoded line, forgiving the padding some encoders leave out."""
    data = line.encode("ascii", "ignore")
    try:
        return binascii.a2b_uu(data)
    except binascii.Error:
        # a truncated or over-long line: decode what its length byte claims
        nbytes = (((data[0] - 32) & 63) * 4 + 5) // 3 if data else 0
        try:
            return binascii.a2b_uu(data[:nbytes])
        except binascii.Error:
            return b""


def uu_decode(lines: list[str]) -> bytes:
    out: list[bytes] = []
    for line in lines:
        line = line.rstrip("\r\n")
        if not line or line.strip() == "end":
            continue
        if line in ("`", " "):
            break  # the zero-length line that ends the data
        out.append(uu_line(line))
    return b"".join(out)


def uu_chunk(chunk: bytes, state: str) -> tuple[bytes, str]:
    """uudecode whole lines; ``state`` is before the begin line, in the data, or done."""
    out: list[bytes] = []
    for line in chunk.decode("ascii", "replace").splitlines():
        if state == "before":
            if UU_BEGIN.match(line):
                state = "data"
            continue
        if state != "data":
            break
        if UU_END.match(line) or line in ("`", " "):
            state = "done"
            break
        if line and line.strip() != "end":
            out.append(uu_line(line))
    return b"".join(out), state


def uu_payload(part: EmailMessage) -> tuple[bytes, str | None]:
    """A Content-Transfer-Encoding: x-uuencode part: the file and its begin-line name."""
    payload = part.get_payload()
    if not isinstance(payload, str):
        return b"", None
    text = payload.encode("ascii", "surrogateescape").decode("ascii", "replace")
    m = UU_BEGIN.search(text)
    name = None
    if m:
        name = m.group(1).strip()
        text = text[m.end() :]
    end = UU_END.search(text)
    if end:
        text = text[: end.start()]
    return uu_decode(text.splitlines()), name


def cut_uuencoded(text: str) -> tuple[str, list[tuple[str, str, bytes]]]:
    """A plain-text body without its uuencoded files, and the files: (name, type, data) in order."""
    if "begin " not in text:
        return text, []
    files: list[tuple[str, str, bytes]] = []
    out: list[str] = []
    pos = 0
    for m in UU_BEGIN.finditer(text):
        if m.start() < pos:
            continue
        end = UU_END.search(text, m.end())
        if end is None:
            break
        lines = text[m.end() : end.start()].splitlines()
        data = uu_decode(lines)
        if not data and any(line.strip() for line in lines[:3]):
            continue  # "begin 644 something" in prose, not a file
        name = m.group(1).strip()
        files.append((name, mimetypes.guess_type(name)[0] or "application/octet-stream", data))
        out.append(text[pos : m.start()])
        pos = end.end()
    out.append(text[pos:])
    return "".join(out), files
