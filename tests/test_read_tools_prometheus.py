"""The tool loop's `serving_metrics` tool against a real Prometheus (the fixture of tests/test_metrics.py):
validated labels become the selector, each value is a finding with its query, no data is a gap."""

from __future__ import annotations

import json

from tests.test_metrics import prometheus  # noqa: F401  (the module's real Prometheus)
from tests.waiting import until
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
