"""Reciprocal rank fusion of chunk rankings into one ranking of postmortems (docs/postmortems.md)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from tools.lexical import ChunkHit

RRF_K = 60  # the usual reciprocal-rank-fusion constant: damps the head of each ranking


def rank_fusion(
    rankings: Mapping[str, Sequence[ChunkHit]], k: int, rrf_k: int = RRF_K
) -> list[tuple[ChunkHit, float, dict[str, int]]]:
    """Reciprocal rank fusion per postmortem: in each ranking a postmortem takes the rank of its best
    chunk, and scores 1 / (rrf_k + rank); scores add up across rankings. The snippet is the chunk with
    the best fused chunk-level score. The k best postmortems as (best chunk, score, rank per ranking)."""
    scores: dict[str, float] = defaultdict(float)
    ranks: dict[str, dict[str, int]] = defaultdict(dict)
    chunk_scores: dict[str, float] = defaultdict(float)
    chunk_hits: dict[str, ChunkHit] = {}
    for name, hits in rankings.items():
        rank = 0
        for position, hit in enumerate(hits, start=1):
            chunk_scores[hit.chunk_id] += 1.0 / (rrf_k + position)
            seen = chunk_hits.get(hit.chunk_id)
            if seen is None or (not complete(seen) and complete(hit)):
                chunk_hits[hit.chunk_id] = hit
            if name not in ranks[hit.postmortem_id]:
                rank += 1
                ranks[hit.postmortem_id][name] = rank
                scores[hit.postmortem_id] += 1.0 / (rrf_k + rank)
    best: dict[str, ChunkHit] = {}
    for chunk_id, hit in chunk_hits.items():
        current = best.get(hit.postmortem_id)
        if current is None or chunk_scores[chunk_id] > chunk_scores[current.chunk_id]:
            best[hit.postmortem_id] = hit
    order = sorted(scores, key=lambda pid: (-scores[pid], min(ranks[pid].values()), pid))[:k]
    return [(best[pid], scores[pid], dict(ranks[pid])) for pid in order]


def fuse(rankings: Mapping[str, Sequence[ChunkHit]], k: int, rrf_k: int = RRF_K) -> list[dict[str, Any]]:
    """`rank_fusion` as result dicts (every hit must carry its chunk's text and metadata)."""
    return [as_result(hit, score, ranks) for hit, score, ranks in rank_fusion(rankings, k, rrf_k)]


def complete(hit: ChunkHit) -> bool:
    """Whether a hit carries its chunk's own text and metadata (a vector hit may carry only its
    postmortem's metadata from the catalog until the results are chosen)."""
    return "section" in hit.metadata


def as_result(hit: ChunkHit, score: float, ranks: dict[str, int]) -> dict[str, Any]:
    """One search result: the postmortem's metadata, the fused score and its best chunk as snippet."""
    m = hit.metadata
    return {
        "id": m["postmortem_id"],
        "incident_id": m.get("incident_id") or None,
        "title": m["title"],
        "date": m["date"],
        "category": m["category"],
        "subcategory": m["subcategory"],
        "mitigation": m["mitigation"],
        "ttm_hours": m["ttm_hours"],
        "services": list(m.get("services") or []),
        "score": round(score, 6),
        "section": m["section"],
        "snippet": hit.text,
        "ranks": dict(ranks),
    }
