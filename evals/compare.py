"""Comparing two eval runs on the same cases: metric deltas with bootstrap intervals, McNemar's exact
test on paired correctness, the cases that flipped, and a gate for CI."""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evals.metrics import score

GATED = ("category_accuracy", "m5_precision")
DELTA_METRICS = (
    "category_accuracy",
    "subcategory_accuracy",
    "mitigation_accuracy",
    "m5_precision",
    "m5_recall",
    "abstain_rate",
)


@dataclass
class Case:
    id: str
    expected: dict[str, Any]
    predicted: dict[str, Any]


def load_cases(source: str, sessions: Any = None) -> list[Case]:
    """Cases from a file written by `mitigate eval run --json --cases` or from a stored eval run id."""
    path = Path(source)
    if path.is_file():
        data = json.loads(path.read_text())
        return [Case(c["id"], c["expected"], c["predicted"]) for c in data["cases"]]
    if sessions is None:
        raise LookupError(f"{source} is neither a file nor a stored eval run")
    from sqlalchemy import select

    from store.models import EvalCaseRow

    with sessions() as session:
        rows = session.scalars(select(EvalCaseRow).where(EvalCaseRow.eval_run_id == source)).all()
        if not rows:
            raise LookupError(f"no eval run {source} in the database")
        return [Case(r.case_id, r.expected, r.predicted) for r in rows]


def mcnemar(a_right: list[bool], b_right: list[bool]) -> tuple[int, int, float]:
    """Exact two-sided McNemar test: (only A right, only B right, p-value)."""
    only_a = sum(a and not b for a, b in zip(a_right, b_right, strict=True))
    only_b = sum(b and not a for a, b in zip(a_right, b_right, strict=True))
    n = only_a + only_b
    if n == 0:
        return 0, 0, 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2**n
    return only_a, only_b, min(1.0, 2 * tail)


def bootstrap_delta(
    a: list[Case], b: list[Case], metric: str, resamples: int = 1000, seed: int = 156
) -> tuple[float | None, float | None, float | None]:
    """Delta (b - a) of a metric and its 95 % percentile interval over cases resampled in pairs."""

    def value(cases_a: list[Case], cases_b: list[Case]) -> float | None:
        ma = score([c.expected for c in cases_a], [c.predicted for c in cases_a])[metric]
        mb = score([c.expected for c in cases_b], [c.predicted for c in cases_b])[metric]
        return None if ma is None or mb is None else mb - ma

    point = value(a, b)
    rng = random.Random(seed)
    deltas = []
    for _ in range(resamples):
        picks = [rng.randrange(len(a)) for _ in range(len(a))]
        delta = value([a[i] for i in picks], [b[i] for i in picks])
        if delta is not None:
            deltas.append(delta)
    if point is None or len(deltas) < resamples // 2:
        return point, None, None
    deltas.sort()
    return point, deltas[int(0.025 * len(deltas))], deltas[int(0.975 * len(deltas)) - 1]


def compare(a_cases: list[Case], b_cases: list[Case], resamples: int = 1000) -> dict[str, Any]:
    by_id = {c.id: c for c in b_cases}
    a = [c for c in a_cases if c.id in by_id]
    b = [by_id[c.id] for c in a]
    if not a:
        raise ValueError("the two runs share no cases")
    scored = [c for c in a if c.expected.get("category") is not None]
    a_right = [c.predicted.get("category") == c.expected["category"] for c in scored]
    b_right = [by_id[c.id].predicted.get("category") == c.expected["category"] for c in scored]
    only_a, only_b, p_value = mcnemar(a_right, b_right)
    deltas = {}
    for metric in DELTA_METRICS:
        point, low, high = bootstrap_delta(a, b, metric, resamples)
        deltas[metric] = {"delta": point, "ci95": [low, high]}
    flipped = [
        {"id": c.id, "expected": c.expected, "a": c.predicted, "b": by_id[c.id].predicted}
        for c in a
        if c.predicted.get("category") != by_id[c.id].predicted.get("category")
        or c.predicted.get("mitigation") != by_id[c.id].predicted.get("mitigation")
    ]
    return {
        "n": len(a),
        "deltas": deltas,
        "mcnemar_category": {"only_a_right": only_a, "only_b_right": only_b, "p_value": p_value},
        "flipped": flipped,
    }


def gate(comparison: dict[str, Any], alpha: float = 0.05) -> list[str]:
    """Reasons the candidate (b) is significantly worse than the baseline (a); empty means it passes."""
    reasons = []
    test = comparison["mcnemar_category"]
    if test["only_a_right"] > test["only_b_right"] and test["p_value"] < alpha:
        reasons.append(
            f"category accuracy worse: {test['only_a_right']} cases lost vs {test['only_b_right']} "
            f"gained, McNemar p = {test['p_value']:.4f}"
        )
    m5 = comparison["deltas"]["m5_precision"]
    if m5["ci95"][1] is not None and m5["ci95"][1] < 0:
        reasons.append(
            f"M5 precision worse: delta {m5['delta']:+.3f}, 95% CI {m5['ci95'][0]:+.3f}..{m5['ci95'][1]:+.3f}"
        )
    return reasons
