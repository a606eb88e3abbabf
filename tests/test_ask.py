"""Questions about history: intent rules in several languages, answers from the incident store (SQLite
and PostgreSQL) and the postmortem index with citations, `mitigate ask --json`, and an LLM that only
writes the prose (citations stay the retrieval's) or settles question-or-incident."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from agent.intents import route, route_with_llm
from api.ask import Asker
from api.lookup import list_incidents
from api.settings import Settings
from api.wiring import make_llm, open_store
from store.incident_search import IncidentSearch
from tests.conftest import ROOT
from tests.db_urls import postgres_schema_url
from tests.fake_openai import FakeOpenAI
from tests.history import seed
from tools.postmortems import PostmortemIndex, PostmortemRetriever
from tools.read_tools.sources import RetrieverSearch

KV_QUESTION = "what did we do last time the KV cache filled up on mixtral?"


@pytest.mark.parametrize(
    ("text", "intent", "run_ref"),
    [
        ("", "empty", None),
        ("   <@U123>  ", "empty", None),
        ("help", "help", None),
        ("Hilfe", "help", None),
        ("approve", "approve", None),
        ("approve 3fa9c2e1", "approve", "3fa9c2e1"),
        ("genehmigen 3fa9c2e1", "approve", "3fa9c2e1"),
        ("承認 3fa9c2e1", "approve", "3fa9c2e1"),
        ("reject 3fa9c2e1 wrong target", "reject", "3fa9c2e1"),
        ("rechazar", "reject", None),
        ("status", "status", None),
        ("status 3fa9c2e1", "status", "3fa9c2e1"),
        (KV_QUESTION, "question", None),
        ("Was haben wir letztes Mal bei vollem KV-Cache auf mixtral gemacht", "question", None),
        ("¿Qué hicimos la última vez con el timeout de llama-70b?", "question", None),
        ("Qu'avons-nous fait la dernière fois que le cache KV était plein ?", "question", None),
        ("上次 mixtral 的 KV 缓存满了怎么办", "question", None),
        ("前回 mixtral の KV キャッシュが満杯になったとき何をしましたか", "question", None),
        ("Что мы сделали в прошлый раз, когда кэш KV был полон", "question", None),
        ("HTTP 408 on streaming completions of llama-70b, still failing", "new_incident", None),
        ("Zeitüberschreitung bei llama-70b seit 10 Minuten", "new_incident", None),
        ("XID 79 on node aks-gpu-7, pods restarted before the OOM", "new_incident", None),
        # An incident text that contains an approval word later is not an approval.
        ("pods fail after someone approved the rollout 3fa9c2e1", "new_incident", None),
        # A command names its run right after the verb, or is the verb alone; otherwise it is a report.
        ("status?", "status", None),
        ("/approve `3fa9c2e1`", "approve", "3fa9c2e1"),
        ("Status 500 from the gateway on llama-70b", "new_incident", None),
        ("Decline in throughput on llama-70b since 03:10", "new_incident", None),
        ("Approved rollout broke mixtral", "new_incident", None),
        ("deny list blocks requests to llama-70b", "new_incident", None),
    ],
)
def test_intent_rules(text, intent, run_ref):
    routed = route(text)
    assert (routed.intent, routed.run_ref) == (intent, run_ref)


def test_an_overlong_message_is_named_not_read():
    assert route("x" * 20_000).intent == "too_long"


def test_an_llm_settles_question_or_incident_and_its_failure_keeps_the_rules():
    settings = Settings(llm_base_url="http://127.0.0.1:1/v1", llm_model="m", llm_max_retries=0)
    with FakeOpenAI() as fake:
        settings = settings.model_copy(update={"llm_base_url": fake.base_url})
        fake.script.extend([("json", {"intent": "question"}), ("json", {"intent": "approve"}), ("status", 500)])
        llm = make_llm(settings)
        text = "mixtral KV cache full again, like in October"
        assert route(text).intent == "new_incident"
        settled = route_with_llm(text, llm)
        assert (settled.intent, settled.by) == ("question", "llm")
        assert "<question>" in fake.requests[0]["body"]["messages"][0]["content"]
        # An answer outside the schema (and then an error) keeps the rules' answer.
        assert (route_with_llm(text, llm).intent, route_with_llm(text, llm).by) == ("new_incident", "rules")
        # Approvals, status and help are never the LLM's call.
        assert route_with_llm("approve 3fa9c2e1", llm).intent == "approve" and len(fake.requests) == 3


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/ask.db"
    else:
        with postgres_schema_url() as url:
            yield url


@pytest.fixture
def store(db_url: str):
    opened = open_store(Settings(database_url=db_url))
    seed(opened.recorder)
    return opened


def test_a_question_is_answered_from_the_store_with_citations_and_creates_nothing(store):
    before = list_incidents(store.sessions)
    asker = Asker(IncidentSearch(store.sessions), public_url="https://mitigate.example.com/")
    answer = asker.question(KV_QUESTION)
    first = answer.citations[0]
    assert answer.intent == "question" and first["type"] == "incident" and first["id"] == "INC-KV-1"
    assert first["title"].startswith("KV cache full on mixtral") and first["fixed_by"].startswith("M2 scale_out")
    assert first["url"] == "https://mitigate.example.com/dashboard/incidents/INC-KV-1"
    assert "INC-KV-1" in answer.answer and "No postmortem index is configured" in answer.answer
    assert list_incidents(store.sessions) == before  # read-only


def test_a_question_in_another_language_finds_the_same_incident(store):
    asker = Asker(IncidentSearch(store.sessions))
    answer = asker.question("Was haben wir bei der Zeitüberschreitung von llama-70b gemacht")
    assert answer.citations[0]["id"] == "INC-408-1" and "apply_connection_liveness_template" in answer.answer


def test_a_question_naming_an_incident_cites_it_first(store):
    answer = Asker(IncidentSearch(store.sessions)).question("what happened with INC-XID-1?")
    assert answer.citations[0]["id"] == "INC-XID-1" and answer.citations[0]["category"] == "A1/bad_node"


def test_no_match_is_said_plainly(store):
    answer = Asker(IncidentSearch(store.sessions)).question("what about the quantum flux capacitor?")
    assert answer.citations == [] and "found no earlier incident" in answer.answer


@pytest.fixture(scope="module")
def postmortems(tmp_path_factory: pytest.TempPathFactory, embedder) -> RetrieverSearch:
    folder = tmp_path_factory.mktemp("pm")
    shutil.copytree(ROOT / "tests" / "data" / "postmortems", folder / "postmortems")
    index = PostmortemIndex(folder / "state", embedder=embedder)
    index.ingest(folder / "postmortems")
    return RetrieverSearch(PostmortemRetriever(index))


def test_postmortems_are_cited_with_id_title_and_what_fixed_them(tmp_path, postmortems):
    store = open_store(Settings(database_url=f"sqlite:///{tmp_path}/pm.db"))
    answer = Asker(IncidentSearch(store.sessions), postmortems).question("KV cache full, requests preempted")
    cited = [c for c in answer.citations if c["type"] == "postmortem"]
    assert cited and all(c["id"] and c["title"] and c["fixed_by"] for c in cited)
    assert cited[0]["category"].endswith("kv_cache")  # the KV cache postmortem ranks first
    assert f"postmortem {cited[0]['id']}" in answer.answer


def test_with_an_llm_the_prose_is_its_own_and_the_citations_stay_retrievals(store):
    with FakeOpenAI() as fake:
        settings = Settings(llm_base_url=fake.base_url, llm_model="m", llm_max_retries=0, llm_api_key=SecretStr("k"))
        fake.script.extend([("json", {"answer": "Last time [INC-KV-1] was fixed by scaling out."}), ("status", 500)])
        asker = Asker(IncidentSearch(store.sessions), llm=make_llm(settings))
        answer = asker.question(KV_QUESTION)
        assert answer.answer.startswith("Last time [INC-KV-1]") and answer.citations[0]["id"] == "INC-KV-1"
        prompt = fake.requests[0]["body"]["messages"][0]["content"]
        assert "INC-KV-1" in prompt.rsplit("<record>", 1)[1]
        fallback = asker.question(KV_QUESTION)  # the LLM fails: the template answers, citations the same
        assert "earlier incident(s) match" in fallback.answer and fallback.citations == answer.citations


def _ask(tmp_path: Path, *words: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MITIGATE_", "OPENAI_"))}
    env |= {
        "MITIGATE_DATABASE_URL": f"sqlite:///{tmp_path}/cli.db",
        "MITIGATE_STATE_DIR": str(tmp_path / "state"),
        "MITIGATE_PUBLIC_URL": "https://m.example",
    }
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "ask", *words, "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_mitigate_ask_json(tmp_path):
    seed(open_store(Settings(database_url=f"sqlite:///{tmp_path}/cli.db")).recorder)
    out = _ask(tmp_path, KV_QUESTION)
    assert set(out) == {"intent", "answer", "citations"} and out["intent"] == "question"
    assert out["citations"][0]["id"] == "INC-KV-1" and out["citations"][0]["title"]
    assert out["citations"][0]["url"] == "https://m.example/dashboard/incidents/INC-KV-1"
    bare = _ask(tmp_path, "approve")
    assert bare["intent"] == "approve" and bare["answer"].startswith("Which run?")
    assert _ask(tmp_path)["intent"] == "empty"
    long = _ask(tmp_path, "y" * 20_000)
    assert long["intent"] == "too_long" and len(long["answer"]) < 300
    incident = _ask(tmp_path, "HTTP 408 on llama-70b streaming, still failing")
    assert incident["intent"] == "new_incident" and "creates none" in incident["answer"]
    store = open_store(Settings(database_url=f"sqlite:///{tmp_path}/cli.db"))
    assert len(list_incidents(store.sessions)) == 3  # only the seeded ones: ask created nothing
