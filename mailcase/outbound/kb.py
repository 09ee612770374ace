"""The knowledge base: suggested solutions in acknowledgements.

The agreement asks administrators to try the knowledge base first; the
acknowledgement lists up to three articles that match the request, and a
request one article answers very closely is flagged ("kb-answer", a flag,
never a refusal).

Operators supply the articles as a folder of Markdown files (front matter
``title:`` and ``url:`` lines between ``---`` fences, or a first ``# Title``
line) or as a CSV (title, url, body).  The database's own full-text search
finds candidates (SQLite FTS5 with BM25, PostgreSQL tsvector with
ts_rank); a score computed here then decides what is relevant enough to
show, the same way on both databases.

The score (0-1) is how much of the request an article covers, times how much
of the article's title the request asks about:

* Each word of the request is weighted by how specific it is to the
  knowledge base (inverse document frequency: "claim", in 18 of 50 articles,
  says less than "superbill", in one); a word in the article's title counts
  double.  A word no article uses counts as much as the rarest word if the
  sender wrote it in lower case (a topic the knowledge base does not cover:
  "wifi", "renewal") and little if it only looks like a name or an
  identifier ("Delgado", "INV-20931"), which says nothing about the topic.
* The title factor runs from ``1 - TITLE_SHARE`` (no title word asked about)
  to 1 (the request names all of it), so that a request reaches the
  "kb-answer" level only when it asks what the article's title says and the
  body covers the rest, and a request that shares only common words with
  some article stays below the suggestion level.

Words are compared lightly stemmed ("printing", "prints", "printed" are one
word), a typo of a known word is read as that word ("eligibilty"), and the
closing and signature of a mail ("Thanks, / Jen / Front desk") are not part
of the request.
"""

from __future__ import annotations

import csv
import math
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcase.core.errors import UsageError
from mailcase.domain.db import is_postgres
from mailcase.domain.tables import KB
from mailcase.mail.words import STOPWORDS

_TOKEN = re.compile(r"[^\W_][\w'-]*", re.UNICODE)
_CONTRACTIONS = ("n't", "'m", "'re", "'ve", "'ll", "'d")
#: a line that ends what the sender wrote: a closing ("Thanks, Jen", "Best regards,"), a signature
#: separator, a mobile footer; not a sentence ("Thanks for looking into the labels, also ...")
_CLOSING = re.compile(
    r"^\s*(?:--\s*|_{3,}\s*|(?i:sent from my|get outlook for)\b.*|"
    r"(?i:thanks|thank you|thx|many thanks|regards|best regards|kind regards|warm regards|best wishes|best|"
    r"cheers|sincerely|yours sincerely|yours truly|respectfully|all the best|greetings|take care)"
    r"(?i:\s+(?:in advance|so much|again|a lot|very much|for your help|for your time|from [\w ]{1,30}))?"
    r"[\s,.!;:-]*(?:[A-Z(][^\n]{0,40})?)$")
#: the weight of a word no article uses and the sender only wrote like a name,
#: relative to the rarest word
NAME_WEIGHT = 0.2
#: the weight of the article's title in the score (see the module docstring)
TITLE_SHARE = 0.4
#: how many candidates the full-text search passes on to the score
CANDIDATES = 50
#: how many of the request's words (the most specific ones) the search uses
QUERY_TERMS = 64
#: words this long or longer that no article uses are checked for a typo (the first TYPO_WORDS of them)
TYPO_LENGTH = 8
TYPO_WORDS = 50


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


@dataclass(frozen=True)
class Vocabulary:
    """How many articles use each (stemmed) word: the weight of the words."""

    articles: int
    df: Mapping[str, int]
    #: the words as the articles write them (lower case): what a typo may be corrected to
    words: frozenset[str] = frozenset()

    def weight(self, stem: str, name_like: bool = False) -> float:
        n = self.df.get(stem, 0)
        if n:
            return math.log(1 + self.articles / n)
        rarest = math.log(1 + max(self.articles, 1))
        return rarest * NAME_WEIGHT if name_like else rarest


@dataclass(frozen=True)
class Term:
    """A word of a request: as written (or as corrected), and whether it only looks like a name."""

    word: str
    name_like: bool


def stem(word: str) -> str:
    """A light English stemmer: plurals, -ing and -ed, a final e or doubled consonant.

    Crude, but the same on both sides: "printing", "prints" and "printed" are "print", "denied" and
    "denies" are "deny", "adding" and "added" are "add", "closed" and "close" are "clos".
    """
    w = word.lower()
    if len(w) > 4 and w.endswith(("ies", "ied")):
        return w[:-3] + "y"
    if w.endswith("sses"):
        w = w[:-2]
    elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    for suffix in ("ing", "ed"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3 and any(c in "aeiouy" for c in w[:-len(suffix)]):
            w = w[:-len(suffix)]
            break
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "lsz" and w[-1].isalpha():
        w = w[:-1]
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    return w


def _words(text: str) -> Iterable[str]:
    """The words of ``text`` that can say what it is about, as written (no stop words, numbers, "don't")."""
    for m in _TOKEN.finditer(text.replace("\u2019", "'")):
        w = m.group().strip("'-")
        low = w.lower()
        if low.endswith(_CONTRACTIONS):
            continue
        if low.endswith("'s"):
            w, low = w[:-2], low[:-2]
        if (len(low) >= 3 and low not in STOPWORDS and not low.isdigit() and any(c.isalpha() for c in low)
                and stem(low) not in STOPWORDS):
            yield w


def keywords(text: str) -> set[str]:
    """The words of ``text`` that can say what it is about, in lower case."""
    return {w.lower() for w in _words(text)}


def terms(text: str) -> frozenset[str]:
    """The stems of the words of ``text``."""
    return frozenset(stem(w) for w in _words(text))


@lru_cache(maxsize=1024)
def _article_terms(title: str, body: str) -> tuple[frozenset[str], frozenset[str]]:
    """The stems of an article's title, and of the whole article."""
    title_terms = terms(title)
    return title_terms, title_terms | terms(body)


def strip_signature(text: str) -> str:
    """``text`` up to its closing line ("Thanks,", "Best regards, Sam", "--", "Sent from my ...")."""
    lines = text.splitlines()
    words = 0
    for i, line in enumerate(lines):
        if words >= 3 and _CLOSING.match(line):
            return "\n".join(lines[:i])
        words += sum(1 for _ in _words(line))
    return text


def _name_like(written: Iterable[str]) -> bool:
    return all(not w.islower() or any(c.isdigit() for c in w) for w in written)


_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _correct(word: str, vocab: Vocabulary) -> str | None:
    """The most used known word one typo away from ``word`` ("eligibilty", "recieved"), if any."""
    if len(word) < TYPO_LENGTH or not word.isalpha():
        return None
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    edits = {a + b[1:] for a, b in splits if b}
    edits |= {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    edits |= {a + c + b[1:] for a, b in splits if b for c in _LETTERS}
    edits |= {a + c + b for a, b in splits for c in _LETTERS}
    found = [(vocab.df.get(stem(e), 0), e) for e in edits if e in vocab.words]
    return max(found)[1] if found else None


def request_terms(text: str, vocab: Vocabulary | None = None) -> dict[str, Term]:
    """The stems of a request without its signature; with ``vocab``, typos of known words corrected."""
    seen: dict[str, list[str]] = {}
    for w in _words(strip_signature(text)):
        seen.setdefault(stem(w), []).append(w)
    out: dict[str, Term] = {}
    checked = 0
    for s, written in seen.items():
        name_like = _name_like(written)
        if vocab is not None and not name_like and s not in vocab.df and checked < TYPO_WORDS:
            checked += 1
            fixed = _correct(written[0].lower(), vocab)
            if fixed is not None:
                out.setdefault(stem(fixed), Term(fixed, False))
                continue
        out.setdefault(s, Term(written[0], name_like))
    return out


def _front_matter(text: str) -> tuple[dict[str, str], str]:
    meta: dict[str, str] = {}
    if text.startswith("---"):
        head, sep, rest = text[3:].partition("\n---")
        if sep:
            for line in head.splitlines():
                key, colon, value = line.partition(":")
                if colon:
                    value = value.strip()
                    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                        value = value[1:-1].strip()  # quoted, as YAML allows: only the enclosing pair
                    meta[key.strip().lower()] = value
            return meta, rest.lstrip("-\r\n")
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
            # utf-8-sig: front matter after a byte-order mark (Windows editors) is still front matter
            meta, body = _front_matter(path.read_text(encoding="utf-8-sig"))
            if not meta.get("title") or not meta.get("url"):
                raise UsageError(f"{path}: a knowledge-base article needs a title and a url")
            out.append(Article(path.stem, meta["title"], meta["url"], body.strip()))
        return out
    if source.is_file():
        with source.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"title", "url", "body"} - set(reader.fieldnames or ())
            if missing:
                raise UsageError(f"{source}: CSV needs columns title, url, body (missing {', '.join(sorted(missing))})")
            articles: list[Article] = []
            slugs: set[str] = set()
            for r in reader:
                title, url = (r.get("title") or "").strip(), (r.get("url") or "").strip()
                if not title or not url:
                    raise UsageError(
                        f"{source}: line {reader.line_num}: a knowledge-base article needs a title and a url")
                base = re.sub(r"\W+", "-", title.lower()).strip("-")[:190] or f"row-{len(articles) + 1}"
                slug, n = base, 1
                while slug in slugs:  # two rows with one title: two articles, not a unique-key error
                    n += 1
                    slug = f"{base}-{n}"
                slugs.add(slug)
                articles.append(Article(slug, title, url, r.get("body") or ""))
            return articles
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


def vocabulary(articles: Iterable[tuple[str, str]]) -> Vocabulary:
    """The document frequencies of (title, body) pairs."""
    df: dict[str, int] = {}
    words: set[str] = set()
    n = 0
    for title, body in articles:
        n += 1
        for s in _article_terms(title, body)[1]:
            df[s] = df.get(s, 0) + 1
        words |= keywords(f"{title}\n{body}")
    return Vocabulary(n, df, frozenset(words))


_vocabularies: dict[tuple[object, ...], Vocabulary] = {}
_vocabularies_lock = threading.Lock()


def _vocabulary(conn: Connection) -> Vocabulary:
    """The vocabulary of the indexed articles, cached until they change."""
    fingerprint = conn.execute(sa.select(
        sa.func.count(), sa.func.coalesce(sa.func.max(KB.c.id), 0),
        sa.func.coalesce(sa.func.sum(sa.func.length(KB.c.title) + sa.func.length(KB.c.body)), 0),
        sa.func.coalesce(sa.func.min(KB.c.slug), ""), sa.func.coalesce(sa.func.max(KB.c.slug), ""),
    ).select_from(KB)).one()
    key = (conn.engine.url.render_as_string(hide_password=True), *fingerprint)
    with _vocabularies_lock:
        found = _vocabularies.get(key)
    if found is None:
        found = vocabulary((r[0], r[1]) for r in conn.execute(sa.select(KB.c.title, KB.c.body)))
        with _vocabularies_lock:
            if len(_vocabularies) >= 16:
                _vocabularies.clear()
            _vocabularies[key] = found
    return found


def _query_words(request: Mapping[str, Term], vocab: Vocabulary) -> list[str]:
    """The search words: the most specific request words some article uses, split where the search splits."""
    known = sorted((s for s in request if vocab.df.get(s)), key=lambda s: (vocab.df[s], s))[:QUERY_TERMS]
    words: list[str] = []
    for s in known:
        for part in re.split(r"[\W_]+", request[s].word.lower()):
            if len(part) >= 2 and part not in words:
                words.append(part)
    return words


def _candidates(conn: Connection, words: list[str], limit: int) -> list[tuple[str, str, str, str]]:
    if not words:
        return []
    if is_postgres(conn):
        rows = conn.execute(sa.text(
            "SELECT title, url, body, slug FROM kb_article, to_tsquery('english', :q) AS q "
            "WHERE to_tsvector('english', title || ' ' || body) @@ q "
            "ORDER BY ts_rank(to_tsvector('english', title || ' ' || body), q) DESC, slug LIMIT :n"
        ), {"q": " | ".join(words), "n": limit}).all()
    else:
        query = " OR ".join('"' + w.replace('"', "") + '"' for w in words)
        rows = conn.execute(sa.text(
            "SELECT a.title, a.url, a.body, a.slug FROM kb_fts JOIN kb_article a ON a.id = kb_fts.rowid "
            "WHERE kb_fts MATCH :q ORDER BY bm25(kb_fts, 5.0, 1.0), a.slug LIMIT :n"
        ), {"q": query, "n": limit}).all()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def score(request: Mapping[str, Term], title: str, body: str, vocab: Vocabulary) -> float:
    """How much of the request the article covers, times how much of its title the request asks about."""
    title_terms, words = _article_terms(title, body)
    total = hits = 0.0
    for s, term in request.items():
        w = vocab.weight(s, term.name_like) * (2 if s in title_terms else 1)
        total += w
        if s in words:
            hits += w
    if not total:
        return 0.0
    title_total = sum(vocab.weight(s) for s in title_terms)
    title_hits = sum(vocab.weight(s) for s in title_terms if s in request)
    asked = title_hits / title_total if title_total else 0.0
    return hits / total * (1 - TITLE_SHARE + TITLE_SHARE * asked)


def suggest(conn: Connection, text: str, limit: int = 3, minimum: float = 0.3, min_words: int = 3) -> list[Suggestion]:
    """Up to ``limit`` articles relevant to ``text``, best first (equal scores by slug)."""
    vocab = _vocabulary(conn)
    request = request_terms(text, vocab)
    if len(request) < min_words:
        return []
    found: list[tuple[float, str, Suggestion]] = []
    for title, url, body, slug in _candidates(conn, _query_words(request, vocab), CANDIDATES):
        s = score(request, title, body, vocab)
        overlap = len(request.keys() & _article_terms(title, body)[1])
        if s >= minimum and overlap >= min_words:
            found.append((-s, slug, Suggestion(title, url, round(s, 3))))
    found.sort(key=lambda x: (x[0], x[1]))
    return [x[2] for x in found[:limit]]


def count(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(KB)).scalar_one())
