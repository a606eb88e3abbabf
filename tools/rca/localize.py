"""Live fault localisation for a triage: rank the pods of the incident's model by the serving-aware
method over Prometheus range queries, a reference window before the incident began against the window
since. The plan's restart target (M4) is the top-ranked pod when the ranking is decisive."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from agent.schemas import Incident
from tools.metrics import SAFE_LABEL_VALUE
from tools.rca.serving import serving_aware

RATE = "10s"
# "SEL" stands for the incident's label selector ({namespace="...",model="..."}).
LIVE_QUERIES = {
    "cpu_cores": "rate(container_cpu_usage_seconds_totalSEL[RATE])",
    "memory_bytes": "container_memory_working_set_bytesSEL",
    "network_rx_bytes_per_s": "rate(container_network_receive_bytes_totalSEL[RATE])",
    "gpu_util": "DCGM_FI_DEV_GPU_UTILSEL",
    "gpu_power_w": "DCGM_FI_DEV_POWER_USAGESEL",
    "ttft_s": "rate(vllm:time_to_first_token_seconds_sumSEL[RATE])"
    " / rate(vllm:time_to_first_token_seconds_countSEL[RATE])",
    "tpot_s": "rate(vllm:time_per_output_token_seconds_sumSEL[RATE])"
    " / rate(vllm:time_per_output_token_seconds_countSEL[RATE])",
    "tokens_per_s": "rate(vllm:generation_tokens_totalSEL[RATE])",
    "queue": "vllm:num_requests_waitingSEL",
    "restarts": "kube_pod_container_status_restarts_totalSEL",
}  # fmt: skip
DECISIVE_SCORE = 3.0  # the top pod must deviate at least this much ...
DECISIVE_LEAD = 1.5  # ... and this many times more than the runner-up


class PrometheusLocalizer:
    def __init__(self, url: str, *, reference_s: float = 300.0, step_s: float = 2.0) -> None:
        from prometheus_api_client import PrometheusConnect

        self._prom = PrometheusConnect(url=url)
        self.reference_s, self.step_s = reference_s, step_s

    def rank(self, incident: Incident) -> dict[str, Any]:
        """{"candidates": [...], "decisive": bool, "top": pod | None}; the candidates are the pods of
        the incident's model (namespace and model from its alert)."""
        labels = incident.alert.labels if incident.alert else {}
        wanted = {k: labels[k] for k in ("namespace", "model") if labels.get(k) and SAFE_LABEL_VALUE.match(labels[k])}
        if "model" not in wanted or incident.started_at is None:
            return {"candidates": [], "decisive": False, "top": None, "reason": "no model or start time to localise"}
        selector = ",".join(f'{k}="{v}"' for k, v in wanted.items())
        started = incident.started_at if incident.started_at.tzinfo else incident.started_at.replace(tzinfo=UTC)
        begin, now = started - timedelta(seconds=self.reference_s), datetime.now(UTC)
        windows: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
        for metric, template in LIVE_QUERIES.items():
            query = template.replace("SEL", "{" + selector + "}").replace("RATE", RATE)
            for series in self._prom.custom_query_range(
                query, start_time=begin, end_time=now, step=f"{self.step_s:g}s"
            ):
                pod = series["metric"].get("pod")
                if not pod:
                    continue
                pre = [float(v) for ts, v in series["values"] if float(ts) < started.timestamp()]
                fault = [float(v) for ts, v in series["values"] if float(ts) >= started.timestamp()]
                windows.setdefault(pod, {})[metric] = (pre, fault)
        # The live stack's structure is not known here: the method reads each pod on its own evidence.
        ranking = serving_aware(windows)
        top, second = [*ranking, None, None][:2]
        decisive = (
            top is not None
            and top.score >= DECISIVE_SCORE
            and (second is None or top.score >= DECISIVE_LEAD * max(second.score, 1e-9))
        )
        return {
            "candidates": [
                {"pod": c.pod, "score": c.score, "metric": c.metric, "evidence": c.evidence} for c in ranking[:5]
            ],
            "decisive": decisive,
            "top": top.pod if decisive and top is not None else None,
            "method": "serving-aware",
        }
