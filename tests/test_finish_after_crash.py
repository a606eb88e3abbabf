"""A process that dies after the graph's last checkpoint but before the run's outcome is recorded: the run
must not stay `running` for ever. Found by bench/storm.py --kill-one (one run of 500 stayed `running`
although its job was handed back and executed on the other replica)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.context import TriageContext
from agent.rulebook import load_rulebook
from agent.schemas import Incident
from api.runs import create_run, execute_run
from api.settings import Settings
from api.wiring import open_checkpointer, open_store
from tests.fakes import FakeCluster, FakeSla
from tools.guard import load_policy


class _DiesBeforeFinishing:
    """The store's recorder, except that recording the outcome fails once, as a kill -9 right there would."""

    def __init__(self, recorder: Any) -> None:
        self._recorder = recorder

    def __getattr__(self, name: str) -> Any:
        return getattr(self._recorder, name)

    def finish_run(self, *args: Any, **kwargs: Any) -> None:
        raise SystemExit("killed between the last checkpoint and finish_run")


def test_a_run_whose_graph_ended_but_whose_outcome_was_not_recorded_is_recorded_on_the_next_attempt(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/finish.db"
    store = open_store(Settings(database_url=url))
    incident = Incident(id="INC-F", title="Pods crash-looping after the last rollout of llama-70b")
    run_id = create_run(incident, source="test", payload={}, recorder=store.recorder, engine="rulebook")
    assert run_id is not None
    with open_checkpointer(url) as checkpointer:
        dying = _DiesBeforeFinishing(store.recorder)
        context = TriageContext(rulebook=load_rulebook(), policy=load_policy(), recorder=dying)
        with pytest.raises(SystemExit):
            execute_run(run_id, recorder=dying, context=context, checkpointer=checkpointer)  # type: ignore[arg-type]
        assert store.recorder.run_status(run_id) == "running"
        context = TriageContext(rulebook=load_rulebook(), policy=load_policy(), recorder=store.recorder)
        outcome = execute_run(run_id, recorder=store.recorder, context=context, checkpointer=checkpointer)
    assert outcome.report is not None
    assert store.recorder.run_status(run_id) == outcome.status == outcome.report["status"]
    assert store.recorder.run_status(run_id) not in ("queued", "running", "retrying")


class _DiesMidWrite:
    """A cluster whose write reaches the API server, but the process dies before hearing the answer."""

    def __init__(self) -> None:
        self.executed: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(FakeCluster(), name)

    def execute(self, plan: dict[str, Any]) -> Any:
        self.executed.append(plan)
        raise SystemExit("killed while the write was in flight")


def test_a_run_killed_mid_write_never_repeats_it_and_leaves_the_outcome_to_a_human(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/midwrite.db"
    store = open_store(Settings(database_url=url))
    incident = Incident.model_validate(
        {
            "id": "INC-W",
            "title": "429 throttling and queue backlog on every replica",
            "alert": {"status": "firing", "labels": {"namespace": "llm-serving", "deployment": "llama-70b"}},
            "signals": {"replicas_desired": 4, "queue_depth": 400},
        }
    )
    run_id = create_run(incident, source="test", payload={}, recorder=store.recorder, engine="rulebook")
    assert run_id is not None
    with open_checkpointer(url) as checkpointer:
        dying = _DiesMidWrite()
        context = TriageContext(
            rulebook=load_rulebook(), policy=load_policy(), recorder=store.recorder, cluster=dying, sla=FakeSla()
        )
        with pytest.raises(SystemExit):
            execute_run(run_id, recorder=store.recorder, context=context, checkpointer=checkpointer)
        assert len(dying.executed) == 1
        healthy = FakeCluster()
        context = TriageContext(
            rulebook=load_rulebook(), policy=load_policy(), recorder=store.recorder, cluster=healthy, sla=FakeSla()
        )
        outcome = execute_run(run_id, recorder=store.recorder, context=context, checkpointer=checkpointer)
    assert healthy.executed == []
    assert outcome.report is not None and outcome.status != "mitigated"
    action = outcome.report["actions"][0]
    assert action["status"] == "failed" and "outcome unknown, not repeated" in action["reason"]
