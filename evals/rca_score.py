"""Scoring of the localisation matrix: AC@1, AC@3 and Avg@5 (the paper's set-based definitions) per
fault type, per tier and overall, each with a 95 % bootstrap interval over the cases, and what a
method ranked first when it was wrong."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from tools.rca.methods import Candidate, ac_at_case

BOOTSTRAP = 1000
Case = tuple[Sequence[Candidate], frozenset[str]]  # a method's ranking, the root causes


def per_case(ranking: Sequence[Candidate], truth: frozenset[str]) -> tuple[float, float, float]:
    ac = [ac_at_case(ranking, truth, k) for k in range(1, 6)]
    return ac[0], ac[2], sum(ac) / 5


def summary(cases: Sequence[Case], seed: int) -> dict[str, Any]:
    values = np.array([per_case(r, t) for r, t in cases], dtype=float).reshape(-1, 3)
    out: dict[str, Any] = {"n": len(cases)}
    if not len(cases):
        return out | {"AC@1": 0.0, "AC@3": 0.0, "Avg@5": 0.0, "blamed": {}, "ci": {}}
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(BOOTSTRAP, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5], axis=0)
    for i, name in enumerate(("AC@1", "AC@3", "Avg@5")):
        out[name] = round(float(values[:, i].mean()), 4)
    out["ci"] = {
        name: [round(float(low[i]), 4), round(float(high[i]), 4)] for i, name in enumerate(("AC@1", "AC@3", "Avg@5"))
    }
    out["blamed"] = blamed(cases)
    return out


def blamed(cases: Iterable[Case]) -> dict[str, int]:
    """What the method ranked first when that was not a root cause (the upstream bias shows here)."""
    wrong: dict[str, int] = {}
    for ranking, truth in cases:
        if ranking and ranking[0].pod not in truth:
            wrong[ranking[0].pod] = wrong.get(ranking[0].pod, 0) + 1
    return dict(sorted(wrong.items(), key=lambda kv: -kv[1]))


def tables(
    ranked: dict[str, list[Case]], labels: Sequence[tuple[frozenset[str], frozenset[str]]], order: dict[str, list[str]]
) -> dict[str, Any]:
    """`ranked[method]` holds one case per injection; `labels[i]` its (faults, tiers). A case counts in
    the row of each of its faults and tiers (two concurrent faults: in both) and once overall."""
    out: dict[str, Any] = {"methods": {}, "by_tier": {}, "overall": {}}
    for m_index, (method, cases) in enumerate(ranked.items()):
        for key, axis in (("methods", 0), ("by_tier", 1)):
            rows: dict[str, dict[str, Any]] = {}
            for row in order[key]:
                chosen = [case for case, label in zip(cases, labels, strict=True) if row in label[axis]]
                if chosen:
                    rows[row] = summary(chosen, seed=1000 * m_index + len(rows))
            out[key][method] = rows
        out["overall"][method] = summary(cases, seed=1000 * m_index + 999)
    return out
