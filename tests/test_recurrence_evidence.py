"""The recurrence veto of "no action" answers from what the run's investigation read of the store
(tools/investigate/history.py `read_history`, agent/no_action.py `known_occurrences`) only when that
read is sure to hold the answer its own query (store/incident_queries.py `recent_occurrences`) would
give; otherwise it asks the store. It must never count fewer: a list or a window cut inside the veto's
days means a second read. And a history-only investigation runs in the calling thread."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from sqlalchemy.orm import Session, sessionmaker

from agent.findings import finding
from agent.graph import builder
from agent.no_action import known_occurrences
from agent.schemas import Alert, Incident
from api.settings import Settings
from api.wiring import open_store
from store.incident_queries import IncidentQueries
from store.models import IncidentRow
from tools.investigate import Bounds, Investigator
from tools.investigate.history import read_history

NOW = datetime.now(UTC)
LABELS = {"alertname": "SLABurn", "namespace": "ns", "deployment": "m-eastus"}
OTHER = {"alertname": "KVCacheFull", "namespace": "ns", "deployment": "m-westus"}


@pytest.fixture
def sessions(db_sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    return db_sessions


def _store(sessions: sessionmaker[Session], rows: list[tuple[str, dict[str, str], timedelta]]) -> None:
    with sessions.begin() as session:
        for id_, labels, ago in rows:
            payload = Incident(id=id_, title="t", alert=Alert(status="firing", labels=labels)).model_dump(mode="json")
            session.add(IncidentRow(id=id_, title=id_, payload=payload, status="open", received_at=NOW - ago))


def _incident(id_: str = "I-now") -> Incident:
    return Incident(id=id_, title="SLA burn", alert=Alert(status="firing", labels=LABELS))


def _both(sessions: sessionmaker[Session], bounds: Bounds, days: float) -> tuple[list[str] | None, list[str]]:
    """(the veto's answer from the investigation's read, or None; the veto's own query's answer)."""
    _, _, read = read_history(sessions, _incident(), now=NOW, bounds=bounds)
    assert read is not None
    since = NOW - timedelta(days=days)
    return known_occurrences(read, "I-now", since), IncidentQueries(sessions).recent_occurrences(_incident(), since)


def test_the_read_answers_the_veto_exactly_when_it_covers_its_days(sessions):
    day = timedelta(days=1)
    _store(
        sessions,
        [
            ("I-now", LABELS, timedelta(0)),
            ("same-1h", LABELS, timedelta(hours=1)),
            ("same-3d", LABELS, 3 * day),
            ("same-10d", LABELS, 10 * day),  # in the investigation's 30 days, not in the veto's 7
            ("other-2d", OTHER, 2 * day),
        ],
    )
    known, asked = _both(sessions, Bounds(), 7)
    assert asked == ["same-1h", "same-3d"] and known == asked
    known, asked = _both(sessions, Bounds(), 2)
    assert asked == ["same-1h"] and known == asked
    # The list cut at two (max_items): same-10d is left out, but it is older than the veto's 7 days.
    known, asked = _both(sessions, Bounds(max_items=2), 7)
    assert known == asked == ["same-1h", "same-3d"]
    # Cut at one: same-3d, inside the veto's days, is not listed, so the read cannot answer.
    known, asked = _both(sessions, Bounds(max_items=1), 7)
    assert known is None and asked == ["same-1h", "same-3d"]
    # The veto's days reaching before the read's own cutoff: not covered either.
    known, asked = _both(sessions, Bounds(history_days=5), 7)
    assert known is None and asked == ["same-1h", "same-3d"]


def test_a_read_with_nothing_recurring_answers_none_found(sessions):
    _store(sessions, [("other-1h", OTHER, timedelta(hours=1))])
    known, asked = _both(sessions, Bounds(), 7)
    assert known == asked == []


def test_a_full_window_reaching_into_the_veto_days_is_asked_again(sessions):
    # Bounds(max_items=1) looks through the 20 newest incidents: 25 other alerts in the last hours fill
    # it, so the recurrence 3 days ago is outside it while the veto's own 2000 would see it.
    others = [(f"other-{i}", OTHER, timedelta(minutes=10 + i)) for i in range(25)]
    _store(sessions, [*others, ("same-3d", LABELS, timedelta(days=3))])
    known, asked = _both(sessions, Bounds(max_items=1), 7)
    assert known is None and asked == ["same-3d"]
    # The same window answers for a veto of the last few minutes, newer than the window's oldest.
    known, asked = _both(sessions, Bounds(max_items=1), 0.005)  # 7.2 minutes
    assert known == asked == []


def test_recurrences_at_the_same_moment_as_the_cut_are_asked_again(sessions):
    at = timedelta(hours=2)
    _store(sessions, [("same-a", LABELS, at), ("same-b", LABELS, at)])
    known, asked = _both(sessions, Bounds(max_items=1), 7)
    assert known is None and sorted(asked) == ["same-a", "same-b"]


def test_a_read_for_another_incident_or_over_a_wider_window_than_the_veto_bound_is_not_used():
    read = {
        "incident": "I-now",
        "recurrences": [["same-1", (NOW - timedelta(hours=1)).isoformat()]],
        "complete_after": (NOW - timedelta(days=30)).isoformat(),
        "window": 1000,
    }
    since = NOW - timedelta(days=7)
    assert known_occurrences(read, "I-now", since) == ["same-1"]
    assert known_occurrences(read, "I-other", since) is None
    assert known_occurrences(read | {"window": 2001}, "I-now", since) is None
    assert known_occurrences(read | {"complete_after": "yesterday"}, "I-now", since) is None
    assert known_occurrences(None, "I-now", since) is None


class _Counting(IncidentQueries):
    """The veto's store read, counted."""

    calls = 0

    def recent_occurrences(self, incident: Incident, since: datetime, limit: int = 2000) -> list[str]:
        self.calls += 1
        return super().recent_occurrences(incident, since, limit)


def _triage(context: Any) -> dict[str, Any]:
    graph = builder.compile(checkpointer=InMemorySaver())
    incident = _incident().model_copy(update={"description": "The SLA burn ended; back to normal."})
    state = {"run_id": "r1", "incident": incident.model_dump(mode="json")}
    return graph.invoke(state, {"configurable": {"thread_id": uuid.uuid4().hex}}, context=context)


def test_the_veto_fires_from_the_investigation_and_from_its_own_read(context, tmp_path):
    store = open_store(Settings(database_url=f"sqlite:///{tmp_path}/store.db"))
    _store(store.sessions, [("same-1d", LABELS, timedelta(days=1)), ("same-2d", LABELS, timedelta(days=2))])
    said = "2 earlier incident(s) of the same alert or target in the last 7 days: same-1d, same-2d"

    history = _Counting(store.sessions)
    state = _triage(replace(context, history=history, investigator=Investigator(sessions=store.sessions)))
    assert state["no_action"]["vetoes"]["recurrence"] == [said] and not state["no_action"]["decided"]
    assert history.calls == 0  # answered from the investigation's read
    assert state["investigation"]["recurrences"]["recurrences"][0][0] == "same-1d"

    history = _Counting(store.sessions)
    state = _triage(replace(context, history=history, investigator=None))
    assert state["no_action"]["vetoes"]["recurrence"] == [said] and history.calls == 1

    # The investigation's list cut at one recurrence: the veto asks the store and counts both.
    history = _Counting(store.sessions)
    cut = Investigator(sessions=store.sessions, bounds=Bounds(max_items=1))
    state = _triage(replace(context, history=history, investigator=cut))
    assert state["investigation"]["findings"][0]["data"]["count"] == 1
    assert state["no_action"]["vetoes"]["recurrence"] == [said] and history.calls == 1


def test_history_alone_runs_in_the_calling_thread_and_with_another_source_on_the_pool():
    threads: dict[str, str] = {}

    def source(name: str) -> Any:
        def run() -> Any:
            threads[name] = threading.current_thread().name
            if name == "broken":
                raise RuntimeError("boom")
            return [finding("history", name, {"type": "incident_store", "incident_ids": []})], []

        return run

    class Chosen(Investigator):
        names: tuple[str, ...] = ()

        def sources(self, incident: Incident, entities: dict[str, str]) -> Any:
            return {name: source(name) for name in self.names}, []

    alone = Chosen()
    alone.names = ("history",)
    result = alone.investigate(_incident(), {})
    assert threads["history"] == threading.current_thread().name and result["findings"][0]["summary"] == "history"
    both = Chosen()
    both.names = ("history", "broken")
    result = both.investigate(_incident(), {})
    assert threads["history"].startswith("mitigate-investigate") and threads["broken"].startswith("mitigate-")
    assert result["gaps"] == [{"source": "broken", "reason": "broken failed: RuntimeError: boom"}]
