"""`mitigate eval cv`: leave one source out, through the real graph.

For each source, a judgement is trained on the other sources only (its temperature and thresholds from
their own leave-one-source-out predictions: nothing of the held-out source is seen), then the held-out
incidents are replayed through the triage graph with that judgement and scored exactly as `eval run`
scores a dataset. The headline is the worst source, not the average.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from agent.context import TriageContext
from evals.dataset import Case
from evals.metrics import bootstrap_intervals, calibration, clopper_pearson, score
from evals.replay import CaseResult, replay
from learn import train
from learn.model import CachedEmbedder, Progress
from learn.sources import LabelledCase

COVERAGE_THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _case(labelled: LabelledCase) -> Case:
    labels = {"category": labelled.category, "subcategory": labelled.subcategory, "mitigation": labelled.mitigation}
    return Case(incident=labelled.incident, labels=labels, timeline={}, raw={})


def coverage_curve(expected: list[dict[str, Any]], results: list[CaseResult]) -> list[dict[str, Any]]:
    """Accuracy of the answers that do not need a human, as the `needs_human` threshold moves."""
    rows = []
    pairs = [(e["category"], r) for e, r in zip(expected, results, strict=True) if e.get("category")]
    for threshold in COVERAGE_THRESHOLDS:
        covered = [(truth, r) for truth, r in pairs if r.confidence >= threshold]
        rows.append(
            {
                "threshold": threshold,
                "coverage": round(len(covered) / len(pairs), 4) if pairs else None,
                "accuracy": round(sum(t == r.predicted["category"] for t, r in covered) / len(covered), 4)
                if covered
                else None,
            }
        )
    return rows


def summarise(results: list[CaseResult]) -> dict[str, Any]:
    """The keys of `eval run --json`, plus `ece`, `m5_precision_low` and the coverage curve."""
    expected = [r.expected for r in results]
    predicted = [r.predicted for r in results]
    metrics = score(expected, predicted)
    metrics["ci95"] = bootstrap_intervals(expected, predicted, resamples=300)
    metrics["calibration"] = calibration(expected, predicted, [r.confidence for r in results], buckets=10)
    metrics["ece"] = metrics["calibration"]["ece"]
    decided = [(e.get("mitigation"), p.get("mitigation")) for e, p in zip(expected, predicted, strict=True)]
    k = sum(1 for truth, guess in decided if guess == "M5" and truth == "M5")
    n = sum(1 for truth, guess in decided if guess == "M5" and truth is not None)
    metrics["m5_precision_low"] = clopper_pearson(k, n)[0] if n else None
    metrics["needs_human_rate"] = sum(bool(p.get("needs_human")) for p in predicted) / len(predicted)
    metrics["coverage"] = coverage_curve(expected, results)
    latencies = sorted(r.latency_ms for r in results)
    metrics["latency_ms_p50"] = latencies[len(latencies) // 2]
    metrics["latency_ms_p95"] = latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))]
    metrics["llm_calls"] = sum(r.llm_calls for r in results)
    metrics["tokens"] = sum(r.tokens for r in results)
    metrics["fallbacks"] = sum(len(r.fallbacks) for r in results)
    return metrics


def cross_validate(
    cases: list[LabelledCase],
    template: TriageContext,
    embedder: Any,
    progress: Progress = lambda _: None,
    with_cases: bool = False,
) -> dict[str, Any]:
    cached = CachedEmbedder(embedder)
    progress(f"embedding {len(cases)} labelled cases")
    data = train.featurise(cases, template.rulebook, cached.embed)
    sources = sorted({c.source for c in cases})
    by_source: dict[str, list[CaseResult]] = {}
    thresholds: dict[str, dict[str, float]] = {}
    for n, source in enumerate(sources, start=1):
        held = [i for i, c in enumerate(cases) if c.source == source]
        rest = np.array([i for i, c in enumerate(cases) if c.source != source])
        progress(f"fold {n}/{len(sources)}: {source} held out ({len(held)} cases), training on {len(rest)}")
        judgement, _ = train.fit_judgement(data, rest, {"version": f"cv-without-{source}"})
        thresholds[source] = {
            "no_action": judgement.no_action_threshold,
            "needs_human_below": judgement.needs_human_below,
        }
        context = replace(template, judgement=judgement, embedder=cached, judgement_problem=None)
        by_source[source] = replay([_case(cases[i]) for i in held], partial(replace, context))
    report: dict[str, Any] = {"sources": {s: summarise(r) for s, r in by_source.items()}}
    report["pooled"] = summarise([r for results in by_source.values() for r in results])
    report["worst_source"] = min(report["sources"], key=lambda s: report["sources"][s]["category_accuracy"] or 0.0)
    report["thresholds"] = thresholds
    if with_cases:
        report["cases"] = [
            {"id": r.case_id, "source": s, "expected": r.expected, "predicted": r.predicted, "confidence": r.confidence}
            for s, results in by_source.items()
            for r in results
        ]
    return report
