"""`mitigate eval run --engine llm` through the real `openai` client against a scripted local model:
the eval machinery records the LLM's calls, tokens and cost per case, and the gate tells a weak model
from the rulebook. The scripted model is deliberately simple (a few keywords), not a stand-in for a
real one: what is tested is the machinery, not an LLM's quality."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evals.dataset import load_dataset
from tests.conftest import ROOT
from tests.fake_openai import FakeOpenAI

DATASET = ROOT / "evals" / "datasets" / "paper156.jsonl"
KEY = "sk-eval-secret-123"


def toy_model(body: dict[str, Any]) -> tuple[str, Any]:
    """Answers classification with a keyword or two (quoting it as evidence) and always plans an
    escalation: a model that agrees on easy categories and never lets anything be "no action"."""
    prompt = body["messages"][0]["content"]
    incident = prompt.rsplit("<incident>", 1)[-1]
    if body["response_format"]["json_schema"]["name"] == "plan":
        return "json", {"mitigation": "M1", "rationale": "escalate", "no_action_evidence": []}
    if "408" in incident or "timed out" in incident.lower():
        label = ("A3", "timeout")
    elif "429" in incident:
        label = ("A3", "resource_exhaustion")
    else:
        label = ("unknown", "unknown")
    evidence = [] if label[0] == "unknown" else ["a status code"]
    answer = {
        "category": label[0],
        "subcategory": label[1],
        "confidence": 0.7,
        "rationale": "toy",
        "evidence": evidence,
    }
    return "json", answer


def babbling_model(body: dict[str, Any]) -> tuple[str, Any]:
    return "raw", "Sure! Here is my analysis of the incident..."


@pytest.fixture
def model() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(responder=toy_model) as server:
        yield server


def _eval(tmp: Path, *args: str, **env: str) -> dict[str, Any]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MITIGATE_", "OPENAI_"))}
    clean |= {"MITIGATE_DATABASE_URL": f"sqlite:///{tmp}/e.db", "MITIGATE_STATE_DIR": str(tmp / "state"), **env}
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "eval", "run", "--dataset", str(DATASET), "--split", "test", "--json", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert KEY not in done.stdout + done.stderr  # the key is never printed
    return json.loads(done.stdout)


def test_an_llm_eval_records_model_calls_tokens_and_cost(tmp_path, model):
    out = _eval(
        tmp_path,
        *("--engine", "llm", "--base-url", model.base_url, "--model", "toy-1", "--concurrency", "4", "--cases"),
        MITIGATE_LLM_API_KEY=KEY,
        MITIGATE_LLM_COST_PER_1K_TOKENS="0.5",
    )
    assert out["config"]["engine"] == "llm" and out["config"]["model"] == "toy-1"
    assert out["config"]["prompt_hash"] and out["config"]["rulebook_hash"]
    calls = len(model.requests)
    assert out["llm_calls"] == calls and calls >= out["n"] == 78  # every case asked the model
    assert out["tokens"] == 120 * calls  # the fake reports 100 + 20 tokens per call
    assert out["cost"] == pytest.approx(out["tokens"] / 1000 * 0.5)
    assert all(r["auth"] == f"Bearer {KEY}" for r in model.requests)
    assert all(r["body"]["model"] == "toy-1" for r in model.requests)
    first = model.requests[0]["body"]["messages"][0]["content"]
    assert "resource_exhaustion" in first  # the rulebook is in the prompt
    by_id = {c["id"]: c for c in out["cases"]}
    assert by_id["P156-002"]["predicted"]["category"] == "A3"  # "429" in its text: the toy's answer was used

    from api.settings import Settings
    from api.wiring import open_store
    from store.evals import EvalStore

    evals = EvalStore(open_store(Settings(database_url=f"sqlite:///{tmp_path}/e.db")).sessions)
    stored = evals.cases(out["eval_run_id"])
    assert len(stored) == 78 and sum(c["llm_calls"] for c in stored) == calls
    assert sum(c["tokens"] for c in stored) == out["tokens"]


def _gate(tmp: Path, baseline: dict[str, Any], candidate: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    (tmp / "a.json").write_text(json.dumps(baseline))
    (tmp / "b.json").write_text(json.dumps(candidate))
    return subprocess.run(
        [
            *(sys.executable, "-m", "api.cli", "eval", "gate", "--resamples", "300"),
            *("--baseline", str(tmp / "a.json"), "--candidate", str(tmp / "b.json")),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_gate_refuses_a_weak_model_in_place_of_the_rulebook(tmp_path, model):
    """The toy never lets anything be "no action": where it agrees with the category its plan (an
    escalation) is taken, so M5 recall and mitigation accuracy drop, and the gate says so."""
    rulebook = _eval(tmp_path, "--engine", "rulebook", "--cases", "--no-store")
    llm = _eval(
        tmp_path,
        *("--engine", "llm", "--base-url", model.base_url, "--model", "toy-1", "--cases", "--no-store"),
        MITIGATE_LLM_API_KEY=KEY,
    )
    gate = _gate(tmp_path, rulebook, llm)
    assert gate.returncode == 1 and ("M5 recall worse" in gate.stdout or "mitigation accuracy worse" in gate.stdout)
    assert _gate(tmp_path, rulebook, rulebook).returncode == 0  # the baseline passes against itself
    same = subprocess.run(
        [sys.executable, "-m", "api.cli", "eval", "compare", str(tmp_path / "a.json"), str(tmp_path / "a.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert same.returncode == 0 and "p = 1" in same.stdout.replace("p=", "p = ")
    assert "fallback_rate" in same.stdout and "latency_ms_p95" in same.stdout


def test_the_gate_refuses_a_candidate_whose_answers_are_mostly_fallbacks(tmp_path):
    """A model that never answers in the schema leaves every case to the rulebook: its scores are the
    rulebook's, so only its fallback rate tells the gate it is not the model it claims to be."""
    rulebook = _eval(tmp_path, "--engine", "rulebook", "--cases", "--no-store", "--limit", "20")
    with FakeOpenAI(responder=babbling_model) as babbler:
        llm = _eval(
            tmp_path,
            *("--engine", "llm", "--base-url", babbler.base_url, "--cases", "--no-store", "--limit", "20"),
        )
    assert llm["fallback_rate"] == 1.0 and llm["engines"] == {"model": 20}
    assert all(c["predicted"]["fallbacks"][0]["kind"] == "invalid_output" for c in llm["cases"])
    gate = _gate(tmp_path, rulebook, llm)
    assert gate.returncode == 1 and "fell back" in gate.stdout


def test_limit_replays_only_the_first_cases_and_says_so(tmp_path):
    out = _eval(tmp_path, "--engine", "rulebook", "--limit", "5", "--cases", "--no-store")
    first = [c.id for c in load_dataset(DATASET, "test")[:5]]
    assert out["n"] == 5 and [c["id"] for c in out["cases"]] == first
    assert out["config"]["split"] == "test[:5]"
    refused = subprocess.run(
        [sys.executable, "-m", "api.cli", "eval", "run", "--dataset", str(DATASET), "--limit", "0", "--no-store"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and "--limit" in refused.stderr


def test_a_resumed_llm_eval_counts_the_fallbacks_of_the_cases_it_did_not_replay(tmp_path):
    """Each case stores which engine answered and why the LLM fell back, so a run resumed after a crash
    reports the same fallbacks as one that never stopped."""
    from sqlalchemy import delete, select

    from api.settings import Settings
    from api.wiring import open_store
    from store.models import EvalCaseRow, EvalRunRow

    with FakeOpenAI(responder=babbling_model) as babbler:
        args = ("--engine", "llm", "--base-url", babbler.base_url, "--limit", "12")
        full = _eval(tmp_path, *args)
        sessions = open_store(Settings(database_url=f"sqlite:///{tmp_path}/e.db")).sessions
        with sessions.begin() as session:  # as if the process had died after 5 cases
            kept = session.scalars(
                select(EvalCaseRow.case_id).where(EvalCaseRow.eval_run_id == full["eval_run_id"]).limit(5)
            ).all()
            session.execute(
                delete(EvalCaseRow).where(
                    EvalCaseRow.eval_run_id == full["eval_run_id"], EvalCaseRow.case_id.not_in(kept)
                )
            )
            session.get(EvalRunRow, full["eval_run_id"]).status = "running"
        resumed = _eval(tmp_path, *args, "--resume", full["eval_run_id"])
    assert full["fallbacks"] == 12 and full["fallback_rate"] == 1.0
    assert (resumed["fallbacks"], resumed["fallback_rate"]) == (full["fallbacks"], full["fallback_rate"])
    assert resumed["engines"] == full["engines"] == {"model": 12}
