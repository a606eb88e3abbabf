"""The rulebook engine on paper156, overall and on the test half, against the issue's acceptance bars."""

from __future__ import annotations

import pytest

from agent.context import MemoryRecorder, TriageContext
from evals.dataset import load_dataset
from evals.metrics import score
from evals.replay import replay
from tests.conftest import ROOT

DATASET = ROOT / "evals" / "datasets" / "paper156.jsonl"


@pytest.mark.parametrize("split", ["all", "test"])
def test_rulebook_engine_meets_the_bar(rulebook, policy, split):
    cases = load_dataset(DATASET, split)
    results = replay(cases, lambda: TriageContext(rulebook=rulebook, policy=policy, recorder=MemoryRecorder()))
    metrics = score([r.expected for r in results], [r.predicted for r in results])
    assert metrics["category_accuracy"] >= 0.90
    assert metrics["category_kappa"] >= 0.85
    assert metrics["mitigation_accuracy"] >= 0.80
    assert metrics["m5_precision"] >= 0.95
    assert metrics["m5_recall"] >= 0.60


def test_rulebook_holds_up_on_incidents_written_by_someone_else(rulebook, policy):
    """external-a3.jsonl was written by another author from the same spec, in other voices; the rules
    were adjusted once after its first measurement (see docs/datasets.md), so this guards regressions."""
    cases = load_dataset(ROOT / "evals" / "datasets" / "external-a3.jsonl")
    results = replay(cases, lambda: TriageContext(rulebook=rulebook, policy=policy, recorder=MemoryRecorder()))
    metrics = score([r.expected for r in results], [r.predicted for r in results])
    assert metrics["category_accuracy"] >= 0.85
    assert metrics["mitigation_accuracy"] >= 0.85
    assert metrics["m5_precision"] >= 0.95
