"""The tool loop's `serving_metrics` and `metric_trend` tools against a real Prometheus (the fixture of
tests/test_metrics.py): validated labels become the selector, each value or trend is a finding with its
query (and range), no data is a gap."""

from __future__ import annotations

import json
from typing import Any

from tests.test_metrics import prometheus  # noqa: F401  (the module's real Prometheus)
from tests.waiting import until
from tools.investigate import Bounds
from tools.metrics import MetricsSettings, PrometheusMetrics
from tools.read_tools.catalog import READ_TOOLS
from tools.read_tools.registry import ReadSources


def test_serving_metrics_reads_prometheus_and_states_what_has_no_data(prometheus):  # noqa: F811
    url, traffic = prometheus
    traffic.error_share = 0.5
    sources = ReadSources(frozenset({"ns"}), metrics=PrometheusMetrics(url, MetricsSettings(window="3s")))
    arguments = json.dumps({"namespace": "ns", "model": "m", "signals": ["http_5xx_rate", "queue_depth"]})

    def errors_seen():
        outcome = READ_TOOLS.call("serving_metrics", arguments, sources)
        found = [f for f in outcome.findings if f["data"]["name"] == "http_5xx_rate" and f["data"]["value"] > 0.3]
        return (outcome, found[0]) if found else None

    outcome, finding = until(errors_seen, "the error rate in the tool's findings", 20)
    traffic.error_share = 0.0
    assert outcome.ok and finding["source"]["type"] == "prometheus"
    assert 'namespace="ns",model="m"' in finding["source"]["query"] and finding["source"]["range"] == "instant"
    assert [g["reason"].split(" (")[0] for g in outcome.gaps] == ["no data for queue_depth"]


def test_metric_trend_runs_the_investigations_trend_and_says_steady_ongoing_and_no_data(prometheus):  # noqa: F811
    url, traffic = prometheus
    metrics = PrometheusMetrics(url, MetricsSettings(window="3s"))
    sources = ReadSources(frozenset({"ns"}), trends=metrics, bounds=Bounds(trend_step_s=1, timeout_s=2))
    arguments = json.dumps({"namespace": "ns", "model": "m", "signals": ["http_5xx_rate", "queue_depth"], "minutes": 1})

    def state(wanted: str) -> Any:
        outcome = READ_TOOLS.call("metric_trend", arguments, sources)
        found = [f for f in outcome.findings if f["data"]["series"] == "http_5xx_rate"]
        if not found or found[0]["data"]["state"] != wanted:
            return None
        if wanted == "steady" and (found[0]["data"]["extreme"] > 0.01 or found[0]["data"]["points"] < 20):
            return None  # errors still in the minute, or too short a history: the baseline would not be clean
        return outcome, found[0]

    traffic.error_share = 0.0  # the module's Prometheus may have seen errors up to a minute ago: a clean minute
    steady, _ = until(lambda: state("steady"), "a steady error rate", 120)
    # A series the model asked for that has no data is said, not left out.
    assert steady.ok and [g["reason"].split(" over")[0] for g in steady.gaps] == ["no data for queue_depth"]
    traffic.error_share = 0.4
    try:
        _, ongoing = until(lambda: state("ongoing"), "the error rate moving", 30)
    finally:
        traffic.error_share = 0.0
    assert ongoing["kind"] == "metric_trend" and ongoing["at"] == ongoing["data"]["started"]
    assert ongoing["source"]["type"] == "prometheus" and set(ongoing["source"]["range"]) == {"start", "end", "step"}
    assert ongoing["source"]["query"] == metrics.series(["http_5xx_rate"], 'namespace="ns",model="m"')["http_5xx_rate"]
    assert ongoing["data"]["last"] > ongoing["data"]["baseline"]
