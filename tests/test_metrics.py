"""tools/metrics.py against a real Prometheus (scripts/monitoring) scraping a small exporter whose
success and error rates the test sets: verification passes only after a stable window, ends
`not_recovered` when the SLA stays low, and is `unverified` without data or without Prometheus."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, MetricsHandler
from prometheus_client.core import CounterMetricFamily

from agent.schemas import Alert, Incident
from tests.conftest import ROOT
from tests.waiting import until
from tools.metrics import MetricsSettings, PrometheusMetrics, PrometheusUnavailable, _matchers
from tools.verification import Verifier


class Traffic:
    """gateway_requests_total for model `m`: 20 requests/s, of which `error_share` get a 500."""

    def __init__(self) -> None:
        self.error_share = 0.0
        self.counts = {"200": 0.0, "500": 0.0, "404": 0.0}
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.counts["500"] += 2 * self.error_share
            self.counts["200"] += 2 * (1 - self.error_share)
            self.counts["404"] += 1.0  # client errors: never part of the SLA

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("gateway_requests", "test", labels=["namespace", "model", "code"])
        for code, value in self.counts.items():
            family.add_metric(["ns", "m", code], value)
        yield family

    def stop(self) -> None:
        self._stop.set()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Traffic]]:
    tmp = tmp_path_factory.mktemp("prom")
    traffic = Traffic()
    registry = CollectorRegistry()
    registry.register(traffic)  # type: ignore[arg-type]
    server = ThreadingHTTPServer(("127.0.0.1", 0), MetricsHandler.factory(registry))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (tmp / "token").write_text("unused")
    monitoring = str(ROOT / "scripts" / "monitoring")
    subprocess.run([monitoring, "up", str(tmp), "http://127.0.0.1:9/unused", str(tmp / "token")], check=True)
    subprocess.run([monitoring, "target", str(tmp), "test", f"127.0.0.1:{server.server_address[1]}"], check=True)
    url = (tmp / "prometheus.url").read_text().strip()
    try:
        probe = PrometheusMetrics(url, MetricsSettings(window="3s"))
        until(lambda: probe._value('sum(rate(gateway_requests_total{model="m"}[3s]))'), "the first scrapes", 30)
        yield url, traffic
    finally:
        traffic.stop()
        server.shutdown()
        subprocess.run([monitoring, "down", str(tmp)], capture_output=True)


def _incident(model: str = "m", started_ago_s: float = 30) -> Incident:
    return Incident(
        id="I-1",
        title="SLA burn",
        alert=Alert(status="firing", labels={"alertname": "SLABurn", "namespace": "ns", "model": model}),
        started_at=datetime.now(UTC) - timedelta(seconds=started_ago_s),
    )


def _metrics(url: str, **settings: Any) -> PrometheusMetrics:
    return PrometheusMetrics(url, MetricsSettings(**({"window": "5s", "poll_s": 0.5} | settings)))


def _verifier(url: str, **settings: Any) -> Verifier:
    return Verifier(_metrics(url, **settings))


SICK = {"values": {"sla": 0.8, "http_5xx_rate": 0.2}}  # a baseline taken while the service was failing


PLAN = {"operation": "rollout_restart", "target": {"kind": "deployment", "namespace": "ns", "name": "m"}}


def test_verified_only_once_the_sla_and_the_symptom_hold_for_the_stable_window(prometheus):
    url, traffic = prometheus
    traffic.error_share = 0.0
    until(lambda: (_metrics(url)._value(_metrics(url).sla_query('model="m"')) or 0) >= 0.999, "a healthy SLA", 40)
    started = time.monotonic()
    result = _verifier(url, stable_s=3, deadline_s=30).verify(PLAN, _incident(), SICK)
    assert result["status"] == "verified", result
    assert time.monotonic() - started >= 3  # it waited for the stable window
    assert result["sla"] >= 0.99 and result["ttm_s"] > 0
    assert "http_5xx_rate" in result["reason"]


def test_an_sla_that_stays_low_is_not_recovered(prometheus):
    url, traffic = prometheus
    traffic.error_share = 0.2
    until(lambda: (_metrics(url)._value(_metrics(url).sla_query('model="m"')) or 1) < 0.9, "errors to show", 40)
    verifier = _verifier(url, stable_s=1, deadline_s=3)
    result = verifier.verify(PLAN, _incident(), verifier.baseline(PLAN, _incident()))
    assert result["status"] == "not_recovered", result
    assert result["sla"] < 0.9 and result["baseline_sla"] < 0.9
    assert "ttm_s" not in result
    traffic.error_share = 0.0


def test_client_errors_do_not_count_against_the_sla(prometheus):
    url, traffic = prometheus
    traffic.error_share = 0.0
    metrics = _metrics(url)
    # 404s are a third of all requests, yet the SLA is (close to) 1.
    until(lambda: (metrics._value(metrics.sla_query('model="m"')) or 0) >= 0.999, "a healthy SLA", 40)


def test_signals_tell_a_past_peak_from_the_present(prometheus):
    url, traffic = prometheus
    traffic.error_share = 0.5
    metrics = _metrics(url, lookback="60s")
    until(lambda: metrics.signals(_incident()).get("http_5xx_rate", 0) > 0.3, "errors in the signals", 40)
    traffic.error_share = 0.0
    signals = until(
        lambda: (s := metrics.signals(_incident())).get("http_5xx_rate", 1) < 0.01 and s, "errors to stop", 20
    )
    assert signals["http_5xx_rate_peak"] > 0.3  # it was bad, it is fine now: evidence for "no action"
    assert signals["sla"] > 0.99 and signals["sla_target"] == 0.99


def test_no_data_is_unverified_never_verified(prometheus):
    url, _ = prometheus
    result = _verifier(url, stable_s=0, deadline_s=1.5).verify(PLAN, _incident(model="no-such-model"), None)
    assert result["status"] == "unverified" and "no data" in result["reason"]


def test_a_prometheus_that_is_down_is_a_fault_not_an_outcome():
    """Verification does not turn a down Prometheus into "unverified" itself: the fault reaches the run
    machinery, which retries the step and escalates with the reason (tests/test_faults.py)."""
    verifier = _verifier("http://127.0.0.1:1", deadline_s=1)
    with pytest.raises(PrometheusUnavailable, match=r"127\.0\.0\.1:1"):
        verifier.verify(PLAN, _incident(), SICK)
    with pytest.raises(PrometheusUnavailable):
        verifier.metrics.signals(_incident())


def test_an_action_whose_symptom_was_never_abnormal_has_nothing_to_verify(prometheus):
    url, traffic = prometheus
    traffic.error_share = 0.0
    verifier = _verifier(url, stable_s=1, deadline_s=10)
    until(lambda: (verifier.metrics.measure(PLAN, _incident(), ["sla"])["sla"] or 0) >= 0.999, "a healthy SLA", 40)
    baseline = verifier.baseline(PLAN, _incident())  # healthy before the "restart"
    result = verifier.verify(PLAN, _incident(), baseline)
    assert result["status"] == "nothing_to_verify" and "nothing to verify" in result["reason"], result
    assert result["baseline"]["sla"] == baseline["values"]["sla"]


def test_the_baseline_is_the_one_taken_before_the_action(prometheus):
    """The report shows the SLA before the action, not a fresh reading after it (what a resumed verify did)."""
    url, traffic = prometheus
    traffic.error_share = 0.0
    verifier = _verifier(url, stable_s=1, deadline_s=20)
    until(lambda: (verifier.metrics.measure(PLAN, _incident(), ["sla"])["sla"] or 0) >= 0.999, "a healthy SLA", 40)
    result = verifier.verify(PLAN, _incident(), SICK)
    assert result["status"] == "verified" and result["baseline_sla"] == SICK["values"]["sla"]
    assert result["reason"].startswith(f"SLA {SICK['values']['sla']:.4g} -> ")


def test_label_values_never_become_promql():
    hostile = Incident(
        id="I-2",
        title="x",
        alert=Alert(
            status="firing", labels={"alertname": "A", "namespace": "ns", "model": 'm"}) or vector(1) or {x="'}
        ),
    )
    assert _matchers(hostile) == 'namespace="ns"'  # the model label is refused, not quoted into the query
