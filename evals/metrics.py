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
