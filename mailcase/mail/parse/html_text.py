"""HTML as plain text: an HTML part of a mail read into the body."""

from __future__ import annotations

import importlib
import re
from typing import Any

_HTML_SKIP = {"script", "style", "head", "title", "noscript", "template", "object", "svg", "xml"}
_HTML_PARAGRAPH = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul",
                   "ol", "dl"}
_HTML_BLOCK = _HTML_PARAGRAPH | {
    "address", "article", "aside", "center", "dd", "div", "dt", "fieldset", "figcaption",
    "figure", "footer", "form", "header", "hr", "li", "main", "nav", "section", "tbody", "thead",
    "tfoot", "tr", "caption",
}
_HTML_SPACE = re.compile(r"[ \t\r\n\f\xa0\u200b]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def _lxml() -> tuple[Any, Any] | None:
    # lxml has no type stubs; imported by name so the package type-checks
    try:
        return importlib.import_module("lxml.html"), importlib.import_module("lxml.etree")
    except ImportError:
        return None


def html_to_text(html: str) -> str:
    """HTML as plain text: blocks on their own lines, scripts and styles dropped.

    A single pass over lxml's tree; a third of the time inscriptis takes for
    the same mail, and a support case needs the words, not the layout.
    """
    mods = _lxml()
    try:
        if mods is None:
            raise ValueError("no lxml")
        lxml_html, etree = mods
        root = lxml_html.document_fromstring(
            html.encode("utf-8", "surrogatepass"),
            parser=lxml_html.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True),
        )
        walk = etree.iterwalk(root, events=("start", "end"))
    except Exception:  # empty or unparseable markup
        return _HTML_SPACE.sub(" ", re.sub(r"<[^>]*>", " ", html)).strip()
    out: list[str] = []
    skip = pre = 0

    def text(value: str | None) -> None:
        if value:
            out.append(value if pre else _HTML_SPACE.sub(" ", value))

    for event, el in walk:
        if not isinstance(el.tag, str):  # a comment or processing instruction
            if event == "end" and not skip:
                text(el.tail)
            continue
        tag = el.tag.lower()
        if event == "start":
            if skip or tag in _HTML_SKIP:
                skip += 1
                continue
            if tag == "br":
                out.append("\n")
            elif tag == "li":
                out.append("\n- ")
            elif tag in _HTML_PARAGRAPH:
                out.append("\n\n")
            elif tag in _HTML_BLOCK:
                out.append("\n")
            elif tag in ("td", "th"):
                out.append("\t")
            if tag == "pre":
                pre += 1
            text(el.text)
            continue
        if skip:
            skip -= 1
            if not skip:
                text(el.tail)
            continue
        if tag == "pre":
            pre -= 1
        if tag in _HTML_PARAGRAPH:
            out.append("\n\n")
        elif tag in _HTML_BLOCK and tag != "li":  # the next item starts its own line
            out.append("\n")
        text(el.tail)
    lines = (line.strip(" \t") for line in "".join(out).split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
