"""Text from bytes a mailer labelled (or failed to label) with a charset.

* Labels are mapped to the charset mailers really mean: ISO-8859-1 and
  US-ASCII text from Windows is windows-1252 (the WHATWG Encoding Standard
  maps both labels to windows-1252 for this reason); GB2312 text is usually
  GBK, a subset of GB18030; ks_c_5601-1987 is cp949; ISO-2022-JP mail often
  carries the Microsoft/NEC extensions of cp50221 (circled digits, NEC row
  13), which Python's ISO-2022-JP codecs reject: such text is re-read
  through cp932, which holds the same characters.
* A body that is valid UTF-8 but labelled with a single-byte charset is
  UTF-8 (mislabelled by the mailer): legacy 8-bit text is almost never valid
  UTF-8 by accident.  Text that is neither valid in its label nor UTF-8
  decodes as UTF-8 where it can and windows-1252 byte by byte elsewhere, so
  a body mixing both (seen in real mail) loses nothing.
* Unlabelled 8-bit header bytes are UTF-8 when they decode as UTF-8 (RFC 6532),
  else the most plausible of the charsets the message declares anywhere,
  else windows-1252.
* RFC 2047 encoded-words are decoded here with that mapping (the standard
  library's decoder knows neither the mapping nor lenient placement).
* Decoded text is always storable: some codecs (UTF-7, UTF-16 with a lone
  surrogate) yield lone surrogates, which neither SQLite nor PostgreSQL can
  store (UTF-8 cannot encode them); they become U+FFFD here, and
  :func:`storable` also drops NUL, which PostgreSQL text cannot hold.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import quopri
import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

# what a label says -> what the bytes are, in practice
_CHARSET_MAP = {
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "iso_8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "l1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "ansi_x3.4-1968": "cp1252",
    "iso-8859-9": "cp1254",
    "iso-8859-11": "cp874",
    "tis-620": "cp874",
    "windows-874": "cp874",
    "iso-8859-8-i": "iso8859_8",
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
    "csiso2022jp": "iso2022_jp_ext",
    "cp50220": "iso2022_jp_ext",
    "cp50221": "iso2022_jp_ext",
    "cp50222": "iso2022_jp_ext",
    "_iso-2022-jp$esc": "iso2022_jp_ext",
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
}

# codecs.lookup also knows transforms and escapes that are no charset
_NOT_CHARSETS = {"unicode_escape", "raw_unicode_escape", "idna", "punycode", "undefined", "mbcs"}
# encodings whose bytes are all 7-bit: only the codec itself can read them
_SEVEN_BIT = {"utf-7", "hz", "iso2022_jp", "iso2022_jp_1", "iso2022_jp_2", "iso2022_jp_2004",
              "iso2022_jp_3", "iso2022_jp_ext", "iso2022_kr"}
# encodings whose ASCII-range bytes are not ASCII text
_NOT_ASCII_BASED = _SEVEN_BIT | {"utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le",
                                 "utf-32-be"}
_MULTIBYTE = {"gb18030", "gb2312", "gbk", "cp949", "euc_kr", "cp932", "shift_jis", "euc_jp",
              "big5", "big5hkscs", "cp950", "johab", "euc_jis_2004", "shift_jis_2004"}
# a legacy charset the message declares may stand for a relative the bytes are
# really in: Japanese mailers send raw Shift_JIS or EUC-JP next to an
# ISO-2022-JP label
_RELATED = {
    "iso2022_jp_ext": ("cp932", "euc_jp"),
    "euc_jp": ("cp932",),
    "cp932": ("euc_jp",),
}


_SURROGATES = re.compile("[\ud800-\udfff]")


def no_surrogates(text: str) -> str:
    """``text`` with lone surrogates (from UTF-7, UTF-16) replaced by U+FFFD."""
    if text.isascii() or not _SURROGATES.search(text):
        return text
    return _SURROGATES.sub("\ufffd", text)


def storable(text: str) -> str:
    """Text any database can store: no lone surrogates, no NUL."""
    return no_surrogates(text).replace("\x00", "")


def _cp1252_bytes(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    bad = exc.object[exc.start : exc.end]
    return bytes(bad).decode("cp1252", errors="replace"), exc.end


# UTF-8 where valid, windows-1252 for the bytes that are not
codecs.register_error("mailcase-cp1252", _cp1252_bytes)


@lru_cache(maxsize=512)
def codec_for(label: str | None) -> str | None:
    """The Python codec to decode text labelled ``label``, or None if unknown."""
    if not label:
        return None
    name = label.strip().strip("\"'").lower()
    name = _CHARSET_MAP.get(name, name)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    if info.name in _NOT_CHARSETS or not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


def _single_byte(codec: str) -> bool:
    return codec not in _SEVEN_BIT and codec not in _MULTIBYTE and not codec.startswith("utf")


def decode_text(data: bytes, label: str | None, fallback: str = "cp1252") -> str:
    """Decode ``data`` as ``label`` says; never raises, never returns a lone surrogate.

    A wrong or unknown label falls back to UTF-8 if the bytes are valid UTF-8,
    then to UTF-8 with ``fallback`` for the bytes that are not.
    """
    return no_surrogates(_decode_text(data, label, fallback))


def _decode_text(data: bytes, label: str | None, fallback: str) -> str:
    if not data:
        return ""
    codec = codec_for(label)
    if codec in _NOT_ASCII_BASED:
        try:
            return data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            if codec.startswith("iso2022_jp"):
                text = iso2022jp_via_cp932(data)
                if text is not None:
                    return text
    elif data.isascii():
        return data.decode("ascii")
    if codec and codec != "utf-8" and not (_single_byte(codec) and _is_utf8(data)):
        try:
            return data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            pass
    if _is_utf8(data):
        return data.decode("utf-8")
    if codec and codec != "utf-8":
        try:
            return data.decode(codec, errors="replace")
        except LookupError:
            pass
    fb = codec_for(fallback) or "cp1252"
    if fb == "cp1252":
        return data.decode("utf-8", errors="mailcase-cp1252")
    return data.decode(fb, errors="replace")


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# -- ISO-2022-JP with the Microsoft extensions (cp50221) ---------------------------

_JIS_ESC = re.compile(rb"\x1b(\(B|\(J|\(H|\(I|\$@|\$B|&@\x1b\$B|\$\(D|\$\(O|\$\(P|\$\(Q)")
_JIS_MODE = {b"(B": "ascii", b"(J": "ascii", b"(H": "ascii", b"(I": "kana",
             b"$@": "jis", b"$B": "jis", b"&@\x1b$B": "jis"}


def iso2022jp_via_cp932(data: bytes) -> str | None:
    """ISO-2022-JP (RFC 1468) read through cp932, or None if it is not that.

    JIS X 0208 rows map arithmetically to Shift_JIS, and cp932 has the NEC
    and IBM extension rows cp50221 mailers put in ISO-2022-JP mail.
    """
    out = bytearray()
    mode = "ascii"
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b == 0x1B:
            m = _JIS_ESC.match(data, i)
            if not m or m.group(1) not in _JIS_MODE:
                return None  # JIS X 0212/0213 are not in cp932
            mode = _JIS_MODE[m.group(1)]
            i = m.end()
            continue
        if b == 0x0E:  # SO: half-width katakana (JIS X 0201)
            mode, i = "kana", i + 1
            continue
        if b == 0x0F:
            mode, i = "ascii", i + 1
            continue
        if b in (0x0A, 0x0D) or mode == "ascii":
            if b >= 0x80:
                return None
            out.append(b)
            i += 1
            continue
        if mode == "kana":
            out.append(b | 0x80 if 0x21 <= b <= 0x5F else b)
            i += 1
            continue
        if i + 1 >= n:
            return None
        j1, j2 = b, data[i + 1]
        if not (0x21 <= j1 <= 0x7E and 0x21 <= j2 <= 0x7E):
            return None
        s1 = ((j1 - 0x21) >> 1) + 0x81
        if s1 > 0x9F:
            s1 += 0x40
        if j1 & 1:
            s2 = j2 + (0x20 if j2 >= 0x60 else 0x1F)
        else:
            s2 = j2 + 0x7E
        out += bytes((s1, s2))
        i += 2
    return out.decode("cp932", errors="replace")


# -- 8-bit header bytes --------------------------------------------------------------

_LATIN_SYMBOLS = set("€‚„…†‡‰‹›‘’“”•–—™«»°§©®±²³µ·¹º¼½¾¿¡£¥¢ª")


def _is_cjk(o: int) -> bool:
    return (0x2E80 <= o <= 0x9FFF or 0xAC00 <= o <= 0xD7AF or 0xF900 <= o <= 0xFAFF
            or 0xFF00 <= o <= 0xFFEF)


def _implausibility(text: str) -> int:
    """How unlike real text a decoding looks (0: nothing odd).

    Legacy Latin text has an accented letter here and there between ASCII
    ones; East Asian bytes read as Latin give long runs of accented letters
    and symbols.  East Asian text read from Latin bytes gives a lone
    ideograph glued to ASCII letters.
    """
    score = 0
    run = 0
    last = len(text) - 1
    for i, ch in enumerate(text):
        o = ord(ch)
        if o < 0x80:
            run = 0
            continue
        cat = unicodedata.category(ch)
        if ch == "\ufffd" or cat in ("Cc", "Co", "Cn", "Cs"):
            score += 4
            run = 0
        elif o <= 0x24F:
            if cat[0] != "L" and ch not in _LATIN_SYMBOLS:
                score += 2
            run += 1
            if run > 2:
                score += 1
        else:
            run = 0
            if _is_cjk(o):
                before = text[i - 1] if i else " "
                after = text[i + 1] if i < last else " "
                if (before.isascii() and before.isalpha()) or (after.isascii() and after.isalpha()):
                    score += 2
    return score


def decode_8bit_header(data: bytes, declared: str | Iterable[str] | None = None) -> str:
    """Header bytes: ASCII, UTF-8 (RFC 6532), a declared charset, or windows-1252.

    ``declared`` is one charset label or several (every charset the message
    declares); of the ones the bytes are valid in, the most plausible wins,
    ties going to the earlier label.
    """
    return no_surrogates(_decode_8bit_header(data, declared))


def _decode_8bit_header(data: bytes, declared: str | Iterable[str] | None) -> str:
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    labels = [declared] if isinstance(declared, str) else list(declared or ())
    tried: list[str] = []
    for label in labels:
        codec = codec_for(label)
        if not codec or codec in ("utf-8", "ascii") or codec in _SEVEN_BIT:
            if codec in _RELATED:
                tried.extend(c for c in _RELATED[codec] if c not in tried)
            continue
        if codec not in tried:
            tried.append(codec)
        tried.extend(c for c in _RELATED.get(codec, ()) if c not in tried)
    if "cp1252" not in tried:
        tried.append("cp1252")
    best: tuple[int, str] | None = None
    for codec in tried:
        try:
            text = data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
        score = _implausibility(text)
        if best is None or score < best[0]:
            best = (score, text)
        if score == 0:
            break
    if best is not None:
        return best[1]
    return data.decode("utf-8", errors="mailcase-cp1252")


# -- RFC 2047 encoded-words ----------------------------------------------------------

# =?charset[*lang]?B|Q?text?=   (RFC 2047 §2, RFC 2231 §5 language suffix).
# The text may hold spaces: RFC 2047 forbids them, real mailers write them
# (and fold inside a word); a '?' still ends it, so a word never swallows the
# next one.
ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([QqBb])\?([^?]*?)\?=")
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
    text = "".join(text.split())
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=False)
    except (binascii.Error, ValueError):
        return b""
