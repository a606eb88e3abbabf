"""The vector side of the postmortem index: a ChromaDB collection of chunk embeddings (embedded
`PersistentClient`, or a server through `HttpClient`), searched nearest-first with the index's
time, metadata and self-exclusion filters."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from tools.embeddings import MiniLMEmbedder
from tools.lexical import OVERFETCH, ChunkHit, metadata_matches
from tools.postmortem_format import Chunk

CHROMA_DIR = "chroma"
DEEP_FETCH = 2000  # a filtered vector search looks this deep in the unfiltered ranking before Chroma filters


def chroma_client(directory: Path, url: str | None) -> Any:
    import chromadb

    # No telemetry: air-gapped clusters are common here, and nothing should phone home.
    settings = chromadb.config.Settings(anonymized_telemetry=False)
    if not url:
        return chromadb.PersistentClient(path=str(directory / CHROMA_DIR), settings=settings)
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"Chroma URL must look like http://host:port, got {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 8000)
    return chromadb.HttpClient(host=parts.hostname, port=port, ssl=parts.scheme == "https", settings=settings)


def chroma_where(before_ts: float | None, excluded: list[str], where: dict[str, list[str]]) -> dict[str, Any] | None:
    """The index's filters as a Chroma `where` clause."""
    clauses: list[dict[str, Any]] = []
    if before_ts is not None:
        clauses.append({"date_ts": {"$lt": before_ts}})
    if excluded:
        clauses.append({"postmortem_id": {"$nin": excluded}})
        clauses.append({"incident_id": {"$nin": excluded}})
    for key, values in where.items():
        if key == "services":
            either = [{"services": {"$contains": v}} for v in values]
            clauses.append(either[0] if len(either) == 1 else {"$or": either})
        else:
            clauses.append({key: {"$in": values}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def chroma_metadata(chunk: Chunk) -> dict[str, Any]:
    metadata = chunk.metadata()
    if not metadata["services"]:
        del metadata["services"]  # Chroma refuses empty lists
    return metadata


class ChromaVectors:
    """Nearest chunks in one collection, filtered."""

    def __init__(self, collection: Any, embedder: MiniLMEmbedder) -> None:
        self.collection = collection
        self.embedder = embedder

    def nearest(
        self,
        text: str,
        n: int,
        before_ts: float | None,
        excluded: list[str],
        where: dict[str, list[str]],
        catalog: Mapping[str, Mapping[str, Any]],
        share: float = 1.0,
    ) -> list[ChunkHit]:
        """The n nearest chunks that pass the filters. Chroma's own metadata filters scan every row
        (about 0.2 s at 100k chunks) and fetching metadata costs per result, so Chroma returns only ids,
        ever deeper (n, 8n, DEEP_FETCH), filtered here by the catalog's metadata of their postmortem;
        Chroma filters only when even DEEP_FETCH is not enough (`share`, the part of the catalog a
        `before` keeps, sets the first depth, or sends a very selective search to Chroma at once). A
        section filter, or chunks of postmortems this catalog does not hold (a Chroma server shared
        with other replicas), take Chroma's metadata instead."""
        if not text.strip():
            return []
        vector = self.embedder.embed([text])
        if "section" in where:
            return self._by_chroma_metadata(vector, n, before_ts, excluded, where)
        if share * DEEP_FETCH < n:
            return self.query(vector, n, chroma_where(before_ts, excluded, where))
        fetch = n if share >= 1.0 else min(DEEP_FETCH, max(n, math.ceil(2 * n / share)))
        while True:
            ids = self.collection.query(query_embeddings=vector, n_results=fetch, include=[])["ids"][0]
            hits = []
            for chunk_id in ids:
                postmortem_id = chunk_id.rpartition(":")[0]
                metadata = catalog.get(postmortem_id)
                if metadata is None:
                    return self._by_chroma_metadata(vector, n, before_ts, excluded, where)
                if metadata_matches(metadata, before_ts, excluded, where):
                    hits.append(ChunkHit(chunk_id, postmortem_id, 0.0, "", dict(metadata)))
            if len(hits) >= n or len(ids) < fetch:
                return hits[:n]
            if fetch >= DEEP_FETCH:
                return self.query(vector, n, chroma_where(before_ts, excluded, where))
            fetch = min(DEEP_FETCH, fetch * 8)

    def _by_chroma_metadata(
        self, vector: np.ndarray, n: int, before_ts: float | None, excluded: list[str], where: dict[str, list[str]]
    ) -> list[ChunkHit]:
        if before_ts is None and not excluded and not where:
            return self.query(vector, n, None)
        fetch = n * OVERFETCH
        ranked = self.query(vector, fetch, None)
        kept = [h for h in ranked if metadata_matches(h.metadata, before_ts, excluded, where)]
        if len(kept) >= n or len(ranked) < fetch:
            return kept[:n]
        return self.query(vector, n, chroma_where(before_ts, excluded, where))

    def query(self, vector: np.ndarray, n: int, where: dict[str, Any] | None) -> list[ChunkHit]:
        """Chroma's n nearest chunks with their text, metadata and distance, filtered by Chroma."""
        result = self.collection.query(
            query_embeddings=vector, n_results=n, where=where, include=["metadatas", "documents", "distances"]
        )
        ids = result["ids"][0]
        metadatas = (result["metadatas"] or [[]])[0]
        documents = (result["documents"] or [[]])[0]
        distances = (result["distances"] or [[]])[0]
        return [
            ChunkHit(chunk_id, str(m["postmortem_id"]), float(d), doc or "", dict(m))
            for chunk_id, m, doc, d in zip(ids, metadatas, documents, distances, strict=True)
        ]
