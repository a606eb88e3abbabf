"""SLA and serving telemetry from Prometheus (prometheus-api-client), for triage and for verification.

SLA = successful requests / valid requests, where client-side 4xx are not valid requests (408 and 429
are the service's failures and count against it), from the gateway's `gateway_requests_total`.

- `signals(incident)`: what the dashboards show now, as the rulebook's signal names, with `<name>_peak`
  over a lookback so that "it was bad and is fine now" can be told from "it is still bad".
- `verify(plan, incident, acted_at)`: the SLA at the time of the action (baseline), then polled until a
  deadline; verified only when the SLA is back above target *and* the symptom the action addressed
  has cleared, for a stable window. A Prometheus that is down or has no data is `unverified`, never
  verified.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agent.schemas import Incident

CLIENT_ERRORS = "400|401|403|404|413|422"
# A label value mitigate will put into a PromQL selector; anything else is refused, never quoted.
SAFE_LABEL_VALUE = re.compile(r"^[A-Za-z0-9_.:/-]{1,200}$")
# The symptom each operation is meant to clear, as (signal, level it must fall under).
SYMPTOM = {
    "apply_connection_liveness_template": ("http_408_rate", 0.003),
    "scale_out": ("http_429_rate", 0.02),
    "shift_traffic": ("ttft_p95_s", 2.5),
    "restart_pod": ("http_5xx_rate", 0.01),
    "rollout_restart": ("http_5xx_rate", 0.01),
    "cordon_and_evict": ("http_5xx_rate", 0.01),
}


def _seconds(duration: str) -> float:
    """A Prometheus duration of one unit ("90s", "5m", "1h") in seconds."""
    return float(duration[:-1]) * {"s": 1, "m": 60, "h": 3600}[duration[-1]]


class PrometheusUnavailable(RuntimeError):
    """Prometheus did not answer, or answered with an error; the message says which."""


@dataclass(frozen=True)
class MetricsSettings:
    window: str = "5m"  # the rate window of "now"
    lookback: str = "30m"  # how far back `_peak` looks
    sla_target: float = 0.99
    stable_s: float = 60.0  # the SLA must hold this long to count as recovered
    deadline_s: float = 600.0  # give up (not recovered) after this long
    poll_s: float = 5.0


def _matchers(incident: Incident, plan: dict[str, Any] | None = None) -> str:
    """Label matchers naming the incident's service: namespace and model (or deployment) from its alert
    or the plan's target. Values are checked against a strict pattern: never PromQL from the outside."""
    labels = dict(incident.alert.labels) if incident.alert else {}
    target = (plan or {}).get("target") or {}
    wanted: dict[str, str] = {}
    if labels.get("namespace") or target.get("namespace"):
        wanted["namespace"] = labels.get("namespace") or target["namespace"]
    if labels.get("model"):
        wanted["model"] = labels["model"]
    elif labels.get("deployment") or target.get("kind") == "deployment":
        wanted["deployment"] = labels.get("deployment") or target.get("name") or ""
    return ",".join(f'{k}="{v}"' for k, v in wanted.items() if v and SAFE_LABEL_VALUE.match(v))


class PrometheusMetrics:
    def __init__(
        self,
        url: str,
        settings: MetricsSettings | None = None,
        *,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from prometheus_api_client import PrometheusConnect

        self.url = url
        self.settings = settings or MetricsSettings()
        self._prom = PrometheusConnect(url=url, disable_ssl=False, timeout=math.ceil(timeout_s))
        self._clock, self._sleep = clock, sleep

    # ---- queries ------------------------------------------------------------------------------
    def _value(self, query: str, at: datetime | None = None) -> float | None:
        """The single value of an instant query (the max if several series answer); None for no data."""
        from prometheus_api_client.exceptions import PrometheusApiClientException
        from requests import RequestException

        params = {"time": f"{at.timestamp():.3f}"} if at is not None else None
        try:
            result = self._prom.custom_query(query, params=params)
        except (PrometheusApiClientException, RequestException) as exc:
            raise PrometheusUnavailable(f"Prometheus at {self.url}: {type(exc).__name__}: {exc}") from exc
        values = [float(r["value"][1]) for r in result if "value" in r]
        values = [v for v in values if not math.isnan(v)]
        return max(values) if values else None

    def _rate(self, where: str, codes: str, window: str) -> str:
        return f'sum(rate(gateway_requests_total{{{where}{"," if where else ""}code=~"{codes}"}}[{window}]))'

    def _valid(self, where: str, window: str) -> str:
        return f'sum(rate(gateway_requests_total{{{where}{"," if where else ""}code!~"{CLIENT_ERRORS}"}}[{window}]))'

    def sla_query(self, where: str, window: str | None = None) -> str:
        window = window or self.settings.window
        return f"{self._rate(where, '2..', window)} / {self._valid(where, window)}"

    def _queries(self, where: str) -> dict[str, str]:
        w = self.settings.window
        return {
            "sla": self.sla_query(where),
            "http_408_rate": f"{self._rate(where, '408', w)} / {self._valid(where, w)}",
            "http_429_rate": f"{self._rate(where, '429', w)} / {self._valid(where, w)}",
            "http_5xx_rate": f"{self._rate(where, '5..', w)} / {self._valid(where, w)}",
            "ttft_p95_s": "histogram_quantile(0.95, sum by (le) "
            f"(rate(vllm:time_to_first_token_seconds_bucket{{{where}}}[{w}])))",
            "tpot_p95_s": "histogram_quantile(0.95, sum by (le) "
            f"(rate(vllm:time_per_output_token_seconds_bucket{{{where}}}[{w}])))",
            "queue_depth": f"max(vllm:num_requests_waiting{{{where}}})",
            "kv_cache_usage": f"max(vllm:gpu_cache_usage_perc{{{where}}})",
            "gpu_util": f"avg(DCGM_FI_DEV_GPU_UTIL{{{where}}}) / 100",
            "pod_restarts": "sum(increase(kube_pod_container_status_restarts_total"
            f"{{{where}}}[{self.settings.lookback}]))",
        }

    # ---- the triage's view --------------------------------------------------------------------
    def _incident_lookback(self, incident: Incident) -> str:
        """How far back `_peak` looks: from one rate window before the incident started (the window
        that made it fire) until now, at most `lookback`; without a start, `lookback`. A peak of an
        earlier incident must not count as this one's."""
        longest = _seconds(self.settings.lookback)
        if incident.started_at is None:
            return self.settings.lookback
        started = incident.started_at if incident.started_at.tzinfo else incident.started_at.replace(tzinfo=UTC)
        span = (datetime.now(UTC) - started).total_seconds() + _seconds(self.settings.window)
        return f"{max(1, min(longest, math.ceil(span)))}s"

    def signals(self, incident: Incident) -> dict[str, float]:
        where = _matchers(incident)
        lookback = self._incident_lookback(incident)
        # One evaluation time for every query: a scrape landing between two of them would otherwise give
        # an SLA from before it next to an error rate from after it (a snapshot that never existed).
        at = datetime.now(UTC)
        out: dict[str, float] = {}
        peaks = ("http_408_rate", "http_429_rate", "http_5xx_rate", "ttft_p95_s", "queue_depth", "kv_cache_usage")
        for name, query in self._queries(where).items():
            value = self._value(query, at)
            if value is None:
                continue
            out[name] = round(value, 6)
            if name in peaks:
                peak = self._value(f"max_over_time(({query})[{lookback}:])", at)
                if peak is not None:
                    out[f"{name}_peak"] = round(max(peak, value), 6)
        if "sla" in out:
            out["sla_target"] = self.settings.sla_target
        labels = incident.alert.labels if incident.alert else {}
        deployment = labels.get("deployment")
        if deployment and SAFE_LABEL_VALUE.match(deployment):
            for name, metric in (
                ("replicas_desired", "kube_deployment_spec_replicas"),
                ("replicas_available", "kube_deployment_status_replicas_available"),
            ):
                value = self._value(f'max({metric}{{deployment="{deployment}"}})', at)
                if value is not None:
                    out[name] = value
        return out

    # ---- verification -------------------------------------------------------------------------
    def verify(self, plan: dict[str, Any], incident: Incident) -> dict[str, Any]:
        """Called right after the action: the SLA now (its rate window lies before the action) is the
        baseline; then poll until the SLA and the action's symptom hold healthy for `stable_s`."""
        s = self.settings
        where = _matchers(incident, plan)
        symptom = SYMPTOM.get(plan.get("operation", ""))
        queries = self._queries(where)
        try:
            baseline = self._value(self.sla_query(where))
        except PrometheusUnavailable as exc:
            return {"status": "unverified", "reason": f"SLA unverified: {exc}"}
        started = self._clock()
        holding_since: float | None = None
        samples: list[dict[str, Any]] = []
        last: dict[str, Any] = {}
        while True:
            try:
                sla = self._value(queries["sla"])
                level = self._value(queries[symptom[0]]) if symptom else None
            except PrometheusUnavailable as exc:
                return {"status": "unverified", "reason": f"SLA unverified: {exc}", "baseline_sla": baseline}
            now = self._clock()
            healthy = sla is not None and sla >= s.sla_target and (symptom is None or (level or 0.0) < symptom[1])
            last = {"t_s": round(now - started, 1), "sla": sla, **({symptom[0]: level} if symptom else {})}
            samples.append(last)
            if healthy:
                holding_since = now if holding_since is None else holding_since
                if now - holding_since >= s.stable_s:
                    recovered_at = datetime.now(UTC).timestamp() - (now - holding_since)
                    return self._result("verified", baseline, last, samples, incident, recovered_at, symptom)
            else:
                holding_since = None
            if now - started >= s.deadline_s:
                if all(x["sla"] is None for x in samples):
                    return {
                        "status": "unverified",
                        "reason": f"SLA unverified: Prometheus has no data for {{{where}}}",
                        "baseline_sla": baseline,
                    }
                return self._result("not_recovered", baseline, last, samples, incident, None, symptom)
            self._sleep(s.poll_s)

    def _result(
        self,
        status: str,
        baseline: float | None,
        last: dict[str, Any],
        samples: list[dict[str, Any]],
        incident: Incident,
        recovered_at: float | None,
        symptom: tuple[str, float] | None,
    ) -> dict[str, Any]:
        s = self.settings
        sla = last.get("sla")
        shown = "n/a" if sla is None else f"{sla:.4f}"
        before = "n/a" if baseline is None else f"{baseline:.4f}"
        if status == "verified":
            reason = f"SLA {before} -> {shown} (target {s.sla_target}), held for {s.stable_s:g} s"
        else:
            reason = f"SLA not recovered within {s.deadline_s:g} s: {before} -> {shown} (target {s.sla_target})"
        if symptom is not None:
            reason += f"; {symptom[0]} {last.get(symptom[0]) or 0:.4g} (must be < {symptom[1]})"
        out: dict[str, Any] = {
            "status": status,
            "reason": reason,
            "baseline_sla": baseline,
            "sla": sla,
            "sla_target": s.sla_target,
            "samples": samples[-20:],
        }
        if recovered_at is not None:
            out["recovered_at"] = datetime.fromtimestamp(recovered_at, UTC).isoformat()
            if incident.started_at is not None:
                out["ttm_s"] = round(recovered_at - incident.started_at.timestamp(), 1)
        return out
