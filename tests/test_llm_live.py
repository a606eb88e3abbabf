"""Opt-in contract test against a real OpenAI-compatible endpoint (skipped unless configured).

MITIGATE_LIVE_LLM_BASE_URL=http://127.0.0.1:8000/v1 [MITIGATE_LIVE_LLM_MODEL=...] [MITIGATE_LIVE_LLM_API_KEY=...]
e.g. a local llama.cpp server with a small model (see the environment notes). It checks the contract,
not the answer: a small model's content is unreliable, so a valid answer or a recorded fallback both pass.
"""

from __future__ import annotations

import json
import os

import pytest
from pydantic import SecretStr

from agent.context import MemoryRecorder, TriageContext
from agent.graph import build_graph
from agent.rulebook import load_rulebook
from api.settings import Settings
from api.wiring import make_llm
from tests.conftest import ROOT
from tools.guard import load_policy

BASE_URL = os.environ.get("MITIGATE_LIVE_LLM_BASE_URL")
pytestmark = [
    pytest.mark.live_llm,
    pytest.mark.skipif(not BASE_URL, reason="set MITIGATE_LIVE_LLM_BASE_URL to run live LLM tests"),
]


def test_live_endpoint_answers_within_the_contract():
    settings = Settings(
        llm_base_url=BASE_URL,
        llm_model=os.environ.get("MITIGATE_LIVE_LLM_MODEL", "default"),
        llm_api_key=SecretStr(os.environ.get("MITIGATE_LIVE_LLM_API_KEY", "")),
        llm_timeout_s=120,
    )
    context = TriageContext(
        rulebook=load_rulebook(), policy=load_policy(), recorder=MemoryRecorder(), llm=make_llm(settings)
    )
    incident = json.loads((ROOT / "examples" / "timeout-408-streaming.json").read_text())
    report = build_graph().invoke({"run_id": "live", "incident": incident}, context=context)["report"]
    assert sum(u["calls"] for u in report["llm_usage"]) >= 1
    if report["engine"] == "llm":
        assert report["category"] in ("A1", "A2", "A3", "A4", "unknown")
    else:
        assert report["fallbacks"] and report["fallbacks"][0]["stage"] == "classify"


# Four classify calls of up to 800 tokens each (a 120 s deadline) on a CPU-only model: on a loaded machine
# the suite's 300 s default cut the run off mid-eval; its own subprocess deadline is the bound.
@pytest.mark.timeout(1800)
def test_live_endpoint_runs_a_small_eval_within_the_contract(tmp_path):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MITIGATE_", "OPENAI_"))}
    env |= {
        "MITIGATE_DATABASE_URL": f"sqlite:///{tmp_path}/live.db",
        "MITIGATE_STATE_DIR": str(tmp_path / "state"),
        "MITIGATE_LLM_API_KEY": os.environ.get("MITIGATE_LIVE_LLM_API_KEY", ""),
        "MITIGATE_LLM_TIMEOUT_S": "120",
    }
    dataset = str(ROOT / "evals" / "datasets" / "paper156.jsonl")
    model = os.environ.get("MITIGATE_LIVE_LLM_MODEL", "default")
    command = [sys.executable, "-m", "api.cli", "eval", "run", "--dataset", dataset, "--split", "test", "--limit", "4"]
    done = subprocess.run(
        [*command, "--engine", "llm", "--base-url", str(BASE_URL), "--model", model, "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["n"] == 4 and out["config"]["engine"] == "llm"
    assert out["llm_calls"] >= 4  # every case asked the model at least once
    assert out["category_accuracy"] is not None  # valid answers or recorded fallbacks, never a crash


def test_live_endpoint_runs_the_tool_loop_within_the_contract(tmp_path):
    """The tool loop against a real endpoint (docs/tool-loop.md: llama.cpp with
    `--chat_format chatml-function-calling`): whatever the model asks, the loop ends with a stated
    reason inside its budget, every call is recorded with a verdict, and nothing is written."""
    from agent.explore import ExploreBudget, Explorer
    from agent.schemas import Incident
    from store.db import make_engine, migrate, session_factory
    from store.incident_search import IncidentSearch
    from store.recorder import StoreRecorder
    from tests.fakes import FakeCluster
    from tests.history import seed
    from tools.read_tools.catalog import READ_TOOLS
    from tools.read_tools.registry import ReadSources
    from tools.read_tools.sources import ReadOnlyCluster

    engine = make_engine(f"sqlite:///{tmp_path}/live.db")
    migrate(engine)
    sessions = session_factory(engine)
    seed(StoreRecorder(sessions))
    cluster = FakeCluster()
    sources = ReadSources(
        load_policy().allowed_namespaces, cluster=ReadOnlyCluster(cluster), incidents=IncidentSearch(sessions)
    )
    budget = ExploreBudget(max_steps=4, max_seconds=300)
    settings = Settings(
        llm_base_url=BASE_URL,
        llm_model=os.environ.get("MITIGATE_LIVE_LLM_MODEL", "default"),
        llm_api_key=SecretStr(os.environ.get("MITIGATE_LIVE_LLM_API_KEY", "")),
        llm_timeout_s=120,
    )
    incident = Incident.model_validate(json.loads((ROOT / "examples" / "timeout-408-streaming.json").read_text()))
    exploration, usage = Explorer(READ_TOOLS, sources, budget).run(make_llm(settings), incident, {})
    assert usage["calls"] >= 1 and 1 <= exploration["steps"] <= 4
    assert exploration["stop_reason"] in (
        "done",
        "truncated",
        "budget: steps",
        "budget: tokens",
        "budget: seconds",
    ) or (exploration["stop_reason"].startswith("llm failure: "))
    assert all(c["ok"] or c["error"] for c in exploration["calls"])
    assert cluster.executed == [] and cluster.dry_runs == []
