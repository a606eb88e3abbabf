from __future__ import annotations

from typing import Any

from agent.entities import extract_entities
from agent.planner import plan
from agent.schemas import Incident


def _plan(rulebook, policy, **fields: Any):
    incident = Incident.model_validate({"id": "P-1", **fields})
    classification = rulebook.classify(incident)
    return classification, plan(rulebook, policy, incident, classification, extract_entities(incident))


ALERT = {"status": "firing", "labels": {"alertname": "X", "namespace": "llm-serving", "deployment": "llama-70b"}}


def test_timeout_gets_the_connection_liveness_template(rulebook, policy):
    _, p = _plan(
        rulebook, policy, title="HTTP 408 on streaming", description="idle streams dropped, still failing", alert=ALERT
    )
    assert (p.mitigation, p.operation) == ("M1", "apply_connection_liveness_template")
    assert p.touches_cluster and p.target.name == "llama-70b" and p.target.namespace == "llm-serving"
    assert p.parameters["template"] == "connection-liveness"


def test_saturated_deployment_scales_out_and_a_stuck_pod_restarts(rulebook, policy):
    _, saturated = _plan(
        rulebook,
        policy,
        title="429 throttling, queue backlog on all replicas",
        alert=ALERT,
        signals={"replicas_desired": 4, "queue_depth": 300},
    )
    assert (saturated.mitigation, saturated.operation) == ("M2", "scale_out")
    assert saturated.parameters["replicas"] == 6 and saturated.parameters["current_replicas"] == 4
    alert = {**ALERT, "labels": {**ALERT["labels"], "pod": "llama-70b-7d9f-abcde"}}
    _, stuck = _plan(rulebook, policy, title="429 throttling: one replica is wedged, queue backlog on it", alert=alert)
    assert (stuck.mitigation, stuck.operation) == ("M4", "restart_pod")
    assert stuck.target.kind == "pod" and stuck.target.name == "llama-70b-7d9f-abcde"


def test_latency_spike_shifts_traffic(rulebook, policy):
    _, p = _plan(rulebook, policy, title="TTFT p95 doubled in japaneast, other regions fine", alert=ALERT)
    assert (p.mitigation, p.operation) == ("M3", "shift_traffic")
    assert p.parameters["away_from"] == "japaneast"


def test_recovered_incident_is_m5_with_its_evidence(rulebook, policy):
    _, p = _plan(
        rulebook,
        policy,
        title="TTFT p95 high",
        description="errors stopped at 02:19 without intervention",
        alert={**ALERT, "status": "resolved"},
        signals={"ttft_p95_s": 0.7, "ttft_p95_s_peak": 6.0},
    )
    assert p.mitigation == "M5" and not p.touches_cluster
    assert any("resolved" in e for e in p.no_action_evidence)
    assert any("ttft_p95_s" in e for e in p.no_action_evidence)


def test_recovered_then_came_back_is_not_m5(rulebook, policy):
    _, p = _plan(
        rulebook,
        policy,
        title="TTFT p95 high",
        description="recovered on its own, then it came back at 03:10",
        alert={**ALERT, "status": "resolved"},
    )
    assert p.mitigation != "M5"
    assert "came back" in p.rationale


def test_resolved_alert_with_signal_still_bad_is_not_m5(rulebook, policy):
    _, p = _plan(
        rulebook,
        policy,
        title="408s on streaming",
        alert={**ALERT, "status": "resolved"},
        signals={"http_408_rate": 0.02},
    )
    assert p.mitigation != "M5"


def test_unknown_escalates(rulebook, policy):
    c, p = _plan(rulebook, policy, title="a customer feels something is wrong")
    assert c.category == "unknown"
    assert (p.mitigation, p.operation, p.touches_cluster) == ("M1", "escalate", False)


def test_misconfigured_alert_is_m5_unless_impact_is_ongoing(rulebook, policy):
    _, quiet = _plan(rulebook, policy, title="alert threshold misconfigured, false positive, no customer impact")
    assert quiet.mitigation == "M5"
    _, loud = _plan(
        rulebook, policy, title="alert threshold misconfigured, false positive, but customers still failing"
    )
    assert loud.mitigation == "M1"


def test_bad_deployment_just_created_is_m6_and_touches_the_cluster(rulebook, policy):
    _, p = _plan(
        rulebook,
        policy,
        title="new deployment returns gibberish",
        description="the deployment was just created this morning; all outputs are garbage. The previous "
        "deployment still serves the rest of the traffic fine.",
        alert=ALERT,
    )
    assert (p.mitigation, p.operation, p.risk) == ("M6", "delete_deployment", "critical")


def test_a_bad_deployment_with_no_good_one_left_is_fixed_not_deleted(rulebook, policy):
    """Deleting the only deployment of a model takes it down: M6 needs evidence that a good one remains."""
    _, p = _plan(
        rulebook,
        policy,
        title="new deployment returns gibberish",
        description="the deployment was just created this morning; all outputs are garbage",
        alert=ALERT,
    )
    assert p.mitigation == "M1" and p.operation != "delete_deployment"
