"""kill -9 of `mitigate serve` at each step of the graph, on the real API server: after a restart the run
finishes, once. The deployment is scaled from 2 to 3 replicas by `scale_out` (current + 1): a repeated
write would leave 4, a lost one 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.kube_fixture import ControlPlane
from tests.test_service_restart import TOKEN, _free_port, _get
from tests.waiting import until

pytestmark = pytest.mark.kube
NS = "llm-serving"
STEPS = ["intake", "retrieve", "classify", "plan", "preflight", "guard", "act", "verify", "report"]


def _serve(tmp_path: Path, port: int, kubeconfig: Path, crash_at: str | None) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MITIGATE_", "OPENAI_", "TEST_"))}
    env |= {
        "MITIGATE_DATABASE_URL": f"sqlite:///{tmp_path}/svc.db",
        "MITIGATE_ENGINE": "rulebook",
        "MITIGATE_ALERTMANAGER_TOKEN": TOKEN,
        "MITIGATE_API_TOKEN": TOKEN,
        "TEST_KUBECONFIG": str(kubeconfig),
        "TEST_CRASH_MARK": str(tmp_path / "crashed"),
    }
    if crash_at:
        env["TEST_CRASH_AT"] = crash_at
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.serve_app:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    until(lambda: _get(port, "/healthz") is not None or proc.poll() is not None, "the server to answer", 120)
    return proc


def _alert(port: int, deployment: str) -> str:
    payload = {
        "version": "4",
        "groupKey": f"g-{deployment}",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "startsAt": "2026-12-03T10:00:00Z",
                "fingerprint": deployment,
                "labels": {"alertname": "TooManyRequests", "namespace": NS, "deployment": deployment},
                "annotations": {"summary": "429 throttling and queue backlog on every replica, still growing"},
            }
        ],
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/webhooks/alertmanager",
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        accepted: list[str] = json.loads(response.read())["accepted"]
    return accepted[0]


@pytest.mark.parametrize("step", STEPS)
def test_kill_9_at_each_step_finishes_the_run_exactly_once(control_plane: ControlPlane, tmp_path: Path, step: str):
    from kubernetes import client

    apps = client.AppsV1Api(control_plane.admin())
    name = f"llm-{uuid.uuid4().hex[:8]}"
    template = {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "e", "image": "x"}]}}
    spec = {"replicas": 2, "selector": {"matchLabels": {"app": name}}, "template": template}
    apps.create_namespaced_deployment(NS, {"metadata": {"name": name}, "spec": spec})
    port = _free_port()
    server = _serve(tmp_path, port, control_plane.mitigate_kubeconfig, crash_at=step)
    try:
        incident_id = _alert(port, name)
        assert server.wait(timeout=120) == -9  # it died at the step, by SIGKILL
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=30)
    assert (tmp_path / "crashed").read_text() == step
    server = _serve(tmp_path, port, control_plane.mitigate_kubeconfig, crash_at=None)
    try:

        def finished() -> dict[str, Any] | None:
            body = _get(port, f"/incidents/{incident_id}")
            return body if body and body["runs"] and body["runs"][0]["status"] == "mitigated" else None

        body = until(finished, f"the run killed at {step} to finish after the restart", 90)
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert len(body["runs"]) == 1 and [a["status"] for a in body["runs"][0]["actions"]] == ["executed"]
    assert apps.read_namespaced_deployment(name, NS).spec.replicas == 3  # written once: not 2, not 4
