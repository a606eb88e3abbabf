"""The failure patterns of issue #12, each as an incident written here in our own words, triaged
through the real graph with the trained judgement model (agent/model/, built by scripts/setup).

Before this work the rulebook alone got each of these wrong (the docstrings say how); the vetoes are
deterministic rules, so the "never M5" cases hold whatever the model's weights are."""

from __future__ import annotations

from typing import Any

import pytest

from agent.graph import build_graph

GRAPH = build_graph()


def triage(context: Any, **incident: Any) -> dict[str, Any]:
    payload = {"id": incident.pop("id", "PAT-1"), **incident}
    return dict(GRAPH.invoke({"run_id": f"run-{payload['id']}", "incident": payload}, context=context)["report"])


RESOLVED = {"status": "resolved", "labels": {"alertname": "EngineErrorRateHigh", "deployment": "qwen-32b"}}


# ---------------------------------------------------------------- false "no action" (the costly error)


@pytest.mark.parametrize(
    ("why", "incident"),
    [
        (
            "recurrence",
            {
                "title": "EngineErrorRateHigh qwen-32b resolved",
                "description": "Cleared by itself after 6 minutes. This is the third time this week the same "
                "pods have thrown these errors.",
                "alert": RESOLVED,
            },
        ),
        (
            "hardware_error",
            {
                "title": "GPU node aks-a100-9 NotReady, back Ready after 4 min",
                "description": "Node went NotReady twice tonight; kernel log shows NVRM Xid 48 (double bit ECC "
                "error) on GPU 3. Pods rescheduled and serving again.",
                "alert": {"status": "resolved", "labels": {"alertname": "KubeNodeNotReady", "node": "aks-a100-9"}},
            },
        ),
        (
            "quality_regression",
            {
                "title": "Output quality alert resolved for summarizer-v2",
                "description": "The quality probe alert cleared, but support still gets tickets about garbled "
                "summaries from summarizer-v2; error rate is zero.",
                "alert": {"status": "resolved", "labels": {"alertname": "QualityProbeLow"}},
            },
        ),
        (
            "leak_restart",
            {
                "title": "tgi-falcon pod restarted by liveness probe, healthy now",
                "description": "Resident memory of the engine keeps climbing about 2 GiB an hour until the "
                "liveness probe kills it; it came back up and serves fine for now.",
                "signals": {"oom_kills": 0, "error_rate": 0.0},
            },
        ),
        (
            "already_acted",
            {
                "title": "Elevated 5xx on embed-large, recovered",
                "description": "Errors were coming from two pods on one node; the on-call engineer cordoned the "
                "node and restarted them, and error rates are back to normal since 03:20.",
                "alert": {"status": "resolved", "labels": {"alertname": "Embed5xxHigh"}},
            },
        ),
        (
            "ongoing",
            {
                "title": "Customer: a retry worked for us",
                "description": "One customer retried and it worked, but the gateway 5xx rate is still 4% across "
                "all tenants.",
                "signals": {"http_5xx_rate": 0.04},
            },
        ),
    ],
)
def test_a_veto_forbids_no_action_whatever_else_the_incident_says(judged_context, why, incident):
    """Before: a resolved alert alone added enough 'recovered' score to decide M5 in each of these."""
    report = triage(judged_context, id=f"VETO-{why}", **incident)
    assert report["mitigation"] != "M5"
    assert report["no_action"]["vetoes"].get(why), report["no_action"]
    assert any(line.startswith(f"{why}: holds") for line in report["plan"]["no_action_checks"])


# ---------------------------------------------------------------- missed "no action"


@pytest.mark.parametrize(
    ("kind", "incident"),
    [
        (
            "non_production",
            {
                "title": "PodCrashLooping vllm-mistral in namespace llm-staging",
                "description": "Fired during the chaos experiment announced in #sre yesterday (pod-kill every 5 "
                "min in the staging cluster). Production namespaces are untouched, 0% production traffic there.",
                "alert": {"status": "firing", "labels": {"alertname": "PodCrashLooping", "namespace": "llm-staging"}},
            },
        ),
        (
            "automation_remediated",
            {
                "title": "NodeNotReady gke-gpu-pool-3 (auto-repaired)",
                "description": "The node auto-repair controller already cordoned, drained and replaced the node "
                "within 7 minutes; its pods were rescheduled and are Ready. No customer impact observed.",
                "alert": {"status": "resolved", "labels": {"alertname": "NodeNotReady", "node": "gke-gpu-pool-3"}},
            },
        ),
        (
            "planned_or_expected",
            {
                "title": "KubePodNotScheduled whisper-large in eastus2 during the node-pool upgrade",
                "description": "Six pods Pending while the approved surge upgrade (CHG-5521) replaces the GPU "
                "nodes one by one; the remaining replicas carry the load and the SLO is met.",
                "alert": {"status": "firing", "labels": {"alertname": "KubePodNotScheduled", "deployment": "whisper"}},
                "signals": {"pods_pending": 6, "sla": 0.9995, "sla_target": 0.999},
            },
        ),
        (
            "planned_or_expected",
            {
                "title": "Question from a customer: same prompt, different answers at temperature 0",
                "description": "They see different outputs for identical requests with temperature 0. Nothing "
                "was deployed to this model in weeks and there are no errors. Our documentation states that "
                "sampling is not bit-identical across batches on GPUs; this is expected behaviour.",
            },
        ),
    ],
)
def test_no_action_is_decided_with_typed_evidence_when_nothing_needs_doing(judged_context, kind, incident):
    """Before: each of these was escalated (M1): the rulebook knew only 'recovered' phrases."""
    report = triage(judged_context, id=f"NOACT-{kind}", **incident)
    assert report["mitigation"] == "M5", report["no_action"]
    assert report["no_action"]["evidence"].get(kind)
    assert report["no_action"]["probability"] >= report["no_action"]["threshold"]
    checks = report["plan"]["no_action_checks"]
    assert {c.split(":")[0] for c in checks} == {
        "recurrence",
        "hardware_error",
        "leak_restart",
        "quality_regression",
        "already_acted",
        "ongoing",
    }
    assert all(c.endswith("clear") for c in checks)


def test_a_tenant_s_own_client_errors_are_client_side_evidence(judged_context):
    report = triage(
        judged_context,
        id="NOACT-client",
        title="400s from one tenant since their app release",
        description="All 400 Bad Request errors come from tenant t-4410 after they shipped a new app version "
        "that sends an invalid response_format. Every other tenant is fine; platform 5xx 0.01%.",
        signals={"http_4xx_rate": 0.03, "http_5xx_rate": 0.0001},
    )
    assert report["no_action"]["evidence"].get("client_side")
    assert not report["no_action"]["vetoes"]  # a client's own 4xx are not our ongoing impact
    assert report["mitigation"] == "M5"


# ---------------------------------------------------------------- wrong action from a surface word


def test_a_bad_new_deployment_beside_a_good_one_is_deleted_with_two_approvers(judged_context):
    """Before: M6 was never proposed (the deletion alternative looked for one phrase)."""
    report = triage(
        judged_context,
        id="M6-1",
        title="New deployment mixtral-awq returns runs of '!!!!'",
        description="The new deployment mixtral-awq (AWQ 4-bit weights, created this morning) takes 10% of the "
        "traffic and answers with exclamation marks only. The previous deployment mixtral-fp16 is still serving "
        "the other 90% fine.",
        alert={"status": "firing", "labels": {"alertname": "QualityProbeFailing", "deployment": "mixtral-awq"}},
    )
    assert (report["category"], report["mitigation"]) == ("A2", "M6")
    assert report["plan"]["operation"] == "delete_deployment" and report["plan"]["risk"] in ("high", "critical")


def test_a_ttft_alert_while_users_are_fine_is_not_a_traffic_shift(judged_context):
    """Before: the word TTFT alone planned M3 (shift traffic) although nobody was affected."""
    report = triage(
        judged_context,
        id="TTFT-1",
        title="TTFTHigh llama-8b",
        description="TTFT p95 crossed 3 s for 4 minutes during a batch of 100k-token prompts from the eval team, "
        "then went back to normal. No user impact; SLA met.",
        alert={"status": "resolved", "labels": {"alertname": "TTFTHigh", "deployment": "llama-8b"}},
        signals={"ttft_p95_s": 0.9, "ttft_p95_s_peak": 3.4, "sla": 0.9995, "sla_target": 0.999},
    )
    assert report["mitigation"] == "M5"


# ---------------------------------------------------------------- names teams really use


def test_exporter_metric_names_are_read_in_canonical_units(judged_context):
    """Before: success_rate, p99_latency_ms, vllm:num_requests_waiting and DCGM_FI_DEV_GPU_UTIL were kept
    but no rule read them."""
    report = triage(
        judged_context,
        id="NAMES-1",
        title="llama-70b slow",
        signals={
            "success_rate": 99.1,
            "p99_latency_ms": 48000,
            "vllm:num_requests_waiting": 240,
            "DCGM_FI_DEV_GPU_UTIL": 99,
            "team_specific_gauge": 3,
        },
    )
    names = report["signal_names"]
    assert names["converted"] == {
        "success_rate": "sla",
        "p99_latency_ms": "e2e_p95_s",
        "vllm:num_requests_waiting": "queue_depth",
        "DCGM_FI_DEV_GPU_UTIL": "gpu_util",
    }
    assert names["unmapped"] == ["team_specific_gauge"]
    assert any("team_specific_gauge" in note for note in report["notes"])
    details = " ".join(e["detail"] for e in report["evidence"])
    assert "queue_depth=240" in details or report["subcategory"] != "resource_exhaustion"
    assert report["no_action"]["vetoes"].get("ongoing")  # 240 waiting and 48 s p99 are impact now


# ---------------------------------------------------------------- thin text


def test_a_thin_status_note_gets_a_best_guess_with_a_probability(judged_context):
    """Before: 'unknown' at 0.10. Now the best guess, a calibrated probability, and needs_human when
    that probability is under the operating threshold."""
    report = triage(judged_context, id="THIN-1", title="Elevated error rates on the API", description="Resolved.")
    assert report["category"] in ("A1", "A2", "A3", "A4") and report["subcategory"] != "unknown"
    assert sum(report["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert report["confidence"] == max(report["probabilities"].values())
    assert report["needs_human"] == (report["confidence"] < judged_context.judgement.needs_human_below)
    if report["needs_human"]:
        assert report["mitigation"] in ("M1", "M5") and report["needs_human_reason"]
