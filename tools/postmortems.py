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
    def ingest(
        self, path: Path, progress: Callable[[int, int], None] | None = None, batch_size: int = 64
    ) -> IngestReport:
        files = sorted(path.rglob("*.md")) if path.is_dir() else [path]
        report = IngestReport()
        pending: list[tuple[Path, Postmortem, bool]] = []
        for done, file in enumerate(files, start=1):
            try:
                postmortem = read_postmortem(file)
            except PostmortemError as exc:
                report.failed.append((str(file), str(exc)))
                continue
            known = self.db.execute("SELECT digest FROM files WHERE path = ?", (str(file),)).fetchone()
            if known and known[0] == postmortem.digest:
                report.unchanged += 1
            else:
                existed = self.db.execute("SELECT 1 FROM postmortems WHERE id = ?", (postmortem.meta.id,)).fetchone()
                pending.append((file, postmortem, bool(existed or known)))
            if len(pending) >= batch_size or done == len(files):
                self._write(pending, report)
                pending = []
            if progress is not None:
                progress(done, len(files))
        self._write(pending, report)
        return report

    def _write(self, pending: list[tuple[Path, Postmortem, bool]], report: IngestReport) -> None:
        if not pending:
            return
        latest = {pm.meta.id: (file, pm, updated) for file, pm, updated in pending}  # one id twice: last wins
        for postmortem_id in latest:
            self._remove(postmortem_id)
        report.chunks += self._add_many([pm for _, pm, _ in latest.values()])
        self.db.executemany(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?)",
            [(str(file), pm.digest, pm.meta.id) for file, pm, _ in pending],
        )
        self.db.commit()
        for postmortem_id, (_, _, updated) in latest.items():
            (report.updated if updated else report.added).append(postmortem_id)

    def _remove(self, postmortem_id: str) -> None:
        self.collection.delete(where={"postmortem_id": postmortem_id})
        self.db.execute("DELETE FROM chunks WHERE postmortem_id = ?", (postmortem_id,))
        self.db.execute("DELETE FROM postmortems WHERE id = ?", (postmortem_id,))

    def _add(self, postmortem: Postmortem) -> int:
        return self._add_many([postmortem])

    def _add_many(self, postmortems: list[Postmortem]) -> int:
        """One embedding pass and one Chroma write for many postmortems: per-call overhead dominated."""
        rows = [(pm.meta, chunk) for pm in postmortems for chunk in pm.chunks()]
        if not rows:
            return 0
        texts = [chunk.text for _, chunk in rows]
        # Similar lengths share a batch, so little of each batch is padding.
        order = sorted(range(len(texts)), key=lambda n: len(texts[n]))
        vectors = self.embedder.embed([texts[n] for n in order])
        embeddings = [None] * len(texts)
        for position, n in enumerate(order):
            embeddings[n] = vectors[position]
        ids = [f"{meta.id}#{chunk.section}#{chunk.ordinal}" for meta, chunk in rows]
        metadatas = [
            {
                "postmortem_id": meta.id,
                "category": meta.category,
                "subcategory": meta.subcategory,
                "mitigation": meta.mitigation,
                "date_ts": _ts(meta.date),
                "section": chunk.section,
            }
            for meta, chunk in rows
        ]
        self.collection.add(ids=ids, documents=texts, embeddings=embeddings, metadatas=metadatas)
        self.db.executemany(
            "INSERT INTO chunks VALUES (?, ?, ?, ?)",
            [(i, meta.id, chunk.section, chunk.text) for i, (meta, chunk) in zip(ids, rows, strict=True)],
        )
        self.db.executemany(
            "INSERT INTO postmortems VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    pm.meta.id,
                    pm.meta.incident_id,
                    pm.meta.title,
                    _ts(pm.meta.date),
                    pm.meta.date.date().isoformat(),
                    pm.meta.category,
                    pm.meta.subcategory,
                    pm.meta.mitigation,
                    pm.meta.ttm_hours,
                    ",".join(pm.meta.services),
                )
                for pm in postmortems
            ],
        )
        return len(rows)

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
