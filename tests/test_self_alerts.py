"""deploy/prometheus/mitigate-alerts.yml: the rules load in Debian's promtool and pass their unit tests
(synthetic series through the real rule engine), and a real Prometheus scraping a real `mitigate serve`
fires the reject-surge alert when a wrong Alertmanager token keeps being refused — and not the
no-worker alert, since the service's workers are alive."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.waiting import until

RULES = ROOT / "deploy" / "prometheus" / "mitigate-alerts.yml"
MITIGATE = str(Path(sys.executable).with_name("mitigate"))
pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="needs Debian's prometheus package")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_rules_load_and_pass_their_unit_tests() -> None:
    subprocess.run(["promtool", "check", "rules", str(RULES)], check=True, capture_output=True)
    tests = subprocess.run(
        ["promtool", "test", "rules", "mitigate-alerts.test.yml"], cwd=RULES.parent, capture_output=True, text=True
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr


def _firing(prometheus: str) -> list[dict[str, str]]:
    alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return [a["labels"] | {"state": a["state"]} for a in alerts]


def _serving(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_reject_surge_fires_in_a_real_prometheus_scraping_mitigate(tmp_path: Path) -> None:
    port, prom_port = _port(), _port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MITIGATE_")}
    env |= {
        "MITIGATE_STATE_DIR": str(tmp_path / "state"),
        "MITIGATE_ALERTMANAGER_TOKEN": "right",
        "MITIGATE_ENGINE": "rulebook",
    }
    # The shipped rules with their `for:` durations cut to 0 s (the expressions are unchanged).
    (tmp_path / "rules.yml").write_text(re.sub(r"for: \S+", "for: 0s", RULES.read_text()))
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "rule_files: [rules.yml]\n"
        f"scrape_configs: [{{job_name: mitigate, static_configs: [{{targets: ['127.0.0.1:{port}']}}]}}]\n"
    )
    server = subprocess.Popen([MITIGATE, "serve", "--port", str(port)], env=env, stderr=subprocess.DEVNULL)
    prometheus = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base, prom = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{prom_port}"
    try:
        until(lambda: _serving(f"{base}/healthz") and _serving(f"{prom}/-/ready"), "mitigate and Prometheus", 120)
        wrong = {"Authorization": "Bearer wrong"}

        def post_wrong(count: int) -> None:
            for _ in range(count):
                assert httpx.post(f"{base}/webhooks/alertmanager", json={}, headers=wrong).status_code == 401

        post_wrong(3)  # the series exists, and Prometheus has scraped it, before the surge

        def scraped() -> bool:
            query = 'mitigate_requests_rejected_total{door="alertmanager",code="401"}'
            return bool(httpx.get(f"{prom}/api/v1/query", params={"query": query}).json()["data"]["result"])

        until(scraped, "the first reject scraped", 60)
        assert not [a for a in _firing(prom) if a["alertname"] == "MitigateRejectSurge"]
        post_wrong(40)

        def surge() -> bool:
            return any(
                a["alertname"] == "MitigateRejectSurge" and a["door"] == "alertmanager" and a["code"] == "401"
                for a in _firing(prom)
                if a["state"] == "firing"
            )

        until(surge, "MitigateRejectSurge firing", 60)
        names = {a["alertname"] for a in _firing(prom)}
        assert "MitigateNoWorker" not in names and "MitigateQueueStuck" not in names
        up = httpx.get(f"{prom}/api/v1/query", params={"query": "mitigate_database_up"}).json()["data"]["result"]
        assert up and up[0]["value"][1] == "1"
    finally:
        for proc in (prometheus, server):
            proc.terminate()
            proc.wait(timeout=60)
