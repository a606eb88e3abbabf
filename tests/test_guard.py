from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from tools.guard import DEFAULT_POLICY, PolicyError, evaluate, parse_policy

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _plan(operation: str = "scale_out", mitigation: str = "M2", **params: Any) -> dict[str, Any]:
    return {
        "mitigation": mitigation,
        "operation": operation,
        "target": {"kind": "deployment", "namespace": "llm-serving", "name": "llama-70b"},
        "parameters": {"current_replicas": 4, "replicas": 6, **params},
    }


def _policy(**changes: Any):
    data = yaml.safe_load(DEFAULT_POLICY.read_text())
    data.update(changes)
    return parse_policy(yaml.safe_dump(data))


def test_no_cluster_write_is_not_applicable(policy):
    decision = evaluate(policy, {"mitigation": "M1", "operation": "escalate", "target": {}}, now=NOW)
    assert decision.verdict == "not_applicable"


def test_bounded_scale_out_is_allowed(policy):
    assert evaluate(policy, _plan(), now=NOW).verdict == "allowed"


@pytest.mark.parametrize(
    ("plan", "reason"),
    [
        ({**_plan(), "target": {"kind": "deployment", "namespace": "kube-system", "name": "x"}}, "not in the allowed"),
        (_plan(replicas=40, current_replicas=36), "max_replicas"),
        (_plan(replicas=20, current_replicas=4), "max_scale_step"),
        ({**_plan(), "target": {"kind": "deployment", "namespace": "llm-serving", "name": "Bad_Name;rm"}}, "valid"),
        (_plan(operation="restart_pod", mitigation="M4", pods_affected=500), "max_pods_affected"),
        (_plan(operation="scale_out", mitigation="M4"), "implements M2"),
    ],
)
def test_out_of_policy_plans_are_denied_with_a_reason(policy, plan, reason):
    decision = evaluate(policy, plan, now=NOW)
    assert decision.verdict == "denied"
    assert any(reason in r for r in decision.reasons)


def test_kill_switch_and_freeze_window_deny():
    assert "kill switch" in evaluate(_policy(kill_switch=True), _plan(), now=NOW).reasons[0]
    frozen = _policy(
        freeze_windows=[{"start": "2026-11-24T00:00:00Z", "end": "2026-11-25T00:00:00Z", "reason": "release freeze"}]
    )
    decision = evaluate(frozen, _plan(), now=NOW)
    assert decision.verdict == "denied" and "release freeze" in decision.reasons[0]
    assert evaluate(frozen, _plan(), now=datetime(2026, 11, 26, tzinfo=UTC)).verdict == "allowed"


def test_cooldown_reads_the_audit_trail(policy):
    calls = []

    def recent(operation: str, name: str, since: datetime) -> str | None:
        calls.append((operation, name, since))
        return "run-earlier"

    decision = evaluate(policy, _plan(operation="rollout_restart", mitigation="M4"), now=NOW, recent_run=recent)
    # The same action on the same target already ran: the cause was acted on, nobody is paged again.
    assert decision.verdict == "already_mitigated" and decision.by_run == "run-earlier"
    assert "already mitigated by run run-earlier" in decision.reasons[0]
    assert calls[0][0:2] == ("rollout_restart", "llama-70b")
    # A policy violation still wins over "already done": that is a denial, with its reason.
    frozen = evaluate(
        _policy(kill_switch=True), _plan(operation="rollout_restart", mitigation="M4"), now=NOW, recent_run=recent
    )
    assert frozen.verdict == "denied"


def test_a_target_read_from_free_text_needs_a_human(policy):
    decision = evaluate(policy, _plan(), now=NOW, target_source="text")
    assert decision.verdict == "approval_required" and decision.approvals_required == 1
    assert "read from the incident's text" in decision.reasons[0]
    assert evaluate(policy, _plan(), now=NOW, target_source="alert_labels").verdict == "allowed"


def test_deletion_needs_two_humans_even_if_the_policy_file_says_none():
    data = yaml.safe_load(DEFAULT_POLICY.read_text())
    data["operations"]["delete_deployment"]["approvals"] = 0
    lax = parse_policy(yaml.safe_dump(data))
    decision = evaluate(lax, _plan(operation="delete_deployment", mitigation="M6"), now=NOW)
    assert decision.verdict == "approval_required" and decision.approvals_required == 2


def test_unknown_operation_is_an_error(policy):
    with pytest.raises(PolicyError):
        evaluate(policy, _plan(operation="rm_rf"), now=NOW)
