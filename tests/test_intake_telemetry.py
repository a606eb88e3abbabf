"""Live signals at intake: merged into the incident the rest of the graph sees; a failing telemetry
source is recorded and triage goes on with what the incident said."""

from __future__ import annotations

from typing import Any

from agent.context import MemoryRecorder, TriageContext
from agent.graph import build_graph
from agent.schemas import Incident

ALERT = {
    "id": "T-1",
    "title": "High408Rate: HTTP 408 request timeouts on mixtral-8x7b streaming responses",
    "alert": {"status": "firing", "labels": {"alertname": "High408Rate", "namespace": "ns", "model": "mixtral"}},
}


class Signals:
    def __init__(self, values: dict[str, float] | Exception) -> None:
        self.values = values
        self.asked: list[str] = []

    def signals(self, incident: Incident) -> dict[str, float]:
        self.asked.append(incident.id)
        if isinstance(self.values, Exception):
            raise self.values
        return self.values


def _run(rulebook: Any, policy: Any, telemetry: Signals) -> tuple[dict[str, Any], MemoryRecorder]:
    recorder = MemoryRecorder()
    context = TriageContext(rulebook=rulebook, policy=policy, recorder=recorder, telemetry=telemetry)
    state = build_graph().invoke({"run_id": "r", "incident": ALERT}, context=context)
    return state, recorder


def test_a_blip_that_is_over_by_the_signals_is_no_action(rulebook, policy):
    over = Signals({"http_408_rate": 0.0, "http_408_rate_peak": 0.05, "sla": 1.0, "sla_target": 0.99})
    state, recorder = _run(rulebook, policy, over)
    assert over.asked == ["T-1"]
    assert state["incident"]["signals"]["http_408_rate_peak"] == 0.05
    assert state["report"]["mitigation"] == "M5"
    assert recorder.steps[("r", "intake")]["data"]["live_signals"]["sla"] == 1.0


def test_the_same_alert_with_the_errors_still_there_is_acted_on(rulebook, policy):
    ongoing = Signals({"http_408_rate": 0.04, "http_408_rate_peak": 0.05, "sla": 0.95, "sla_target": 0.99})
    state, _ = _run(rulebook, policy, ongoing)
    assert state["report"]["mitigation"] != "M5"
    assert state["report"]["subcategory"] == "timeout"


def test_failing_telemetry_is_recorded_and_triage_goes_on(rulebook, policy):
    state, recorder = _run(rulebook, policy, Signals(RuntimeError("Prometheus at http://x: refused")))
    assert state["report"]["subcategory"] == "timeout"
    assert "refused" in recorder.steps[("r", "intake")]["data"]["telemetry_error"]
