"""Past postmortems, searchable offline: ChromaDB vectors (MiniLM via onnxruntime) and SQLite FTS5 BM25,
fused by reciprocal rank, filtered by metadata and by time, one result per postmortem."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from agent.schemas import Incident
from tools.embeddings import ChromaEmbedding, MiniLMEmbedder
from tools.postmortem_format import Postmortem, PostmortemError, read_postmortem

Mode = Literal["hybrid", "vector", "lexical"]
RRF_K = 60  # the usual reciprocal-rank-fusion constant: damps the head of each ranking
CANDIDATES = 60  # chunks taken from each ranking before fusion
_WORD = re.compile(r"[A-Za-z0-9_]{2,}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, digest TEXT NOT NULL, postmortem_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS postmortems (
    id TEXT PRIMARY KEY, incident_id TEXT, title TEXT, date_ts REAL, date TEXT, category TEXT,
    subcategory TEXT, mitigation TEXT, ttm_hours REAL, services TEXT);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks USING fts5(chunk_id UNINDEXED, postmortem_id UNINDEXED,
    section UNINDEXED, text, tokenize = 'porter unicode61');
"""


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    chunks: int = 0


def _ts(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


class PostmortemIndex:
    def __init__(
        self,
        directory: Path = Path(".mitigate"),
        *,
        chroma_url: str | None = None,
        embedder: MiniLMEmbedder | None = None,
    ) -> None:
        import chromadb

        directory.mkdir(parents=True, exist_ok=True)
        self.embedder = embedder or MiniLMEmbedder()
        # No telemetry: air-gapped clusters are common here, and nothing should phone home.
        settings = chromadb.config.Settings(anonymized_telemetry=False)
        if chroma_url:
            host, _, port = chroma_url.removeprefix("http://").rstrip("/").partition(":")
            client: Any = chromadb.HttpClient(host=host, port=int(port or 8000), settings=settings)
        else:
            client = chromadb.PersistentClient(path=str(directory / "chroma"), settings=settings)
        self.collection = client.get_or_create_collection(
            "postmortems",
            embedding_function=ChromaEmbedding(self.embedder),
            metadata={"hnsw:space": "cosine"},
        )
        self.db = sqlite3.connect(directory / "postmortems.db", check_same_thread=False)
        self.db.executescript(_SCHEMA)

    # ---- ingestion ----------------------------------------------------------------------------
    def ingest(self, path: Path, progress: Callable[[int, int], None] | None = None) -> IngestReport:
        files = sorted(path.rglob("*.md")) if path.is_dir() else [path]
        report = IngestReport()
        for done, file in enumerate(files, start=1):
            try:
                self._ingest_file(file, report)
            except PostmortemError as exc:
                report.failed.append((str(file), str(exc)))
            if progress is not None:
                progress(done, len(files))
        return report

    def _ingest_file(self, file: Path, report: IngestReport) -> None:
        postmortem = read_postmortem(file)
        known = self.db.execute("SELECT digest FROM files WHERE path = ?", (str(file),)).fetchone()
        if known and known[0] == postmortem.digest:
            report.unchanged += 1
            return
        existed = self.db.execute("SELECT 1 FROM postmortems WHERE id = ?", (postmortem.meta.id,)).fetchone()
        self._remove(postmortem.meta.id)
        report.chunks += self._add(postmortem)
        self.db.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?)", (str(file), postmortem.digest, postmortem.meta.id)
        )
        self.db.commit()
        (report.updated if existed or known else report.added).append(postmortem.meta.id)

    def _remove(self, postmortem_id: str) -> None:
        self.collection.delete(where={"postmortem_id": postmortem_id})
        self.db.execute("DELETE FROM chunks WHERE postmortem_id = ?", (postmortem_id,))
        self.db.execute("DELETE FROM postmortems WHERE id = ?", (postmortem_id,))

    def _add(self, postmortem: Postmortem) -> int:
        meta = postmortem.meta
        chunks = postmortem.chunks()
        ids = [f"{meta.id}#{c.section}#{c.ordinal}" for c in chunks]
        common = {
            "postmortem_id": meta.id,
            "category": meta.category,
            "subcategory": meta.subcategory,
            "mitigation": meta.mitigation,
            "date_ts": _ts(meta.date),
        }
        self.collection.add(
            ids=ids,
            documents=[c.text for c in chunks],
            embeddings=list(self.embedder.embed([c.text for c in chunks])),
            metadatas=[{**common, "section": c.section} for c in chunks],
        )
        self.db.executemany(
            "INSERT INTO chunks VALUES (?, ?, ?, ?)",
            [(i, meta.id, c.section, c.text) for i, c in zip(ids, chunks, strict=True)],
        )
        self.db.execute(
            "INSERT INTO postmortems VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                meta.id,
                meta.incident_id,
                meta.title,
                _ts(meta.date),
                meta.date.date().isoformat(),
                meta.category,
                meta.subcategory,
                meta.mitigation,
                meta.ttm_hours,
                ",".join(meta.services),
            ),
        )
        return len(chunks)

    # ---- search -------------------------------------------------------------------------------
    def search(
        self,
        text: str,
        k: int = 5,
        *,
        before: datetime | None = None,
        exclude_ids: Iterable[str] = (),
        where: dict[str, str] | None = None,
        mode: Mode = "hybrid",
    ) -> list[dict[str, Any]]:
        excluded = set(exclude_ids)
        allowed = self._allowed(before, excluded, where or {})
        if not allowed:
            return []
        rankings: list[list[tuple[str, str]]] = []
        if mode in ("hybrid", "vector"):
            rankings.append(self._vector(text, before, where or {}, allowed))
        if mode in ("hybrid", "lexical"):
            rankings.append(self._lexical(text, allowed))
        fused: dict[str, float] = {}
        best_chunk: dict[str, tuple[float, str]] = {}
        for ranking in rankings:
            for rank, (chunk_id, _postmortem) in enumerate(ranking):
                score = 1.0 / (RRF_K + rank + 1)
                fused[chunk_id] = fused.get(chunk_id, 0.0) + score
        for chunk_id, score in fused.items():
            postmortem_id = chunk_id.split("#", 1)[0]
            if score > best_chunk.get(postmortem_id, (0.0, ""))[0]:
                best_chunk[postmortem_id] = (score, chunk_id)
        ranked = sorted(best_chunk.items(), key=lambda kv: kv[1][0], reverse=True)[:k]
        return [self._result(pid, score, chunk_id) for pid, (score, chunk_id) in ranked]

    def _allowed(self, before: datetime | None, excluded: set[str], where: dict[str, str]) -> set[str]:
        sql, args = "SELECT id, incident_id FROM postmortems WHERE 1=1", list[Any]()
        if before is not None:
            sql += " AND date_ts < ?"
            args.append(_ts(before))
        for key, value in where.items():
            if key not in ("category", "subcategory", "mitigation"):
                raise ValueError(f"cannot filter postmortems by {key!r}")
            sql += f" AND {key} = ?"
            args.append(value)
        return {pid for pid, incident in self.db.execute(sql, args) if pid not in excluded and incident not in excluded}

    def _vector(
        self, text: str, before: datetime | None, where: dict[str, str], allowed: set[str]
    ) -> list[tuple[str, str]]:
        clauses: list[dict[str, Any]] = [{key: value} for key, value in where.items()]
        if before is not None:
            clauses.append({"date_ts": {"$lt": _ts(before)}})
        chroma_where = clauses[0] if len(clauses) == 1 else ({"$and": clauses} if clauses else None)
        result = self.collection.query(
            query_embeddings=list(self.embedder.embed([text])),
            n_results=CANDIDATES,
            where=chroma_where,
            include=["metadatas"],
        )
        ids, metas = result["ids"][0], (result["metadatas"] or [[]])[0]
        return [(i, str(m["postmortem_id"])) for i, m in zip(ids, metas, strict=True) if m["postmortem_id"] in allowed]

    def _lexical(self, text: str, allowed: set[str]) -> list[tuple[str, str]]:
        words = sorted({w.lower() for w in _WORD.findall(text)})
        if not words:
            return []
        query = " OR ".join(f'"{w}"' for w in words[:64])
        rows = self.db.execute(
            "SELECT chunk_id, postmortem_id FROM chunks WHERE chunks MATCH ? ORDER BY bm25(chunks) LIMIT ?",
            (query, CANDIDATES * 4),
        )
        return [(c, p) for c, p in rows if p in allowed][:CANDIDATES]

    def _result(self, postmortem_id: str, score: float, chunk_id: str) -> dict[str, Any]:
        row = self.db.execute(
            "SELECT id, incident_id, title, date, category, subcategory, mitigation, ttm_hours "
            "FROM postmortems WHERE id = ?",
            (postmortem_id,),
        ).fetchone()
        section, snippet = self.db.execute(
            "SELECT section, text FROM chunks WHERE chunk_id = ?", (chunk_id,)
        ).fetchone()
        keys = ("id", "incident_id", "title", "date", "category", "subcategory", "mitigation", "ttm_hours")
        return {
            **dict(zip(keys, row, strict=True)),
            "score": round(score, 5),
            "section": section,
            "snippet": snippet[:400],
        }

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM postmortems").fetchone()[0])


class PostmortemRetriever:
    """The graph's Retriever port: precedents for an incident, never from its future, never itself."""

    def __init__(self, index: PostmortemIndex) -> None:
        self.index = index

    def search(self, incident: Incident, k: int) -> list[dict[str, Any]]:
        query = "\n".join([incident.text(), " ".join(incident.signals)])
        return self.index.search(query, k, before=incident.started_at, exclude_ids={incident.id})
