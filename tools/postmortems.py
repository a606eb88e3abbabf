"""Past postmortems, searchable offline (docs/postmortems.md).

Chunks live twice: as MiniLM vectors in ChromaDB (embedded `PersistentClient`, or a server through
`HttpClient`) and as rows of an SQLite FTS5 table (BM25) in `postmortems.db` next to it, which also
holds the catalog of ingested files (path, content hash, postmortem id). A search ranks chunks both
ways, fuses the two rankings by reciprocal rank per postmortem, and returns one result per postmortem
with its best chunk as the snippet. Time, metadata and self-exclusion filters apply to both sides.
"""

from __future__ import annotations

import bisect
import json
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from agent.schemas import Incident
from tools.chroma_vectors import CHROMA_DIR, ChromaVectors, chroma_client, chroma_metadata
from tools.embeddings import ChromaEmbedding, MiniLMEmbedder
from tools.ingest_plan import IngestReport, Pending, plan_ingestion
from tools.lexical import FILTERABLE, SCHEMA_VERSION, ChunkHit, LexicalIndex
from tools.postmortem_format import Postmortem, PostmortemError, read_postmortem
from tools.rank_fusion import as_result, complete, rank_fusion

Mode = Literal["hybrid", "vector", "lexical"]
MODES: tuple[str, ...] = get_args(Mode)
COLLECTION = "postmortems"
DB_FILE = "postmortems.db"
CANDIDATES = 60  # chunks taken from each ranking before fusion ...
CANDIDATES_PER_RESULT = 10  # ... and at least this many per result asked for
Progress = Callable[[int, int], None]

_CATALOG = """
CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, digest TEXT NOT NULL, postmortem_id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS files_by_postmortem ON files (postmortem_id);
CREATE TABLE IF NOT EXISTS postmortems (id TEXT PRIMARY KEY, metadata TEXT NOT NULL);
"""


def _timestamp(moment: datetime) -> float:
    """Seconds since the epoch; a naive datetime is UTC."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(
        p
        for p in root.rglob("*.md")
        if p.is_file()
        and p.name.lower() != "readme.md"
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def _filters(where: Mapping[str, Any] | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in (where or {}).items():
        values = [value] if isinstance(value, str) else list(value) if isinstance(value, list | tuple | set) else []
        if key not in FILTERABLE or not values or not all(isinstance(v, str) for v in values):
            raise ValueError(
                f"cannot filter postmortems by {key!r} = {value!r}: use one of {', '.join(FILTERABLE)} "
                "with a string or a list of strings"
            )
        out[key] = values
    return out


class PostmortemIndex:
    """The index under `directory` (default `.mitigate`): `chroma/` and `postmortems.db`. With
    `chroma_url` the vectors live on that Chroma server and only `postmortems.db` is local."""

    def __init__(
        self,
        directory: Path | str = Path(".mitigate"),
        *,
        chroma_url: str | None = None,
        embedder: MiniLMEmbedder | None = None,
        collection: str = COLLECTION,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.chroma_url = chroma_url
        self.embedder = embedder or MiniLMEmbedder()
        self._lock = threading.RLock()
        self._catalog: dict[str, dict[str, Any]] | None = None  # postmortem id -> metadata, see _postmortems
        self._seen_version = -1
        self._dates: list[float] = []  # the catalog's date_ts, sorted: how much of it a `before` keeps
        self.db = sqlite3.connect(self.directory / DB_FILE, check_same_thread=False)
        rebuilt = self._prepare_db()
        self.lexical = LexicalIndex(self.db)
        try:
            self.client = chroma_client(self.directory, chroma_url)
            if rebuilt and collection in {c.name for c in self.client.list_collections()}:
                self.client.delete_collection(collection)  # its chunks predate the catalog: start over
            self.collection = self.client.get_or_create_collection(
                collection,
                embedding_function=ChromaEmbedding(self.embedder),
                configuration={"hnsw": {"space": "cosine"}},
            )
        except ValueError:
            raise
        except Exception as exc:
            where = f"the Chroma server at {chroma_url}" if chroma_url else f"{self.directory / CHROMA_DIR}"
            raise RuntimeError(f"cannot open the postmortem collection in {where}: {exc}") from exc
        self.vectors = ChromaVectors(self.collection, self.embedder)
        self._max_batch = int(self.client.get_max_batch_size())

    def _prepare_db(self) -> bool:
        """Create the tables; drop them first if they were made by another schema version."""
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        rebuilt = version != SCHEMA_VERSION and bool(tables & {"files", "chunks", "postmortems"})
        if rebuilt:
            self.db.executescript(
                "DROP TABLE IF EXISTS files; DROP TABLE IF EXISTS postmortems; DROP TABLE IF EXISTS chunks;"
            )
        self.db.executescript(_CATALOG)
        self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self.db.commit()
        return rebuilt

    def close(self) -> None:
        self.db.close()

    # ---- ingestion ----------------------------------------------------------------------------
    def ingest(
        self, path: Path | str, progress: Progress | None = None, *, batch_size: int = 64, prune: bool = False
    ) -> IngestReport:
        """Index a postmortem file or every `*.md` under a folder (README.md and hidden paths aside).

        Idempotent: a file whose content hash is indexed is skipped; a changed file replaces its old
        chunks; ids are unique (a second file claiming an indexed id is refused). A bad file is
        reported in `failed` with the reason and skipped; the rest are ingested. With `prune`, the
        postmortems of files that were under `path` and are gone are removed. `progress(done, total)`
        is called as files are settled."""
        root = Path(path)
        if not root.exists():
            raise FileNotFoundError(f"{root} does not exist")
        files = _files(root)
        report = IngestReport()
        done = 0

        def tick(n: int = 1) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(done, len(files))

        loaded: list[tuple[str, Path, Postmortem]] = []
        broken: set[str] = set()
        for file in files:
            key = str(file.resolve())
            try:
                loaded.append((key, file, read_postmortem(file)))
            except PostmortemError as exc:
                report.failed.append((str(file), str(exc)))
                broken.add(key)
                tick()

        with self._lock:
            catalog = {p: (d, i) for p, d, i in self.db.execute("SELECT path, digest, postmortem_id FROM files")}
            plan = plan_ingestion(loaded, catalog, broken, report, tick)
            parsed, pending, moved, renamed_away = plan.parsed, plan.pending, plan.moved, plan.renamed_away

            if moved:
                with self.db:
                    self.db.executemany("UPDATE files SET path = ? WHERE path = ?", [(new, old) for old, new in moved])
            for start in range(0, len(pending), max(1, batch_size)):
                batch = pending[start : start + batch_size]
                report.chunks += self._write(batch)
                for item in batch:
                    (report.updated if item.updated else report.added).append(item.postmortem.meta.id)
                tick(len(batch))

            gone: dict[str, str] = {}  # catalog path -> id, for files no longer there
            if prune and root.is_dir():
                prefix = str(root.resolve()).rstrip("/") + "/"
                present = {str(f.resolve()) for f in files}
                kept = {p.meta.id for p in parsed.values()}
                for known_path, (_, pid) in catalog.items():
                    if known_path.startswith(prefix) and known_path not in present and pid not in kept:
                        gone[known_path] = pid
            stale = renamed_away | set(gone.values())
            if stale:
                self._remove(sorted(stale), list(gone))
                report.removed.extend(sorted(stale))
        return report

    def _write(self, batch: Sequence[Pending], embeddings: np.ndarray | None = None) -> int:
        """Replace the chunks of these postmortems: Chroma first, then one SQLite transaction for the
        lexical rows and the catalog. Old chunks of an indexed postmortem are deleted by postmortem id
        first (new postmortems have none: deleting by metadata scans the collection). A crash in
        between leaves the file looking changed, so the next ingestion redoes it, overwriting the same
        chunk ids."""
        chunks = [chunk for item in batch for chunk in item.postmortem.chunks()]
        vectors = self.embedder.embed([c.indexed_text for c in chunks]) if embeddings is None else embeddings
        if len(vectors) != len(chunks):
            raise ValueError(f"{len(vectors)} embeddings for {len(chunks)} chunks")
        replaced = [item.postmortem.meta.id for item in batch if item.updated]
        if replaced:  # a metadata delete scans the collection: only for postmortems that had chunks
            self.collection.delete(where={"postmortem_id": {"$in": replaced}})
        for start in range(0, len(chunks), self._max_batch):
            part = chunks[start : start + self._max_batch]
            self.collection.upsert(
                ids=[c.chunk_id for c in part],
                embeddings=vectors[start : start + len(part)],
                documents=[c.text for c in part],
                metadatas=[chroma_metadata(c) for c in part],
            )
        self._catalog = None
        with self.db:
            self.lexical.delete(replaced)
            self.lexical.add((c.meta.title, c.text, c.metadata()) for c in chunks)
            self.db.executemany(
                "INSERT OR REPLACE INTO postmortems (id, metadata) VALUES (?, ?)",
                [(item.postmortem.meta.id, json.dumps(item.postmortem.meta.metadata())) for item in batch],
            )
            drop = [p for item in batch for p in item.drop_paths]
            self.db.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in drop])
            self.db.executemany(
                "INSERT OR REPLACE INTO files (path, digest, postmortem_id) VALUES (?, ?, ?)",
                [(item.path, item.postmortem.digest, item.postmortem.meta.id) for item in batch],
            )
        return len(chunks)

    def _remove(self, postmortem_ids: list[str], paths: Iterable[str] = ()) -> None:
        self.collection.delete(where={"postmortem_id": {"$in": postmortem_ids}})
        self._catalog = None
        with self.db:
            self.lexical.delete(postmortem_ids)
            self.db.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in paths])
            marks = ", ".join("?" for _ in postmortem_ids)
            self.db.execute(f"DELETE FROM files WHERE postmortem_id IN ({marks})", postmortem_ids)
            self.db.execute(f"DELETE FROM postmortems WHERE id IN ({marks})", postmortem_ids)

    def _postmortems(self) -> dict[str, dict[str, Any]]:
        """The catalog's metadata per postmortem, in memory; reloaded after a write through this index
        or a commit by another connection (another process ingesting)."""
        version = int(self.db.execute("PRAGMA data_version").fetchone()[0])
        if version != self._seen_version:
            self._seen_version = version
            self._catalog = None
            self.lexical.forget()
        if self._catalog is None:
            rows = self.db.execute("SELECT id, metadata FROM postmortems")
            self._catalog = {pid: json.loads(metadata) for pid, metadata in rows}
            self._dates = sorted(float(m["date_ts"]) for m in self._catalog.values())
        return self._catalog

    def _share_before(self, before_ts: float | None) -> float:
        """The share of the catalog's postmortems dated before `before_ts` (1.0 without a catalog)."""
        if before_ts is None or not self._dates:
            return 1.0
        return bisect.bisect_left(self._dates, before_ts) / len(self._dates)

    # ---- search -------------------------------------------------------------------------------
    def search(
        self,
        text: str,
        k: int = 5,
        *,
        before: datetime | None = None,
        exclude_ids: Collection[str] = (),
        where: Mapping[str, str | list[str]] | None = None,
        mode: Mode = "hybrid",
    ) -> list[dict[str, Any]]:
        """The k postmortems most similar to `text`, best first, one per postmortem.

        `before`: only postmortems dated strictly before it (naive = UTC). `exclude_ids`: drop
        postmortems whose id or incident_id is in it. `where`: metadata equality (a list means any of)
        on category, subcategory, mitigation, services (the postmortem lists it) or section.
        `mode`: "hybrid" (reciprocal rank fusion of both rankings), "vector" or "lexical"."""
        if mode not in MODES:
            raise ValueError(f"search mode must be one of {', '.join(MODES)}, got {mode!r}")
        filters = _filters(where)
        if k <= 0:
            return []
        excluded = sorted({str(i) for i in exclude_ids if i})
        before_ts = _timestamp(before) if before is not None else None
        candidates = max(CANDIDATES, CANDIDATES_PER_RESULT * k)
        rankings: dict[str, list[ChunkHit]] = {}
        with self._lock:
            catalog = self._postmortems()
            share = self._share_before(before_ts)
            if mode != "lexical":
                rankings["vector"] = self.vectors.nearest(
                    text, candidates, before_ts, excluded, filters, catalog, share
                )
            if mode != "vector":
                rankings["lexical"] = self.lexical.search(
                    text, candidates, before_ts=before_ts, exclude_ids=excluded, where=filters, share=share
                )
            fused = rank_fusion(rankings, k)
            incomplete = [hit.chunk_id for hit, _, _ in fused if not complete(hit)]
            details: dict[str, ChunkHit] = {}
            if incomplete:
                got = self.collection.get(ids=incomplete, include=["documents", "metadatas"])
                for chunk_id, document, metadata in zip(
                    got["ids"], got["documents"] or [], got["metadatas"] or [], strict=True
                ):
                    details[chunk_id] = ChunkHit(
                        chunk_id, str(metadata["postmortem_id"]), 0.0, document or "", dict(metadata)
                    )
        return [as_result(details.get(hit.chunk_id, hit), score, ranks) for hit, score, ranks in fused]

    def count(self) -> int:
        """Postmortems in the catalog of this index."""
        return int(self.db.execute("SELECT count(*) FROM postmortems").fetchone()[0])


class PostmortemRetriever:
    """The graph's Retriever port (agent/context.py): precedents for an incident, searched with its
    text and signal names, never from its future (`before=started_at`), never itself."""

    def __init__(self, index: PostmortemIndex, mode: Mode = "hybrid") -> None:
        self.index = index
        self.mode = mode

    @staticmethod
    def query(incident: Incident) -> str:
        signals = " ".join(name.replace("_", " ").replace(".", " ") for name in incident.signals)
        return "\n".join(part for part in (incident.text(), signals) if part)

    def search(self, incident: Incident, k: int) -> list[dict[str, Any]]:
        return self.index.search(
            self.query(incident), k, before=incident.started_at, exclude_ids={incident.id}, mode=self.mode
        )
