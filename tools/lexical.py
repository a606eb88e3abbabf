"""Lexical search over postmortem chunks: SQLite FTS5 with its `bm25()` ranking (stdlib sqlite3 only).

One row per chunk: the title and the chunk's text are indexed (Porter stemming, Unicode-aware), and the
postmortem's metadata sits in UNINDEXED columns of the same row, so the filters of a vector search
(time, category, self-exclusion, ...) apply here as plain SQL conditions.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SCHEMA_VERSION = 3  # of postmortems.db as a whole (this table and the catalog next to it)
MAX_QUERY_TERMS = 64
POSTINGS_BUDGET = 10_000  # rows a lexical query may score with bm25() (about 10 ms on 2 cores)
OVERFETCH = 4  # a filtered search first ranks this many times the rows it needs, then filters them
METADATA = (
    "chunk_id",
    "postmortem_id",
    "incident_id",
    "section",
    "ordinal",
    "date",
    "date_ts",
    "category",
    "subcategory",
    "mitigation",
    "ttm_hours",
    "services",
)
FILTERABLE = ("category", "subcategory", "mitigation", "services", "section")
_TABLE = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS chunks USING fts5(title, text, "
    + ", ".join(f"{column} UNINDEXED" for column in METADATA)
    + ", tokenize = 'porter unicode61 remove_diacritics 2')"
)
_WORD = re.compile(r"\w+", re.UNICODE)
# Words that match almost every chunk: they cost time and add nothing to the ranking.
_STOPWORDS = (
    "a an and are as at be been but by for from had has have in into is it its of on or our so than that "
    "the their then there these they this to was we were what when where which while who will with"
)
STOPWORDS = frozenset(_STOPWORDS.split())


@dataclass(frozen=True)
class ChunkHit:
    chunk_id: str
    postmortem_id: str
    score: float  # bm25() here (lower is better); cosine distance for vector hits
    text: str
    metadata: dict[str, Any]


def query_terms(text: str) -> list[str]:
    """Distinct words of `text` in order of first use, without stop words, at most MAX_QUERY_TERMS."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(text.lower()):
        if (len(word) > 1 or word.isdigit()) and word not in STOPWORDS:
            seen.setdefault(word, None)
    return list(seen)[:MAX_QUERY_TERMS]


def _quoted(terms: Iterable[str]) -> str:
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)


def match_expression(text: str) -> str | None:
    """An FTS5 query matching any of the words (OR); every word is quoted, so no FTS syntax gets through."""
    terms = query_terms(text)
    return _quoted(terms) if terms else None


def metadata_matches(
    metadata: Mapping[str, Any],
    before_ts: float | None = None,
    exclude_ids: Collection[str] = (),
    where: Mapping[str, Collection[str]] | None = None,
) -> bool:
    """The search filters as a predicate on a chunk's metadata (the same rules as the SQL and Chroma
    filters): dated strictly before `before_ts`, neither id nor incident id excluded, and for each
    `where` key one of the values (for `services`: the postmortem lists one of them)."""
    if before_ts is not None and not float(metadata["date_ts"]) < before_ts:
        return False
    if metadata["postmortem_id"] in exclude_ids or (metadata.get("incident_id") or "") in exclude_ids:
        return False
    for key, values in (where or {}).items():
        if key == "services":
            if not set(metadata.get("services") or ()) & set(values):
                return False
        elif metadata.get(key) not in values:
            return False
    return True


class LexicalIndex:
    """The FTS5 table `chunks` on a connection it may share with other tables (one transaction for both).

    BM25 costs time per matching row, so on a large index the query leaves out its most frequent words
    (the ones BM25 weighs least) once the rows they would match exceed POSTINGS_BUDGET; the rarest
    word always stays. Filters are applied to an over-fetched ranking when that keeps enough rows, and
    in SQL otherwise. Word frequencies are cached and the cache is dropped on every write through this
    object or announced by `forget` (stale counts would only make the pruning less apt, never wrong).
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        db.execute(_TABLE)
        self._frequency: dict[str, int] = {}
        self._rows: int | None = None

    def forget(self) -> None:
        """Drop the cached word frequencies and row count (after a write, here or by another process)."""
        self._frequency.clear()
        self._rows = None

    def add(self, rows: Iterable[tuple[str, str, Mapping[str, Any]]]) -> int:
        """Insert (title, text, metadata) rows; metadata has every METADATA key (services a list)."""
        values = [(title, text, *(_stored(key, metadata[key]) for key in METADATA)) for title, text, metadata in rows]
        placeholders = ", ".join("?" for _ in range(2 + len(METADATA)))
        self.db.executemany(f"INSERT INTO chunks (title, text, {', '.join(METADATA)}) VALUES ({placeholders})", values)
        self.forget()
        return len(values)

    def delete(self, postmortem_ids: Collection[str]) -> None:
        if postmortem_ids:
            marks = ", ".join("?" for _ in postmortem_ids)
            self.db.execute(f"DELETE FROM chunks WHERE postmortem_id IN ({marks})", list(postmortem_ids))
            self.forget()

    def count(self) -> int:
        if self._rows is None:
            self._rows = int(self.db.execute("SELECT count(*) FROM chunks").fetchone()[0])
        return self._rows

    def chunk_ids(self) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT chunk_id FROM chunks")]

    def frequency(self, term: str) -> int:
        """Rows matching one word (after the index's own tokenising and stemming)."""
        if term not in self._frequency:
            row = self.db.execute("SELECT count(*) FROM chunks WHERE chunks MATCH ?", (_quoted([term]),)).fetchone()
            self._frequency[term] = int(row[0])
        return self._frequency[term]

    def plan(self, text: str) -> list[str]:
        """The words of `text` the MATCH will use: all of them on a small index; on a large one, the
        rarest words whose matching rows add up to at most POSTINGS_BUDGET (and at least the rarest)."""
        terms = query_terms(text)
        if self.count() <= POSTINGS_BUDGET:
            return terms
        counted = sorted((self.frequency(t), n, t) for n, t in enumerate(terms))
        kept: list[str] = []
        total = 0
        for frequency, _, term in counted:
            if frequency == 0:
                continue
            if kept and total + frequency > POSTINGS_BUDGET:
                break
            kept.append(term)
            total += frequency
        return kept

    def search(
        self,
        text: str,
        limit: int,
        *,
        before_ts: float | None = None,
        exclude_ids: Collection[str] = (),
        where: Mapping[str, str | list[str]] | None = None,
        share: float = 1.0,
    ) -> list[ChunkHit]:
        """Chunks ranked by BM25 (best first), filtered like the vector search. `share`: the expected
        part of the rows the filters keep (below OVERFETCH's reach, SQL filters straight away)."""
        terms = self.plan(text)
        if not terms or limit <= 0:
            return []
        expression = _quoted(terms)
        filters = {key: [value] if isinstance(value, str) else list(value) for key, value in (where or {}).items()}
        for key, values in filters.items():
            if key not in FILTERABLE or not values:
                raise ValueError(f"cannot filter postmortems by {key!r} = {values!r}")
        excluded = set(exclude_ids)
        if before_ts is None and not excluded and not filters:
            return self._fetch(self._ranked(expression, limit))
        # Filter an over-fetched ranking; if too little of it passes, let SQL filter every match.
        fetch = limit * OVERFETCH
        if share * fetch < limit // 2:
            return self._filtered(expression, limit, before_ts, sorted(excluded), filters)
        ranked = self._ranked(expression, fetch)
        kept = [h for h in self._fetch(ranked) if metadata_matches(h.metadata, before_ts, excluded, filters)]
        if len(kept) >= limit // 2 or len(ranked) < fetch:
            return kept[:limit]
        return self._filtered(expression, limit, before_ts, sorted(excluded), filters)

    def _ranked(self, expression: str, limit: int) -> list[tuple[int, float]]:
        sql = "SELECT rowid, bm25(chunks) AS rank FROM chunks WHERE chunks MATCH ? ORDER BY rank LIMIT ?"
        return [(int(r), float(s)) for r, s in self.db.execute(sql, (expression, limit))]

    def _fetch(self, ranked: list[tuple[int, float]]) -> list[ChunkHit]:
        if not ranked:
            return []
        marks = ", ".join("?" for _ in ranked)
        rows = {
            row[0]: row[1:]
            for row in self.db.execute(
                f"SELECT rowid, title, text, {', '.join(METADATA)} FROM chunks WHERE rowid IN ({marks})",
                [r for r, _ in ranked],
            )
        }
        return [_hit(rows[rowid], score) for rowid, score in ranked if rowid in rows]

    def _filtered(
        self,
        expression: str,
        limit: int,
        before_ts: float | None,
        excluded: list[str],
        filters: dict[str, list[str]],
    ) -> list[ChunkHit]:
        sql = [f"SELECT title, text, {', '.join(METADATA)}, bm25(chunks) AS rank FROM chunks WHERE chunks MATCH ?"]
        args: list[Any] = [expression]
        if before_ts is not None:
            sql.append("AND date_ts < ?")
            args.append(before_ts)
        if excluded:
            marks = ", ".join("?" for _ in excluded)
            sql.append(f"AND postmortem_id NOT IN ({marks}) AND incident_id NOT IN ({marks})")
            args.extend([*excluded, *excluded])
        for key, values in filters.items():
            if key == "services":  # stored as ',a,b,': a postmortem listing any of the services
                sql.append("AND (" + " OR ".join("instr(services, ?) > 0" for _ in values) + ")")
                args.extend(f",{v}," for v in values)
            else:
                sql.append(f"AND {key} IN ({', '.join('?' for _ in values)})")
                args.extend(values)
        sql.append("ORDER BY rank LIMIT ?")
        args.append(limit)
        return [_hit(row[:-1], float(row[-1])) for row in self.db.execute(" ".join(sql), args)]


def _hit(row: Sequence[Any], score: float) -> ChunkHit:
    title, text, *values = row
    metadata = {key: _loaded(key, value) for key, value in zip(METADATA, values, strict=True)}
    metadata["title"] = title
    return ChunkHit(metadata["chunk_id"], metadata["postmortem_id"], score, text, metadata)


def _stored(key: str, value: Any) -> Any:
    if key == "services":
        return "," + ",".join(value) + "," if value else ""
    return value


def _loaded(key: str, value: Any) -> Any:
    if key == "services":
        return [s for s in str(value).split(",") if s]
    return value
