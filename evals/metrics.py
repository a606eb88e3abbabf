"""Scoring of predictions against labels. A null label means: not scored on that label."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

CATEGORIES = ("A1", "A2", "A3", "A4")
ACTIONS = ("M1", "M2", "M3", "M4", "M5", "M6")


def _pairs(expected: Sequence[dict[str, Any]], predicted: Sequence[dict[str, Any]], key: str) -> list[tuple[str, str]]:
    return [(str(e[key]), str(p.get(key))) for e, p in zip(expected, predicted, strict=True) if e.get(key) is not None]


def accuracy(pairs: list[tuple[str, str]]) -> float | None:
    return sum(a == b for a, b in pairs) / len(pairs) if pairs else None


def cohen_kappa(pairs: list[tuple[str, str]]) -> float | None:
    """Cohen's κ. Hand-written because the bootstraps call it thousands of times (scikit-learn's is
    ~100x slower per call); tests/test_eval_metrics.py checks it against scikit-learn's."""
    if not pairs:
        return None
    n = len(pairs)
    observed = sum(a == b for a, b in pairs) / n
    truth, guess = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    chance = sum(truth[label] * guess[label] for label in set(truth) | set(guess)) / (n * n)
    return 1.0 if chance == 1 else (observed - chance) / (1 - chance)


def f1_for(pairs: list[tuple[str, str]], label: str) -> tuple[float | None, float | None, float | None]:
    """Precision, recall and F1 of one label; None where undefined (nothing predicted or present)."""
    tp = sum(a == label and b == label for a, b in pairs)
    predicted = sum(b == label for _, b in pairs)
    present = sum(a == label for a, _ in pairs)
    precision = tp / predicted if predicted else None
    recall = tp / present if present else None
    if precision is None or recall is None:
        return precision, recall, None
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return precision, recall, f1


def macro_f1(pairs: list[tuple[str, str]], labels: Sequence[str]) -> float | None:
    """Macro F1 over the labels present in the truth (an undefined F1 counts 0); checked against
    scikit-learn's `f1_score(average="macro", zero_division=0)` in tests, fast enough to bootstrap."""
    scores = []
    for label in labels:
        if not any(a == label for a, _ in pairs):
            continue
        _, _, f1 = f1_for(pairs, label)
        scores.append(f1 or 0.0)
    return sum(scores) / len(scores) if scores else None


def confusion(pairs: list[tuple[str, str]]) -> dict[str, dict[str, int]]:
    matrix: dict[str, dict[str, int]] = {}
    for truth, guess in pairs:
        matrix.setdefault(truth, {}).setdefault(guess, 0)
        matrix[truth][guess] += 1
    return matrix


def score(expected: Sequence[dict[str, Any]], predicted: Sequence[dict[str, Any]]) -> dict[str, Any]:
    category = _pairs(expected, predicted, "category")
    subcategory = _pairs(expected, predicted, "subcategory")
    mitigation = _pairs(expected, predicted, "mitigation")
    m5_precision, m5_recall, m5_f1 = f1_for(mitigation, "M5")
    return {
        "n": len(expected),
        "category_accuracy": accuracy(category),
        "category_kappa": cohen_kappa(category),
        "category_macro_f1": macro_f1(category, CATEGORIES),
        "subcategory_accuracy": accuracy(subcategory),
        "mitigation_accuracy": accuracy(mitigation),
        "m5_precision": m5_precision,
        "m5_recall": m5_recall,
        "m5_f1": m5_f1,
        "m5_predicted": sum(b == "M5" for _, b in mitigation),
        "abstain_rate": sum(p.get("category") == "unknown" for p in predicted) / len(predicted) if predicted else None,
        "confusion": {"category": confusion(category), "mitigation": confusion(mitigation)},
    }


INTERVAL_METRICS = (
    "category_accuracy",
    "category_kappa",
    "category_macro_f1",
    "subcategory_accuracy",
    "mitigation_accuracy",
    "m5_precision",
    "m5_recall",
    "abstain_rate",
)


def bootstrap_intervals(
    expected: Sequence[dict[str, Any]], predicted: Sequence[dict[str, Any]], resamples: int = 1000, seed: int = 156
) -> dict[str, list[float] | None]:
    """95 % percentile intervals of the headline metrics, resampling cases with replacement."""
    import random

    rng = random.Random(seed)
    n = len(expected)
    samples: dict[str, list[float]] = {m: [] for m in INTERVAL_METRICS}
    for _ in range(resamples):
        picks = [rng.randrange(n) for _ in range(n)]
        scored = score([expected[i] for i in picks], [predicted[i] for i in picks])
        for metric in INTERVAL_METRICS:
            if scored[metric] is not None:
                samples[metric].append(scored[metric])
    out: dict[str, list[float] | None] = {}
    for metric, values in samples.items():
        values.sort()
        out[metric] = (
            [values[int(0.025 * len(values))], values[int(0.975 * len(values)) - 1]]
            if len(values) >= resamples // 2
            else None
        )
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0-1) by the nearest-rank method of the eval's latency figures."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def latency_intervals(
    latencies: Sequence[float], resamples: int = 1000, seed: int = 156
) -> dict[str, list[float] | None]:
    """95 % percentile-bootstrap intervals of the latency p50 and p95 (cases resampled)."""
    import random

    if len(latencies) < 2:
        return {"latency_ms_p50": None, "latency_ms_p95": None}
    rng = random.Random(seed)
    draws: dict[str, list[float]] = {"latency_ms_p50": [], "latency_ms_p95": []}
    for _ in range(resamples):
        sample = [latencies[rng.randrange(len(latencies))] for _ in latencies]
        draws["latency_ms_p50"].append(percentile(sample, 0.5))
        draws["latency_ms_p95"].append(percentile(sample, 0.95))
    return {key: [sorted(v)[int(0.025 * resamples)], sorted(v)[int(0.975 * resamples) - 1]] for key, v in draws.items()}


def calibration(
    expected: Sequence[dict[str, Any]],
    predicted: Sequence[dict[str, Any]],
    confidences: Sequence[float],
    buckets: int = 5,
) -> dict[str, Any]:
    """Category accuracy per confidence bucket and the expected calibration error (ECE)."""
    rows: list[dict[str, Any]] = []
    total = sum(1 for e in expected if e.get("category") is not None)
    ece = 0.0
    for b in range(buckets):
        low, high = b / buckets, (b + 1) / buckets
        members = [
            (e, p, c)
            for e, p, c in zip(expected, predicted, confidences, strict=True)
            if e.get("category") is not None and (low <= c < high or (b == buckets - 1 and c == 1.0))
        ]
        if not members:
            rows.append({"bucket": [low, high], "n": 0, "accuracy": None, "mean_confidence": None})
            continue
        accuracy = sum(p.get("category") == e["category"] for e, p, _ in members) / len(members)
        mean_confidence = sum(c for _, _, c in members) / len(members)
        ece += len(members) / total * abs(accuracy - mean_confidence)
        rows.append(
            {"bucket": [low, high], "n": len(members), "accuracy": accuracy, "mean_confidence": mean_confidence}
        )
    return {"buckets": rows, "ece": ece if total else None}


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a proportion (scipy): conservative, never narrower than
    the data allow. With 27 of 27 the lower bound is 0.872, not 1.0."""
    if trials == 0:
        return 0.0, 1.0
    from scipy.stats import binomtest

    interval = binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="exact")
    return float(interval.low), float(interval.high)
