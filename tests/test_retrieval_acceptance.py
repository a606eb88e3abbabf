"""The shipped corpus (data/postmortems) against paper156: offline ingestion through the CLI, the
retrieval eval's bars, and triage with precedents holding or improving the rulebook's eval."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.context import MemoryRecorder, TriageContext
from evals.dataset import load_dataset
from evals.metrics import score
from evals.replay import replay
from evals.retrieval import retrieval_eval
from tests.conftest import ROOT
from tools.postmortems import PostmortemIndex, PostmortemRetriever

CORPUS = ROOT / "data" / "postmortems"
DATASET = ROOT / "evals" / "datasets" / "paper156.jsonl"


def _mitigate(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env |= {"HF_HUB_OFFLINE": "1", "MITIGATE_STATE_DIR": str(state), "MITIGATE_DATABASE_URL": f"sqlite:///{state}/m.db"}
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> PostmortemIndex:
    """The corpus ingested once through the CLI, offline; the module's tests search it."""
    state = tmp_path_factory.mktemp("state")
    first = _mitigate(state, "postmortems", "ingest", str(CORPUS))
    assert first.returncode == 0, first.stderr
    files = len([p for p in CORPUS.rglob("*.md") if p.name != "README.md"])
    assert f"added {files}, updated 0, unchanged 0, failed 0" in first.stdout
    return PostmortemIndex(state)


def test_a_second_ingestion_of_the_corpus_adds_nothing(index):
    again = _mitigate(index.directory, "postmortems", "ingest", str(CORPUS))
    assert again.returncode == 0, again.stderr
    files = index.count()
    assert f"added 0, updated 0, unchanged {files}, failed 0; 0 chunks written" in again.stdout


def test_retrieval_eval_meets_the_bars_and_hybrid_beats_each_part(index):
    result = retrieval_eval(index, load_dataset(DATASET))
    hybrid, vector, lexical = (result[m]["subcategory"] for m in ("hybrid", "vector", "lexical"))
    assert result["n"] == 156
    assert hybrid["hit@5"] >= 0.85
    assert hybrid["mrr"] >= 0.6
    for part in (vector, lexical):
        assert hybrid["hit@5"] > part["hit@5"]
        assert hybrid["mrr"] > part["mrr"]


def test_precedents_hold_or_improve_triage_on_the_test_half(index, rulebook, policy):
    cases = load_dataset(DATASET, "test")

    def run(retriever: PostmortemRetriever | None) -> dict:
        results = replay(
            cases,
            lambda: TriageContext(rulebook=rulebook, policy=policy, recorder=MemoryRecorder(), retriever=retriever),
        )
        return score([r.expected for r in results], [r.predicted for r in results])

    without, with_precedents = run(None), run(PostmortemRetriever(index))
    assert with_precedents["category_accuracy"] >= without["category_accuracy"]
    assert with_precedents["mitigation_accuracy"] >= without["mitigation_accuracy"]
    assert with_precedents["m5_precision"] >= 0.95


def test_triage_cites_precedents_dated_before_the_incident_with_what_fixed_them(index, rulebook, policy):
    from agent.graph import build_graph

    case = next(c for c in load_dataset(DATASET) if c.id == "P156-100")
    state = build_graph().invoke(
        {"run_id": "cite", "incident": case.incident.model_dump(mode="json")},
        context=TriageContext(
            rulebook=rulebook, policy=policy, recorder=MemoryRecorder(), retriever=PostmortemRetriever(index)
        ),
    )
    report = state["report"]
    assert report["precedents"], "a triage with an index cites precedents"
    started = case.incident.started_at
    assert started is not None
    for precedent in report["precedents"]:
        assert precedent["mitigation"] in {"M1", "M2", "M3", "M4", "M5", "M6"}
        assert datetime.fromisoformat(precedent["date"]).replace(tzinfo=UTC) < started
        assert precedent["incident_id"] != case.id
    assert any(e["source"] == "precedent" for e in report["evidence"])
    assert "Similar past incidents" in report["plan"]["rationale"] or not any(
        p["subcategory"] == report["subcategory"] for p in report["precedents"]
    )
