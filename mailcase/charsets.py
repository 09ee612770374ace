"""Text from bytes a mailer labelled (or failed to label) with a charset.

* Labels are mapped to the charset mailers really mean: ISO-8859-1 and
  US-ASCII text from Windows is windows-1252 (the WHATWG Encoding Standard
  maps both labels to windows-1252 for this reason); GB2312 text is usually
  GBK, a subset of GB18030; ks_c_5601-1987 is cp949; ISO-2022-JP mail often
  carries the Microsoft/NEC extensions of cp50221.
* Unlabelled 8-bit header bytes are UTF-8 when they decode as UTF-8 (RFC 6532),
  else the message's declared charset, else windows-1252.
* RFC 2047 encoded-words are decoded here with that mapping (the standard
  library's decoder knows neither the mapping nor lenient placement).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import quopri
import re

# what a label says -> what the bytes are, in practice
_CHARSET_MAP = {
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "l1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "ansi_x3.4-1968": "cp1252",
    "iso-8859-9": "cp1254",
    "iso-8859-11": "cp874",
    "tis-620": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "gb_2312-80": "gb18030",
    "euc-cn": "gb18030",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "euc-kr": "cp949",
    "iso-2022-jp": "iso2022_jp_ext",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "windows-31j": "cp932",
    "big5": "big5hkscs",
    "x-mac-roman": "mac_roman",
    "macintosh": "mac_roman",
    "unicode-1-1-utf-7": "utf-7",
    "utf8": "utf-8",
    "x-unknown": "cp1252",
    "unknown-8bit": "cp1252",
    "x-user-defined": "cp1252",
    "default": "cp1252",
    "_iso-2022-jp$esc": "iso2022_jp_ext",
}


def codec_for(label: str | None) -> str | None:
    """The Python codec to decode text labelled ``label``, or None if unknown."""
    if not label:
        return None
    name = label.strip().strip("\"'").lower()
    name = _CHARSET_MAP.get(name, name)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def decode_text(data: bytes, label: str | None, fallback: str = "cp1252") -> str:
    """Decode ``data`` as ``label`` says; never raises.

    A wrong or unknown label falls back to UTF-8 if the bytes are valid UTF-8,
    then to ``fallback`` with replacement characters.
    """
    codec = codec_for(label)
    if codec:
        try:
            return data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if codec:
        try:
            return data.decode(codec, errors="replace")
        except LookupError:
            pass
    return data.decode(codec_for(fallback) or "cp1252", errors="replace")


def decode_8bit_header(data: bytes, declared: str | None = None) -> str:
    """Header bytes: ASCII, UTF-8 (RFC 6532), the declared charset, or windows-1252."""
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    codec = codec_for(declared)
    if codec and codec not in ("utf-8", "ascii"):
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            pass
    return data.decode("cp1252", errors="replace")


# =?charset[*lang]?B|Q?text?=   (RFC 2047 §2, RFC 2231 §5 language suffix)
ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([QqBb])\?([^?\s]*?)\?=")
# whitespace between two adjacent encoded-words is not displayed (RFC 2047 §6.2)
_BETWEEN_WORDS = re.compile(r"(\?=)\s+(?==\?)")


def _decode_word(charset: str, encoding: str, text: str) -> str | None:
    try:
        if encoding in "Bb":
            data = base64.b64decode(text + "=" * (-len(text) % 4), validate=False)
        else:
            data = quopri.decodestring(text.replace("_", " ").encode("ascii", "replace"), header=True)
    except (binascii.Error, ValueError):
        return None
    return decode_text(data, charset)


def decode_encoded_words(value: str) -> str:
    """Decode RFC 2047 encoded-words anywhere in ``value`` (leniently)."""
    if "=?" not in value:
        return value
    value = _BETWEEN_WORDS.sub(r"\1", value)

    # adjacent words in one charset may split a multibyte character between
    # them: decode their bytes together
    out: list[str] = []
    pos = 0
    pending: tuple[str, str, list[str]] | None = None  # (charset, enc, texts)

    def flush() -> None:
        nonlocal pending
        if pending is None:
            return
        charset, enc, texts = pending
        if enc in "Bb":
            raw = b"".join(_b64(t) for t in texts)
            out.append(decode_text(raw, charset))
        else:
            decoded = _decode_word(charset, enc, "".join(texts))
            out.append(decoded if decoded is not None else "".join(texts))
        pending = None

    for m in ENCODED_WORD.finditer(value):
        if m.start() > pos:
            flush()
            out.append(value[pos : m.start()])
        charset, enc, text = m.group(1), m.group(2).upper(), m.group(3)
        if pending is not None and pending[0].lower() == charset.lower() and pending[1] == enc:
            pending[2].append(text)
        else:
            flush()
            pending = (charset, enc, [text])
        pos = m.end()
    flush()
    out.append(value[pos:])
    return "".join(out)


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=False)
    except (binascii.Error, ValueError):
        return b""
