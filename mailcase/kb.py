"""The knowledge base: suggested solutions in acknowledgements.

The agreement asks administrators to try the knowledge base first; the
acknowledgement lists up to three articles that match the request, and a
request one article answers very closely is flagged ("kb-answer", a flag,
never a refusal).

Operators supply the articles as a folder of Markdown files (front matter
``title:`` and ``url:`` lines between ``---`` fences, or a first ``# Title``
line) or as a CSV (title, url, body).  The database's own full-text search
finds candidates (SQLite FTS5 with BM25, PostgreSQL tsvector with
ts_rank); a word-overlap score then decides what is relevant enough to
show, the same way on both databases.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcase.db import is_postgres
from mailcase.errors import UsageError
from mailcase.models import KbArticle

KB = KbArticle.__table__  # type: ignore[attr-defined]
_WORD = re.compile(r"[^\W\d_][\w'-]{2,}", re.UNICODE)
STOPWORDS = frozenset("""
a about above after again all also am an and any are as at be because been before being below between both
but by can cannot could did do does doing down during each few for from further get got had has have having he
her here hers him his how however i if in into is it its itself just let me more most my no nor not now of off on
once only or other our ours out over own same she should so some such than that the their them then there these
they this those through to too under until up very was we were what when where which while who whom why will with
would you your yours hello dear thanks thank regards best kind please help support team hi mail email sent
question problem issue since still also yet one two get getting use using used
""".split())


@dataclass(frozen=True)
class Article:
    slug: str
    title: str
    url: str
    body: str


@dataclass(frozen=True)
class Suggestion:
    title: str
    url: str
    score: float


def keywords(text: str) -> set[str]:
    return {w.lower().strip("'-") for w in _WORD.findall(text) if w.lower() not in STOPWORDS}


def _front_matter(text: str) -> tuple[dict[str, str], str]:
    meta: dict[str, str] = {}
    if text.startswith("---"):
        head, sep, rest = text[3:].partition("\n---")
        if sep:
            for line in head.splitlines():
                key, colon, value = line.partition(":")
                if colon:
                    meta[key.strip().lower()] = value.strip().strip("\"'")
            return meta, rest.lstrip("-\n")
    m = re.match(r"\s*#\s+(.+)\n", text)
    if m:
        meta["title"] = m.group(1).strip()
    url = re.search(r"^(?:url|link):\s*(\S+)\s*$", text, re.IGNORECASE | re.MULTILINE)
    if url:
        meta.setdefault("url", url.group(1))
    return meta, text


def load_articles(source: Path) -> list[Article]:
    if source.is_dir():
        out = []
        for path in sorted(source.glob("*.md")):
            meta, body = _front_matter(path.read_text(encoding="utf-8"))
            if "title" not in meta or "url" not in meta:
                raise UsageError(f"{path}: a knowledge-base article needs a title and a url")
            out.append(Article(path.stem, meta["title"], meta["url"], body.strip()))
        return out
    if source.is_file():
        with source.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"title", "url", "body"} - set(reader.fieldnames or ())
            if missing:
                raise UsageError(f"{source}: CSV needs columns title, url, body (missing {', '.join(sorted(missing))})")
            return [Article(re.sub(r"\W+", "-", r["title"].lower()).strip("-")[:200] or f"row-{i}",
                            r["title"], r["url"], r.get("body", "")) for i, r in enumerate(reader, 1)]
    raise UsageError(f"{source}: no knowledge-base folder or CSV there")


def reindex(conn: Connection, articles: list[Article]) -> int:
    """Replace the index with ``articles``; returns how many."""
    conn.execute(sa.delete(KB))
    if articles:
        conn.execute(sa.insert(KB), [{"slug": a.slug, "title": a.title, "url": a.url, "body": a.body}
                                     for a in articles])
    if not is_postgres(conn):
        conn.execute(sa.text("INSERT INTO kb_fts(kb_fts) VALUES ('rebuild')"))
    return len(articles)


def _candidates(conn: Connection, words: set[str], limit: int) -> list[tuple[str, str, str, str]]:
    terms = sorted(words)[:40]
    if not terms:
        return []
    if is_postgres(conn):
        query = " | ".join(re.sub(r"[^\w]", "", t) for t in terms if re.sub(r"[^\w]", "", t))
        rows = conn.execute(sa.text(
            "SELECT title, url, body, slug FROM kb_article, to_tsquery('english', :q) AS q "
            "WHERE to_tsvector('english', title || ' ' || body) @@ q "
            "ORDER BY ts_rank(to_tsvector('english', title || ' ' || body), q) DESC LIMIT :n"
        ), {"q": query, "n": limit}).all()
    else:
        query = " OR ".join('"' + t.replace('"', "") + '"' for t in terms)
        rows = conn.execute(sa.text(
            "SELECT a.title, a.url, a.body, a.slug FROM kb_fts JOIN kb_article a ON a.id = kb_fts.rowid "
            "WHERE kb_fts MATCH :q ORDER BY bm25(kb_fts, 5.0, 1.0) LIMIT :n"
        ), {"q": query, "n": limit}).all()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def score(request: set[str], title: str, body: str) -> float:
    """How much of the request the article covers (title words count double)."""
    if not request:
        return 0.0
    title_words = keywords(title)
    words = title_words | keywords(body)
    hits = sum(2 if w in title_words else 1 for w in request if w in words)
    return hits / (len(request) + len(request & title_words))


def suggest(conn: Connection, text: str, limit: int = 3, minimum: float = 0.3, min_words: int = 3) -> list[Suggestion]:
    """Up to ``limit`` articles relevant to ``text``, best first."""
    request = keywords(text)
    out = []
    for title, url, body, _ in _candidates(conn, request, 10):
        s = score(request, title, body)
        overlap = len(request & (keywords(title) | keywords(body)))
        if s >= minimum and overlap >= min_words:
            out.append(Suggestion(title, url, round(s, 3)))
    out.sort(key=lambda x: -x.score)
    return out[:limit]


def count(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(KB)).scalar_one())
