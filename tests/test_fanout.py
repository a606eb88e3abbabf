"""explore and retrieve run side by side in one superstep (agent/graph.py): both after investigate, both
before classify, each once, and the run's timeline in the real store stays whole when they record at
the same moment (store/recorder.py numbers the steps one at a time per run)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from agent.graph import build_graph
from agent.schemas import Incident
from store.db import make_engine, migrate, session_factory
from store.incident_search import IncidentSearch
from store.models import RunStepRow
from store.recorder import StoreRecorder
from tests.db_urls import postgres_schema_url
from tests.fake_openai import FakeOpenAI
from tests.fakes import FakeCluster
from tests.test_explore import INCIDENT, _explorer, _llm


def _store(tmp_path: Path) -> tuple[StoreRecorder, Any]:
    engine = make_engine(f"sqlite:///{tmp_path}/fanout.db")
    migrate(engine)
    sessions = session_factory(engine)
    return StoreRecorder(sessions), sessions


def _seqs(sessions: Any, run_id: str) -> dict[str, int]:
    with sessions() as session:
        rows = session.scalars(select(RunStepRow).where(RunStepRow.run_id == run_id))
        return {row.node: row.seq for row in rows}


def test_explore_and_retrieve_share_a_superstep_between_investigate_and_classify(context, tmp_path):
    recorder, sessions = _store(tmp_path)
    incident = Incident.model_validate(INCIDENT)
    recorder.save_incident(incident, source="test", payload={})
    recorder.start_run("f1", incident.id, "rulebook")
    with FakeOpenAI() as fake:
        fake.script.extend(
            [
                ("text", "nothing to look up"),  # explore: one turn, no tool calls
                ("json", {"category": "A3", "subcategory": "timeout", "confidence": 0.8, "rationale": "408s"}),
                ("json", {"mitigation": "M1", "rationale": "keep-alive"}),
            ]
        )
        context.recorder, context.propose_only = recorder, True
        context.llm, context.explorer = _llm(fake), _explorer(IncidentSearch(sessions), FakeCluster())
        tasks = [
            (event["step"], event["payload"]["name"])
            for event in build_graph().stream(
                {"run_id": "f1", "incident": INCIDENT}, context=context, stream_mode="debug"
            )
            if event["type"] == "task"
        ]

    step_of = {name: step for step, name in tasks}
    assert [name for _, name in tasks].count("classify") == 1
    assert step_of["explore"] == step_of["retrieve"]  # one superstep, one checkpoint
    assert step_of["intake"] < step_of["investigate"] < step_of["explore"] < step_of["classify"]
    seqs = _seqs(sessions, "f1")
    assert {"intake", "explore", "retrieve", "classify", "report"} <= set(seqs)  # investigate: no source, no step
    assert sorted(seqs.values()) == list(range(len(seqs)))  # no two steps share a place in the timeline
    assert seqs["intake"] < min(seqs["explore"], seqs["retrieve"]) < seqs["classify"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/fanout.db"
        return
    with postgres_schema_url() as url:
        yield url


def test_steps_recorded_at_once_get_distinct_places_in_the_timeline(store_url):
    engine = make_engine(store_url)
    migrate(engine)
    sessions = session_factory(engine)
    recorder = StoreRecorder(sessions)
    incident = Incident.model_validate(INCIDENT)
    recorder.save_incident(incident, source="test", payload={})
    recorder.start_run("f2", incident.id, "rulebook")
    nodes = [f"node{i}" for i in range(12)]
    start = threading.Barrier(len(nodes))

    def record(node: str) -> None:
        start.wait()  # all read the step count at the same moment, as parallel nodes of a superstep do
        recorder.record_step("f2", node, node, {})

    threads = [threading.Thread(target=record, args=(node,)) for node in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seqs = _seqs(sessions, "f2")
    engine.dispose()
    assert set(seqs) == set(nodes)
    assert sorted(seqs.values()) == list(range(len(nodes)))
