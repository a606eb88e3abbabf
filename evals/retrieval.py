"""`mitigate eval retrieval`: does the history hold a precedent of the same kind, ranked high?

For each labeled incident, search as the graph would (its text, only postmortems dated before it
started, never its own) and find the rank of the first precedent with the same subcategory (and the
same category). Reports hit@1, hit@5 and MRR per search mode, so hybrid can be compared with its parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evals.dataset import Case
from tools.postmortems import PostmortemRetriever

MODES = ("hybrid", "vector", "lexical")


def _rank(results: list[dict[str, Any]], key: str, value: str | None) -> int | None:
    for position, result in enumerate(results, start=1):
        if value is not None and result.get(key) == value:
            return position
    return None


def retrieval_eval(index: Any, cases: Sequence[Case], k: int = 10) -> dict[str, Any]:
    out: dict[str, Any] = {"n": 0}
    scored = [c for c in cases if c.labels.get("subcategory")]
    out["n"] = len(scored)
    for mode in MODES:
        ranks: dict[str, list[int | None]] = {"subcategory": [], "category": []}
        for case in scored:
            incident = case.incident
            query = PostmortemRetriever.query(incident)  # exactly what the graph's retrieve node asks
            results = index.search(query, k, before=incident.started_at, exclude_ids={incident.id}, mode=mode)
            for label in ranks:
                ranks[label].append(_rank(results, label, case.labels.get(label)))
        out[mode] = {
            label: {
                "hit@1": sum(1 for r in values if r is not None and r <= 1) / len(values) if values else None,
                "hit@5": sum(1 for r in values if r is not None and r <= 5) / len(values) if values else None,
                "mrr": sum(1 / r for r in values if r is not None) / len(values) if values else None,
            }
            for label, values in ranks.items()
        }
    return out
