from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from agent.graph import builder
from agent.routes import route_after_act, route_after_guard, route_after_investigate, route_after_verify
from tests.approvers import answer
from tests.conftest import ROOT
from tests.fakes import FakeCluster, FakeSla

ALERT = {
    "status": "firing",
    "labels": {"alertname": "X", "namespace": "llm-serving", "deployment": "llama-70b", "node": "aks-gpu-7"},
}
SATURATED = {
    "id": "G-1",
    "title": "429 throttling and queue backlog on every replica",
    "alert": ALERT,
    "signals": {"replicas_desired": 4, "queue_depth": 400},
}
BAD_NODE = {"id": "G-2", "title": "XID 79 on node aks-gpu-7, pods there failing, still failing", "alert": ALERT}
BAD_DEPLOYMENT = {
    "id": "G-3",
    "title": "new deployment returns gibberish, still broken",
    "description": "deployment was just created; all outputs are garbage. The previous deployment is still "
    "serving fine.",
    "alert": ALERT,
}


def _graph():
    return builder.compile(checkpointer=InMemorySaver())


def _start(graph, context, incident: dict[str, Any], run_id: str = "run-1") -> dict[str, Any]:
    return graph.invoke(
        {"run_id": run_id, "incident": incident}, {"configurable": {"thread_id": run_id}}, context=context
    )


def _resume(graph, context, answer: dict[str, Any], run_id: str = "run-1") -> dict[str, Any]:
    return graph.invoke(Command(resume=answer), {"configurable": {"thread_id": run_id}}, context=context)


def test_not_configured_modes_are_stated_not_pretended(context):
    state = _start(_graph(), context, SATURATED)
    report = state["report"]
    assert report["status"] == "proposed" and report["mitigation"] == "M2"
    assert report["actions"][0]["status"] == "proposed"
    assert "no cluster configured" in " ".join(report["notes"])
    assert "no postmortem index configured" in " ".join(report["notes"])
    assert report["verification"] is None


def test_allowed_action_is_dry_run_then_executed_then_verified(context):
    context.cluster, context.sla = FakeCluster(), FakeSla("verified")
    report = _start(_graph(), context, SATURATED)["report"]
    assert report["status"] == "mitigated"
    assert len(context.cluster.dry_runs) == 1 and len(context.cluster.executed) == 1
    assert report["actions"][0]["dry_run"]["status"] == "dry-run-ok"
    assert context.recorder.sla_checks[0]["status"] == "verified"


@pytest.mark.parametrize("sla", [None, FakeSla("not_recovered")])
def test_unverified_or_unrecovered_sla_escalates(context, sla):
    context.cluster, context.sla = FakeCluster(), sla
    report = _start(_graph(), context, SATURATED)["report"]
    assert report["status"] == "escalated" and report["escalation"]["mitigation"] == "M1"
    assert "SLA not restored" in report["escalation"]["reason"]


def test_refused_dry_run_executes_nothing_and_escalates(context):
    context.cluster = FakeCluster(dry_run_status="failed")
    report = _start(_graph(), context, SATURATED)["report"]
    assert context.cluster.executed == [] and report["status"] == "escalated"


def test_approval_pauses_and_resumes_once(context):
    context.cluster, context.sla = FakeCluster(), FakeSla("verified")
    graph = _graph()
    paused = _start(graph, context, BAD_NODE)
    waiting = paused["__interrupt__"][0].value
    assert waiting["action"]["operation"] == "cordon_and_evict" and waiting["approvals_required"] == 1
    assert context.cluster.executed == []
    done = _resume(graph, context, answer("alice"))
    assert done["report"]["status"] == "mitigated"
    assert len(context.cluster.executed) == 1
    assert context.recorder.approvals == [
        {"key": "run-1:cordon_and_evict:-/aks-gpu-7", "approver": "alice", "decision": "approve", "reason": ""}
    ]
    assert [(a["person"], a["outcome"]) for a in context.recorder.attempts] == [("alice", "accepted")]


def test_rejection_changes_nothing(context):
    context.cluster = FakeCluster()
    graph = _graph()
    _start(graph, context, BAD_NODE)
    report = _resume(graph, context, answer("bob", approved=False))["report"]
    assert report["status"] == "rejected" and context.cluster.executed == []


def test_deletion_needs_two_different_approvers_with_a_reason(context):
    context.cluster, context.sla = FakeCluster(), FakeSla("verified")
    graph = _graph()
    first = _start(graph, context, BAD_DEPLOYMENT)
    assert first["__interrupt__"][0].value["approvals_required"] == 2
    again = _resume(graph, context, answer("alice", reason="bad weights"))
    assert "__interrupt__" in again and context.cluster.executed == []
    same_person = _resume(graph, context, answer("alice", reason="really"))
    assert "__interrupt__" in same_person and context.cluster.executed == []
    wrong_role = _resume(graph, context, answer("bob", reason="looks bad"))  # sre: up to high, not critical
    assert "__interrupt__" in wrong_role and context.cluster.executed == []
    done = _resume(graph, context, answer("carol", reason="confirmed bad deployment"))
    assert done["report"]["status"] == "mitigated" and len(context.cluster.executed) == 1
    outcomes = [(a["person"], a["outcome"]) for a in context.recorder.attempts]
    assert outcomes == [("alice", "accepted"), ("alice", "refused"), ("bob", "refused"), ("carol", "accepted")]
    assert "already approved" in context.recorder.attempts[1]["message"]
    assert "may not approve critical" in context.recorder.attempts[2]["message"]


def test_malformed_approval_answer_is_refused(context):
    context.cluster = FakeCluster()
    graph = _graph()
    _start(graph, context, BAD_NODE)
    with pytest.raises(ValueError, match="approval answer"):
        _resume(graph, context, {"approved": True, "by": "alice"})  # a bare name is no identity
    assert context.cluster.executed == []


def test_incident_text_cannot_order_a_deletion(context):
    context.cluster, context.sla = FakeCluster(), FakeSla("verified")
    incident = json.loads((ROOT / "examples" / "injection-delete-request.json").read_text())
    state = _start(_graph(), context, incident)
    executed = [p["operation"] for p in context.cluster.executed]
    assert "delete_deployment" not in executed
    assert state.get("report", {}).get("mitigation") != "M6"


def test_explore_is_routed_to_only_when_investigate_did_not_say_it_is_skipped():
    assert route_after_investigate({}) == "explore"
    assert route_after_investigate({"exploration": {"stop_reason": "no LLM configured"}}) == "retrieve"


def test_routes_refuse_unexpected_states():
    with pytest.raises(ValueError):
        route_after_guard({"plan": {"mitigation": "M2"}, "guard": {"verdict": "maybe"}})
    with pytest.raises(ValueError):
        route_after_act({"action": {"status": "exploded"}})
    with pytest.raises(ValueError):
        route_after_verify({"verification": {"status": "probably"}})


def test_examples_are_valid_incidents():
    from agent.schemas import Incident

    files = sorted((ROOT / "examples").glob("*.json"))
    assert len(files) >= 5
    for path in files:
        Incident.model_validate(json.loads(Path(path).read_text()))


def test_a_late_approval_cannot_be_used(context):
    from datetime import UTC, datetime, timedelta

    context.cluster = FakeCluster()
    graph = _graph()
    _start(graph, context, BAD_NODE)
    context.clock = lambda: datetime.now(UTC) + timedelta(seconds=context.policy.approval_ttl_seconds + 60)
    report = _resume(graph, context, answer("alice"))["report"]
    assert report["status"] == "rejected" and "past the" in report["guard"]["reasons"][0]
    assert context.cluster.executed == []
    assert context.recorder.attempts[-1]["outcome"] == "expired" and context.recorder.approvals == []


def test_m1_escalation_is_recorded_and_notified_without_touching_the_cluster(context):
    context.cluster = FakeCluster()
    sent: list[dict[str, Any]] = []
    context.notify = sent.append
    incident = {
        "id": "G-9",
        "title": "structured outputs: json schema responses invalid since the grammar backend switch, still failing",
        "alert": ALERT,
    }
    report = _start(_graph(), context, incident)["report"]
    assert report["status"] == "escalated" and report["mitigation"] == "M1"
    assert sent and sent[0]["incident_id"] == "G-9" and report["escalation"]["notified"] is True
    assert context.cluster.dry_runs == [] and context.cluster.executed == []


def test_a_broken_notification_hook_keeps_the_escalation(context):
    def broken(_: dict[str, Any]) -> None:
        raise ConnectionError("pager down")

    context.notify = broken
    incident = {"id": "G-10", "title": "structured outputs: json schema responses invalid, still failing"}
    report = _start(_graph(), context, incident)["report"]
    assert report["status"] == "escalated" and "pager down" in report["escalation"]["notify_error"]
