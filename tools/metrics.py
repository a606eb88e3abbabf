"""SLA and serving telemetry from Prometheus (prometheus-api-client), for triage and for verification.

SLA = successful requests / valid requests, where client-side 4xx are not valid requests (408 and 429
are the service's failures and count against it), from the gateway's `gateway_requests_total`.

- `signals(incident)`: what the dashboards show now, as the rulebook's signal names, with `<name>_peak`
  over a lookback so that "it was bad and is fine now" can be told from "it is still bad".
- `measure(plan, incident, names)`: the same signals for one plan's service, for verification
  (tools/verification.py: baseline before the action, symptoms after it).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agent.schemas import Incident

CLIENT_ERRORS = "400|401|403|404|413|422"
# A label value mitigate will put into a PromQL selector; anything else is refused, never quoted.
SAFE_LABEL_VALUE = re.compile(r"^[A-Za-z0-9_.:/-]{1,200}$")


def _skew(series: str) -> str:
    """PromQL: the largest of these series over the mean of the rest; no answer with fewer than two."""
    return f"(max({series}) / ((sum({series}) - max({series})) / (count({series}) - 1))) and on() (count({series}) > 1)"


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
    ) -> None:
        from prometheus_api_client import PrometheusConnect

        self.url = url
        self.settings = settings or MetricsSettings()
        self._prom = PrometheusConnect(url=url, disable_ssl=False, timeout=math.ceil(timeout_s))

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
            # The busiest pod against the mean of the others: one pod gone bad (a CPU hog, a leak), not the
            # load. (Not the median: with two pods the median is their midpoint, so max/median stays < 2.)
            "pod_cpu_skew": _skew(f"rate(container_cpu_usage_seconds_total{{{where}}}[{w}])"),
            "pod_memory_skew": _skew(f"container_memory_working_set_bytes{{{where}}}"),
        }

    TREND_SERIES = (
        "sla",
        "http_5xx_rate",
        "http_429_rate",
        "http_408_rate",
        "ttft_p95_s",
        "queue_depth",
        "kv_cache_usage",
    )

    def trend_queries(self, incident: Incident) -> dict[str, str]:
        """The incident's key series as PromQL, for investigation's trend over the last hour."""
        queries = self._queries(_matchers(incident))
        return {name: queries[name] for name in self.TREND_SERIES}

    def series(self, names: list[str], where: str) -> dict[str, str]:
        """These serving signals as PromQL for label matchers `where` (built only from values that
        matched SAFE_LABEL_VALUE): the LLM's `metric_trend` tool asks for them by name, never by query."""
        queries = self._queries(where)
        return {name: queries[name] for name in names if name in queries}

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

    def instant(self, names: list[str], where: str) -> list[tuple[str, str, float | None]]:
        """(name, PromQL, value) of these serving signals for label matchers `where` (built only from
        values that matched SAFE_LABEL_VALUE), at one instant. Raises PrometheusUnavailable."""
        queries = self._queries(where)
        at = datetime.now(UTC)
        return [(name, queries[name], self._value(queries[name], at)) for name in names if name in queries]

    def signal_names(self) -> list[str]:
        return list(self._queries(""))

    # ---- what verification reads ---------------------------------------------------------------
    def matchers(self, incident: Incident, plan: dict[str, Any] | None = None) -> str:
        return _matchers(incident, plan)

    def measure(self, plan: dict[str, Any], incident: Incident, names: list[str]) -> dict[str, float | None]:
        """These signals of the plan's service now, evaluated at one instant; None where there is no data.
        Raises PrometheusUnavailable when Prometheus does not answer."""
        queries = self._queries(_matchers(incident, plan))
        at = datetime.now(UTC)
        return {name: self._value(queries[name], at) for name in names if name in queries}
