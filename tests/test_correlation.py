"""One root cause, one incident. Two alerts from one bad node, for two models (two Alertmanager groups),
through the real Alertmanager into the real server: one incident, the second stored as correlated with
the reason. And the alerts a run's own action causes (429s while a drained node's pods move) join that
run's incident instead of paging again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from api.settings import Settings
from tests.approvers import TOKENS, approvers_file
from tests.conftest import ROOT
from tests.fakes import FakeCluster, HeldVerifier, fake_world
from tests.test_service_restart import TOKEN, _free_port, _get
from tests.waiting import until


def _post(url: str, body: Any) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_two_alerts_from_one_bad_node_through_alertmanager_are_one_incident(tmp_path: Path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MITIGATE_", "OPENAI_", "TEST_"))}
    env |= {
        "MITIGATE_DATABASE_URL": f"sqlite:///{tmp_path}/svc.db",
        "MITIGATE_ENGINE": "rulebook",
        "MITIGATE_ALERTMANAGER_TOKEN": TOKEN,
        "MITIGATE_API_TOKEN": TOKEN,
        "TEST_CLUSTER_LOG": str(tmp_path / "cluster.log"),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.serve_app:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    monitoring, mon = str(ROOT / "scripts" / "monitoring"), tmp_path / "mon"
    (tmp_path / "token").write_text(TOKEN)
    try:
        until(lambda: _get(port, "/healthz") is not None, "the server", 120)
        webhook = f"http://127.0.0.1:{port}/webhooks/alertmanager"
        subprocess.run([monitoring, "up", str(mon), webhook, str(tmp_path / "token")], check=True, timeout=120)
        alertmanager = (mon / "alertmanager.url").read_text().strip()
        now = datetime.now(UTC).isoformat()
        alerts = [
            {
                "labels": {
                    "alertname": "GPUXidErrors",
                    "namespace": "llm-serving",
                    "model": model,
                    "deployment": f"{model}-eastus",
                    "node": "gpu-node-3",
                },
                "annotations": {"summary": f"XID 79 on gpu-node-3: {model} pods there fail, still failing"},
                "startsAt": now,
            }
            for model in ("mixtral-8x7b", "llama3-8b")
        ]
        _post(f"{alertmanager}/api/v2/alerts", alerts[:1])
        first = until(lambda: _get(port, "/incidents"), "the first alert's incident", 60)
        _post(f"{alertmanager}/api/v2/alerts", alerts[1:])
        listed = until(lambda: (i := _get(port, "/incidents")) and len(i) == 2 and i, "the second alert", 60)
    finally:
        subprocess.run([monitoring, "down", str(mon)], capture_output=True, timeout=60)
        server.terminate()
        server.wait(timeout=60)
    primary = first[0]["id"]
    correlated = next(i for i in listed if i["id"] != primary)
    assert correlated["status"] == "correlated"
    assert next(i for i in listed if i["id"] == primary)["status"] != "correlated"
    # The reason is stored with it, and the open incident lists it (fetched from the store directly:
    # the server is gone).
    from api.wiring import open_store
    from store.incident_queries import IncidentQueries

    store = open_store(Settings(database_url=f"sqlite:///{tmp_path}/svc.db"))
    timeline = IncidentQueries(store.sessions).timeline(primary)
    assert timeline is not None and len(timeline["runs"]) == 1
    assert timeline["correlated"] == [
        {
            "id": correlated["id"],
            "title": correlated["title"],
            "reason": f"shares node:gpu-node-3 with open incident {primary}",
        }
    ]
    assert not (tmp_path / "cluster.log").exists()  # one cordon waits for one approval; nothing else acted


def _alert(name: str, group: str, fingerprint: str, **labels: str) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": group,
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": name, "namespace": "llm-serving", **labels},
                "annotations": {"summary": f"{name} {labels}"},
                "startsAt": datetime.now(UTC).isoformat(),
                "fingerprint": fingerprint,
            }
        ],
    }


def test_alerts_caused_by_mitigates_own_drain_join_its_incident(tmp_path: Path):
    cluster = FakeCluster(details={"owners": ["llm-serving/mixtral-eastus"]})  # what the drain moved
    verifier = HeldVerifier()
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/svc.db",
        engine="rulebook",
        alertmanager_token=SecretStr("am"),
        api_token=SecretStr("api"),
        approvers_file=approvers_file(tmp_path),
    )
    am, api = {"Authorization": "Bearer am"}, {"Authorization": "Bearer api"}
    with TestClient(create_app(settings, context_factory=fake_world(cluster, verifier))) as client:
        bad_node = _alert("GPUXidErrors", "g-node", "n1", node="gpu-node-5")
        bad_node["alerts"][0]["annotations"]["summary"] = "XID 79 on node gpu-node-5, its pods fail, still failing"
        incident = client.post("/webhooks/alertmanager", json=bad_node, headers=am).json()["accepted"][0]
        run = until(
            lambda: (t := client.get(f"/incidents/{incident}", headers=api).json())["runs"] and t["runs"][0], "run"
        )
        until(lambda: client.get(f"/runs/{run['id']}", headers=api).json()["status"] == "awaiting_approval", "approval")
        headers = {"Authorization": f"Bearer {TOKENS['alice']}"}
        assert client.post(f"/runs/{run['id']}/approve", json={}, headers=headers).status_code == 202
        assert verifier.verifying.wait(30)  # drained, now verifying
        # The pods of mixtral moved: its 429s come from a different Alertmanager group and name no node.
        throttled = _alert("TooManyRequests", "g-mixtral", "t1", deployment="mixtral-eastus", model="mixtral-8x7b")
        joined = client.post("/webhooks/alertmanager", json=throttled, headers=am).json()
        # An alert about something the drain did not touch is a new problem.
        other = _alert("TooManyRequests", "g-llama", "t2", deployment="llama3-8b-westus", model="llama3-8b")
        fresh = client.post("/webhooks/alertmanager", json=other, headers=am).json()
        verifier.release.set()
        until(lambda: client.get(f"/runs/{run['id']}", headers=api).json()["status"] == "mitigated", "the drain")
        # Recovery verified: a new alert on the same deployment is a new problem again.
        after = client.post(
            "/webhooks/alertmanager",
            json=_alert("TooManyRequests", "g-mixtral-2", "t3", deployment="mixtral-eastus", model="mixtral-8x7b"),
            headers=am,
        ).json()
        timeline = client.get(f"/incidents/{incident}", headers=api).json()
    assert joined["correlated"] == [incident] and joined["accepted"] == []
    assert fresh["accepted"] and fresh["correlated"] == []
    assert after["accepted"] and after["correlated"] == []
    [reason] = [c["reason"] for c in timeline["correlated"]]
    assert (
        reason
        == f"likely caused by mitigate's own action: run {run['id']} changed deployment:llm-serving/mixtral-eastus"
    )
    # One drain; the correlated 429s started nothing of their own.
    assert [p["operation"] for p in cluster.executed][:1] == ["cordon_and_evict"]
    assert [p for p in cluster.executed if p["operation"] == "cordon_and_evict"] == cluster.executed[:1]


def test_a_region_wide_alert_gathers_the_deployment_alerts_of_its_region_and_one_deployment_is_one_incident(
    tmp_path: Path,
):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/svc.db",
        engine="rulebook",
        alertmanager_token=SecretStr("am"),
        api_token=SecretStr("api"),
        approvers_file=approvers_file(tmp_path),
    )
    am, api = {"Authorization": "Bearer am"}, {"Authorization": "Bearer api"}
    held = HeldVerifier()  # keeps every run open (verifying) while the alerts arrive
    with TestClient(create_app(settings, context_factory=fake_world(FakeCluster(), held))) as client:  # type: ignore[arg-type]
        region = _alert("RegionDegraded", "g-region", "r1", region="eastus")
        region_id = client.post("/webhooks/alertmanager", json=region, headers=am).json()["accepted"][0]
        in_region = _alert("TooManyRequests", "g-a", "a1", deployment="mixtral-eastus", region="eastus")
        joined_region = client.post("/webhooks/alertmanager", json=in_region, headers=am).json()
        elsewhere = _alert("TooManyRequests", "g-b", "b1", deployment="llama3-8b-westus", region="westus")
        west_id = client.post("/webhooks/alertmanager", json=elsewhere, headers=am).json()["accepted"][0]
        same_deployment = _alert("KVCacheSaturated", "g-c", "c1", deployment="llama3-8b-westus", model="llama3-8b")
        joined_deployment = client.post("/webhooks/alertmanager", json=same_deployment, headers=am).json()
        held.release.set()
        timeline = client.get(f"/incidents/{region_id}", headers=api).json()
        west = client.get(f"/incidents/{west_id}", headers=api).json()
    assert joined_region["correlated"] == [region_id]
    assert [c["reason"] for c in timeline["correlated"]] == [f"shares region:eastus with open incident {region_id}"]
    assert joined_deployment["correlated"] == [west_id]
    expected = f"shares deployment:llm-serving/llama3-8b-westus with open incident {west_id}"
    assert [c["reason"] for c in west["correlated"]] == [expected]
