"""One MIME part read: its type and transfer encoding, its payload as bytes,
its text, its file name (RFC 2231 and RFC 2047 decoded, never a path), and
the names of the files inside it where it is a container (an attached mail,
an Outlook winmail.dat).
"""

from __future__ import annotations

import mimetypes
import re
from email.header import Header
from email.message import Message as EmailMessage

from mailcase.mail.charsets import codec_for, decode_8bit_header, decode_encoded_words, decode_text, storable
from mailcase.mail.headers import HeaderBlock
from mailcase.mail.parse import limits
from mailcase.mail.parse.uuencode import UU_ENCODINGS, uu_payload

TEXT_TYPES = ("text/plain", "text/html")
TNEF_TYPES = ("application/ms-tnef", "application/vnd.ms-tnef")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:+-]{1,40})""", re.I)
_NOT_TOKEN = re.compile(r"[^\x21-\x7e]")


def safe_ctype(part: EmailMessage) -> str:
    try:
        ctype = part.get_content_type().lower()
    except Exception:
        return "application/octet-stream"
    if _NOT_TOKEN.search(ctype) or len(ctype) > 127:  # RFC 6838 §4.2: 127 characters
        return _NOT_TOKEN.sub("", ctype)[:127] or "application/octet-stream"
    return ctype


def transfer_encoding(part: EmailMessage) -> str:
    value = part.get("content-transfer-encoding", "")
    return str(value).strip().lower() if value else ""


def payload_bytes(part: EmailMessage) -> bytes:
    if transfer_encoding(part) in UU_ENCODINGS:
        return uu_payload(part)[0]
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if isinstance(data, bytes):
        return data
    payload = part.get_payload()
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogateescape")
    if isinstance(payload, list):
        # message/delivery-status and friends: blocks of header fields
        chunks: list[bytes] = []
        for sub in payload:
            try:
                chunks.append(sub.as_bytes() if isinstance(sub, EmailMessage) else b"")
            except Exception:
                chunks.append(b"")
        return b"\n".join(chunks)
    return b""


def text_of(part: EmailMessage, ctype: str, data: bytes, defects: list[str]) -> str:
    """The part's text, decoded by its charset (an HTML part's own <meta> if it has none)."""
    try:
        label = part.get_content_charset()
    except Exception:
        label = None
    if label is None and ctype == "text/html":
        m = _META_CHARSET.search(data, 0, 4096)
        label = m.group(1).decode("ascii") if m else None
    if len(data) > limits.MAX_TEXT_PART_BYTES:
        # decoding costs time in proportion (ISO-2022-JP is read byte by byte):
        # more than the body keeps is not decoded
        defects.append(f"a text part of {len(data)} bytes: the first {limits.MAX_TEXT_PART_BYTES} read")
        codec = codec_for(label) or ""
        if codec.startswith(("utf_16", "utf_32", "utf-16", "utf-32")):
            data = data[:limits.MAX_TEXT_PART_BYTES]  # a multiple of 4: whole code units
        else:
            nl = data.rfind(b"\n", 0, limits.MAX_TEXT_PART_BYTES)
            data = data[: nl + 1 if nl > 0 else limits.MAX_TEXT_PART_BYTES]
    return decode_text(data, label)


def header_str(part: EmailMessage, header: str, block: HeaderBlock) -> str | None:
    """A header of a part as text, its raw 8-bit bytes decoded like headers.py does."""
    value = part.get(header)
    if value is None:
        return None
    if not isinstance(value, Header):
        return str(value)
    # compat32 hands back a Header when the value has raw 8-bit bytes
    for name, raw_value in part.raw_items():
        if name.lower() == header:
            data = str(raw_value).encode("ascii", "surrogateescape")
            return decode_8bit_header(data, block.charsets)
    return None


def _param(part: EmailMessage, header: str, param: str, block: HeaderBlock) -> str | None:
    """A parameter's value: RFC 2231 (charset, continuations) and RFC 2047 decoded."""
    value = header_str(part, header, block)
    if not value or param not in value.lower():
        return None
    holder = EmailMessage()
    holder[header] = value
    try:
        got = holder.get_param(param, header=header)
    except Exception:
        return None
    if got is None:
        return None
    if isinstance(got, tuple):  # RFC 2231: (charset, language, %-decoded value)
        charset, _, text = got
        text = str(text)
        if all(ord(c) < 256 for c in text):
            text = decode_text(text.encode("latin-1"), charset or None)
    else:
        text = str(got)
    return decode_encoded_words(text).strip() or None


def filename(part: EmailMessage, block: HeaderBlock) -> str | None:
    return _param(part, "content-disposition", "filename", block) or _param(
        part, "content-type", "name", block
    )


def clean_name(name: str, index: int) -> str:
    # a name is display data, never a path
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r"[\x00-\x1f\x7f]", "", storable(name)).strip()
    return name[:255] or f"part-{index}.bin"


def default_name(index: int, ctype: str) -> str:
    ext = mimetypes.guess_extension(ctype) or ".bin"
    return f"part-{index}{ext}"


def is_attachment(part: EmailMessage, ctype: str, name: str | None) -> bool:
    try:
        disposition = (part.get_content_disposition() or "").lower()
    except Exception:
        disposition = ""
    if disposition == "attachment":
        return True
    if ctype not in TEXT_TYPES:
        return True
    return bool(name) and disposition != "inline"


def inner_attachments(msg: EmailMessage, block: HeaderBlock) -> tuple[str, ...]:
    names: list[str] = []
    try:
        for sub in msg.walk():
            if sub.is_multipart():
                continue
            ctype = safe_ctype(sub)
            if sub is msg and ctype in TEXT_TYPES:
                continue
            name = filename(sub, block)
            if is_attachment(sub, ctype, name):
                names.append(clean_name(name, len(names) + 1) if name else default_name(len(names) + 1, ctype))
            if len(names) >= limits.MAX_CONTENTS:
                break
    except Exception:
        pass
    return tuple(names)


def tnef_contents(data: bytes) -> tuple[tuple[str, ...], str | None]:
    """The file names inside an Outlook winmail.dat (TNEF)."""
    try:
        from tnefparse import TNEF

        tnef = TNEF(data, do_checksum=False)
    except Exception as exc:  # not TNEF, or damaged
        return (), f"winmail.dat unreadable: {type(exc).__name__}"
    names: list[str] = []
    for att in tnef.attachments[:limits.MAX_CONTENTS]:
        try:
            name = att.long_filename() or att.name
        except Exception:
            name = ""
        if isinstance(name, bytes):
            name = decode_text(name.rstrip(b"\x00"), None)
        name = str(name).strip("\x00").strip()
        names.append(clean_name(name, len(names) + 1) if name else f"part-{len(names) + 1}.bin")
    return tuple(names), None
