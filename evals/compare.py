"""Comparing two eval runs on the same cases: metric deltas with bootstrap intervals, McNemar's exact
test on paired correctness, the cases that flipped, and a gate for CI."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evals.metrics import clopper_pearson, score

M5_PRECISION_FLOOR = 0.85  # the exact 95 % lower bound of a candidate's M5 precision must reach this
MOSTLY_FALLBACKS = 0.5  # a candidate LLM whose answers fell back more often than this is not that LLM
# Figures of a whole run shown beside the deltas (from `eval run --json` or the stored run).
RUN_FIGURES = ("fallback_rate", "latency_ms_p50", "latency_ms_p95", "tokens", "cost", "llm_calls")
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
    return load_run(source, sessions)[0]


def load_run(source: str, sessions: Any = None) -> tuple[list[Case], dict[str, Any]]:
    """A run's cases and its whole-run figures (fallback rate, latency, tokens, cost, config)."""
    path = Path(source)
    if path.is_file():
        data = json.loads(path.read_text())
        figures = {k: data.get(k) for k in (*RUN_FIGURES, "config")}
        return [Case(c["id"], c["expected"], c["predicted"]) for c in data["cases"]], figures
    if sessions is None:
        raise LookupError(f"{source} is neither a file nor a stored eval run")
    from sqlalchemy import select

    from store.models import EvalCaseRow, EvalRunRow

    with sessions() as session:
        rows = session.scalars(select(EvalCaseRow).where(EvalCaseRow.eval_run_id == source)).all()
        if not rows:
            raise LookupError(f"no eval run {source} in the database")
        run = session.get(EvalRunRow, source)
        metrics = (run.metrics or {}) if run is not None else {}
        figures = {k: metrics.get(k) for k in RUN_FIGURES} | {"config": run.config if run is not None else None}
        return [Case(r.case_id, r.expected, r.predicted) for r in rows], figures


def mcnemar(a_right: list[bool], b_right: list[bool]) -> tuple[int, int, float]:
    """Exact two-sided McNemar test: (only A right, only B right, p-value) — the exact binomial test of
    the discordant pairs against one half (scipy)."""
    from scipy.stats import binomtest

    only_a = sum(a and not b for a, b in zip(a_right, b_right, strict=True))
    only_b = sum(b and not a for a, b in zip(a_right, b_right, strict=True))
    if only_a + only_b == 0:
        return 0, 0, 1.0
    return only_a, only_b, float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


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


def _m5_precision(cases: list[Case]) -> dict[str, Any]:
    decided = [c for c in cases if c.predicted.get("mitigation") == "M5" and c.expected.get("mitigation")]
    right = sum(c.expected["mitigation"] == "M5" for c in decided)
    low, high = clopper_pearson(right, len(decided))
    return {"right": right, "decided": len(decided), "low": low if decided else None, "high": high}


def _paired(a: list[Case], b: list[Case], key: str, only: str | None = None) -> dict[str, Any]:
    """McNemar on paired correctness of one label (`only`: just the cases whose truth is that label)."""
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x.expected.get(key) is not None]
    if only is not None:
        pairs = [(x, y) for x, y in pairs if x.expected[key] == only]
    only_a, only_b, p_value = mcnemar(
        [x.predicted.get(key) == x.expected[key] for x, _ in pairs],
        [y.predicted.get(key) == y.expected[key] for _, y in pairs],
    )
    return {"only_a_right": only_a, "only_b_right": only_b, "p_value": p_value}


def compare(
    a_cases: list[Case],
    b_cases: list[Case],
    resamples: int = 1000,
    a_figures: dict[str, Any] | None = None,
    b_figures: dict[str, Any] | None = None,
) -> dict[str, Any]:
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
        "mcnemar_mitigation": _paired(a, b, "mitigation"),
        "mcnemar_m5_recall": _paired(a, b, "mitigation", only="M5"),
        "m5_precision_exact": {"a": _m5_precision(a), "b": _m5_precision(b)},
        "m5_present": sum(c.expected.get("mitigation") == "M5" for c in a),
        "runs": {"a": a_figures or {}, "b": b_figures or {}},
        "flipped": flipped,
    }


def gate(comparison: dict[str, Any], alpha: float = 0.05) -> list[str]:
    """Reasons the candidate (b) must not replace the baseline (a); empty means it passes.

    It fails on a significant loss (McNemar, p < alpha) in category accuracy, mitigation accuracy or M5
    recall; when the exact 95 % lower bound of its M5 precision is under the floor while the baseline's
    is not (or while it made a wrong "no action" at all) — so a candidate that never decides "no action"
    where the baseline does, or cannot show it is right where the baseline can, does not pass; and when
    its answers are mostly LLM fallbacks (it would not be the model it claims to be)."""
    reasons = []
    for key, label in (
        ("mcnemar_category", "category accuracy"),
        ("mcnemar_mitigation", "mitigation accuracy"),
        ("mcnemar_m5_recall", "M5 recall"),
    ):
        test = comparison[key]
        if test["only_a_right"] > test["only_b_right"] and test["p_value"] < alpha:
            reasons.append(
                f"{label} worse: {test['only_a_right']} cases lost vs {test['only_b_right']} "
                f"gained, McNemar p = {test['p_value']:.4f}"
            )
    m5, base = comparison["m5_precision_exact"]["b"], comparison["m5_precision_exact"]["a"]
    base_shows = base["decided"] > 0 and base["low"] >= M5_PRECISION_FLOOR
    if comparison["m5_present"] and m5["decided"] == 0 and base["decided"] > 0:
        reasons.append("never decides M5 (no action) although the cases hold some: M5 precision cannot be shown")
    elif m5["decided"] and m5["low"] < M5_PRECISION_FLOOR and (base_shows or m5["right"] < m5["decided"]):
        # Failed when the baseline could show the floor on these cases and the candidate cannot, or when
        # the candidate was wrong at all while unable to show it; too few cases for either: not a verdict.
        reasons.append(
            f"M5 precision {m5['right']}/{m5['decided']}: its exact 95% lower bound {m5['low']:.3f} is under "
            f"{M5_PRECISION_FLOOR:.2f}"
        )
    rate = (comparison["runs"].get("b") or {}).get("fallback_rate")
    if isinstance(rate, int | float) and rate > MOSTLY_FALLBACKS:
        reasons.append(f"{rate:.0%} of the candidate's cases fell back from the LLM: mostly not its own answers")
    return reasons
