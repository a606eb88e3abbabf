"""Did the action fix what it was meant to fix? Measured against a baseline taken *before* the action.

Each operation names its symptoms (policy as data, below): the signal, and the level under which it is
healthy. `baseline()` reads them (and the SLA) just before the write; the act node stores the result
on the action row, so a resumed run verifies against the same baseline. `verify()` then checks only
the symptoms that were abnormal at the baseline — an action whose symptoms were all healthy before it
"verifies" nothing, and says so (`nothing_to_verify`) — and polls until they, the SLA, and the
operation's end conditions (a drained node's pods Running elsewhere) hold for a stable window.

Prometheus failing is not an outcome here: `PrometheusUnavailable` propagates, so the run machinery can
retry the step and, at the end, escalate with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from agent.schemas import Incident
from tools.metrics import MetricsSettings, PrometheusMetrics

Observe = Callable[[], dict[str, float]]

# (signal, healthy below this). Service-wide signals come from Prometheus (tools/metrics.py); the
# cluster's (`pods_on_node`, `replicas_not_ready`) from the cluster port's `observe`.
_RESTART = (
    ("http_5xx_rate", 0.01),
    ("pod_cpu_skew", 2.0),  # the busiest pod against the mean of the service's other pods
    ("pod_memory_skew", 1.5),
    ("pod_restarts", 1.0),
)
SYMPTOMS: dict[str, tuple[tuple[str, float], ...]] = {
    "apply_connection_liveness_template": (("http_408_rate", 0.003),),
    "scale_out": (("http_429_rate", 0.02), ("queue_depth", 50.0)),
    "shift_traffic": (("ttft_p95_s", 2.5),),
    "restart_pod": _RESTART,
    "rollout_restart": _RESTART,
    "cordon_and_evict": (("http_5xx_rate", 0.01), ("pods_on_node", 1.0)),
    "delete_deployment": (("http_5xx_rate", 0.01),),  # the bad deployment's failures end with it
}
# Must hold at the end whatever the baseline said: the evicted pods are back, Running elsewhere.
END_CONDITIONS: dict[str, tuple[tuple[str, float], ...]] = {
    "cordon_and_evict": (("replicas_not_ready", 1.0),),
}
CLUSTER_SIGNALS = frozenset({"pods_on_node", "replicas_not_ready"})


def _abnormal(values: dict[str, float | None], name: str, limit: float) -> bool:
    value = values.get(name)
    return value is not None and value >= limit


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


class Verifier:
    """The `SlaVerifier` port on Prometheus (and the cluster's own observations for drains)."""

    def __init__(
        self,
        metrics: PrometheusMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.metrics = metrics
        self.settings: MetricsSettings = metrics.settings
        self._clock, self._sleep = clock, sleep

    def _read(self, plan: dict[str, Any], incident: Incident, observe: Observe | None) -> dict[str, float | None]:
        names = [name for name, _ in SYMPTOMS.get(plan.get("operation", ""), ()) if name not in CLUSTER_SIGNALS]
        values: dict[str, float | None] = self.metrics.measure(plan, incident, ["sla", *names])
        if observe is not None:
            values.update(observe())
        return values

    def baseline(self, plan: dict[str, Any], incident: Incident, observe: Observe | None = None) -> dict[str, Any]:
        """The symptoms and the SLA right before the action (call it before the write)."""
        values = self._read(plan, incident, observe)
        return {"at": datetime.now(UTC).isoformat(), "values": values}

    def verify(
        self, plan: dict[str, Any], incident: Incident, baseline: dict[str, Any] | None, observe: Observe | None = None
    ) -> dict[str, Any]:
        s = self.settings
        operation = plan.get("operation", "")
        before: dict[str, float | None] = dict((baseline or {}).get("values") or {})
        symptoms = SYMPTOMS.get(operation, ())
        # Without a baseline (Prometheus was down before the action) every symptom is checked.
        checked = [(n, lim) for n, lim in symptoms if not before or before.get(n) is None or _abnormal(before, n, lim)]
        abnormal_before = [n for n, lim in symptoms if _abnormal(before, n, lim)]
        sla_before = before.get("sla")
        sla_was_low = sla_before is None or sla_before < s.sla_target
        if before and not sla_was_low and not abnormal_before:
            shown = ", ".join(f"{n} {_fmt(before.get(n))} (< {lim:g})" for n, lim in symptoms)
            return {
                "status": "nothing_to_verify",
                "reason": f"nothing to verify: before {operation}, SLA {_fmt(before.get('sla'))} met its "
                f"target {s.sla_target} and no symptom it addresses was abnormal ({shown or 'none defined'})",
                "baseline": before,
            }
        conditions = [*checked, *END_CONDITIONS.get(operation, ())]
        started, holding_since = self._clock(), None
        samples: list[dict[str, Any]] = []
        while True:
            now_values = self._read(plan, incident, observe)
            now = self._clock()
            sla = now_values.get("sla")
            healthy = sla is not None and sla >= s.sla_target
            healthy = healthy and all((now_values.get(n) or 0.0) < lim for n, lim in conditions)
            samples.append({"t_s": round(now - started, 1), **now_values})
            if healthy:
                holding_since = now if holding_since is None else holding_since
                if now - holding_since >= s.stable_s:
                    recovered_at = time.time() - (now - holding_since)
                    return self._result("verified", before, now_values, samples, conditions, incident, recovered_at)
            else:
                holding_since = None
            if now - started >= s.deadline_s:
                if all(x.get("sla") is None for x in samples):
                    where = self.metrics.matchers(incident, plan)
                    return {
                        "status": "unverified",
                        "reason": f"SLA unverified: Prometheus has no data for {{{where}}}",
                        "baseline": before,
                    }
                return self._result("not_recovered", before, now_values, samples, conditions, incident, None)
            self._sleep(s.poll_s)

    def _result(
        self,
        status: str,
        before: dict[str, float | None],
        last: dict[str, float | None],
        samples: list[dict[str, Any]],
        conditions: list[tuple[str, float]],
        incident: Incident,
        recovered_at: float | None,
    ) -> dict[str, Any]:
        s = self.settings
        sla = f"SLA {_fmt(before.get('sla'))} -> {_fmt(last.get('sla'))} (target {s.sla_target})"
        symptoms = "; ".join(
            f"{n} {_fmt(before.get(n))} -> {_fmt(last.get(n))} (must be < {lim:g})" for n, lim in conditions
        )
        if status == "verified":
            reason = f"{sla}, held for {s.stable_s:g} s"
        else:
            reason = f"not recovered within {s.deadline_s:g} s: {sla}"
        out: dict[str, Any] = {
            "status": status,
            "reason": f"{reason}; {symptoms}" if symptoms else reason,
            "baseline": before,
            "baseline_sla": before.get("sla"),
            "sla": last.get("sla"),
            "sla_target": s.sla_target,
            "checked": [n for n, _ in conditions],
            "samples": samples[-20:],
        }
        if recovered_at is not None:
            out["recovered_at"] = datetime.fromtimestamp(recovered_at, UTC).isoformat()
            if incident.started_at is not None:
                out["ttm_s"] = round(recovered_at - incident.started_at.timestamp(), 1)
        return out
