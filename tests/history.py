"""Past incidents with finished runs in a store, for the tests of history search, `ask` and the tool loop."""

from __future__ import annotations

from typing import Any

from agent.schemas import Incident

PAST: list[dict[str, Any]] = [
    {
        "incident": {
            "id": "INC-KV-1",
            "title": "KV cache full on mixtral-8x7b, requests queueing",
            "description": "gpu_cache_usage_perc at 0.99 for 20 minutes, queue depth 400",
            "alert": {"labels": {"alertname": "KVCacheFull", "namespace": "llm-serving", "model": "mixtral-8x7b"}},
        },
        "report": ("A3", "kv_cache", "M2", "scale_out", "mitigated"),
    },
    {
        "incident": {
            "id": "INC-408-1",
            "title": "HTTP 408 on streaming completions of llama-70b",
            "description": "long generations cut off after 60 s",
            "alert": {"labels": {"alertname": "High408", "namespace": "llm-serving", "deployment": "llama-70b"}},
        },
        "report": ("A3", "timeout", "M1", "apply_connection_liveness_template", "mitigated"),
    },
    {
        "incident": {
            "id": "INC-XID-1",
            "title": "XID 79 on node aks-gpu-7, pods failing",
            "description": "GPU fell off the bus",
            "alert": {"labels": {"alertname": "GpuXid", "node": "aks-gpu-7"}},
        },
        "report": ("A1", "bad_node", "M4", "cordon_and_evict", "mitigated"),
    },
]


def seed(recorder: Any) -> list[str]:
    """Store PAST with one finished run each; the incident ids."""
    for i, past in enumerate(PAST):
        incident = Incident.model_validate(past["incident"])
        category, sub, mitigation, operation, status = past["report"]
        recorder.save_incident(incident, source="test", payload={})
        run_id = f"past-run-{i}"
        recorder.start_run(run_id, incident.id, "rulebook")
        report = {
            "incident_id": incident.id,
            "run_id": run_id,
            "status": status,
            "category": category,
            "subcategory": sub,
            "confidence": 0.9,
            "mitigation": mitigation,
            "plan": {"mitigation": mitigation, "operation": operation},
            "actions": [{"operation": operation, "status": "executed"}],
        }
        recorder.finish_run(run_id, status=status, report=report)
    return [p["incident"]["id"] for p in PAST]
