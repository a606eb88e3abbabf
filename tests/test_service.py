"""The service through HTTP: Alertmanager webhook, signed incidents, REST, approvals, health, metrics."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from api.security import sign
from api.settings import Settings
from tests.approvers import TOKENS, approvers_file
from tests.fakes import FakeCluster, HeldVerifier, fake_world
from tests.waiting import until

AM_TOKEN, API_TOKEN, HMAC_KEY = "am-token-123", "api-token-456", "hmac-key-789"


def _settings(tmp_path: Path, **extra: Any) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path}/svc.db",
        engine="rulebook",
        alertmanager_token=SecretStr(AM_TOKEN),
        api_token=SecretStr(API_TOKEN),
        incident_webhook_secret=SecretStr(HMAC_KEY),
        approvers_file=approvers_file(tmp_path),
        **extra,
    )


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()


@pytest.fixture
def client(tmp_path: Path, cluster: FakeCluster) -> Iterator[TestClient]:

    with TestClient(create_app(_settings(tmp_path), context_factory=fake_world(cluster))) as test_client:
        yield test_client


def _am_payload(status: str = "firing", alertname: str = "EngineRequestsWaitingHigh", **labels: str) -> dict:
    alert = {
        "status": status,
        "labels": {"alertname": alertname, "namespace": "llm-serving", "deployment": "llama-70b", **labels},
        "annotations": {"summary": "429 throttling, queue backlog on all replicas"},
        "startsAt": "2026-11-24T10:00:00Z",
        "fingerprint": "abc123",
    }
    if status == "resolved":
        alert["endsAt"] = "2026-11-24T10:05:00Z"
    return {
        "version": "4",
        "groupKey": '{}:{alertname="X"}',
        "status": status,
        "receiver": "mitigate",
        "alerts": [alert],
    }


def _wait(client: TestClient, incident_id: str, predicate, deadline_s: float = 30) -> dict:
    deadline = time.monotonic() + deadline_s
    while True:
        body = client.get(f"/incidents/{incident_id}", headers={"Authorization": f"Bearer {API_TOKEN}"}).json()
        if predicate(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached: {json.dumps(body)[:2000]}")
        time.sleep(0.05)


def _am(client: TestClient, payload: dict, token: str = AM_TOKEN):
    return client.post("/webhooks/alertmanager", json=payload, headers={"Authorization": f"Bearer {token}"})


def test_alert_is_stored_triaged_and_deduplicated(client, cluster):
    first = _am(client, _am_payload())
    assert first.status_code == 202 and len(first.json()["accepted"]) == 1
    incident_id = first.json()["accepted"][0]
    second = _am(client, _am_payload())
    assert second.json() == {"accepted": [], "duplicates": [incident_id], "resolved": [], "correlated": []}
    body = _wait(client, incident_id, lambda b: b["runs"] and b["runs"][0]["status"] == "mitigated")
    assert len(body["runs"]) == 1 and len(cluster.executed) == 1
    run = body["runs"][0]
    assert [s["node"] for s in run["steps"]][:3] == ["intake", "retrieve", "classify"]
    assert run["actions"][0]["operation"] == "scale_out" and run["sla_checks"][0]["status"] == "verified"


def _alert(name: str, fingerprint: str, **labels: str) -> dict:
    payload = _am_payload(alertname=name, **labels)
    payload["alerts"][0]["fingerprint"] = fingerprint
    return payload


def test_alerts_of_one_group_while_its_incident_is_open_are_one_incident(tmp_path, cluster):
    verifier = HeldVerifier()  # the first incident stays open (verifying) until the group's alerts are in
    with TestClient(create_app(_settings(tmp_path), context_factory=fake_world(cluster, verifier))) as client:
        try:
            first = _am(client, _alert("EngineRequestsWaitingHigh", "f1")).json()["accepted"][0]
            joined = _am(client, _alert("KvCacheFull", "f2"))
            assert joined.json()["correlated"] == [first] and joined.json()["accepted"] == []
            again = _am(client, _alert("KvCacheFull", "f2"))  # Alertmanager repeats the group notification
            assert again.json()["duplicates"] == [first]
        finally:
            verifier.release.set()
        _closed_group_then_recurrence(client, cluster, first)


def _closed_group_then_recurrence(client: TestClient, cluster: FakeCluster, first: str) -> None:
    body = _wait(client, first, lambda b: b["runs"] and b["runs"][0]["status"] == "mitigated")
    assert len(cluster.executed) == 1 and len(body["runs"]) == 1
    listed = client.get("/incidents", headers={"Authorization": f"Bearer {API_TOKEN}"}).json()
    assert sorted(i["status"] for i in listed) == ["correlated", "mitigated"]
    assert "Also firing: KvCacheFull" in body["incident"]["description"]  # the triage saw both alerts
    # Once that incident is closed, the group's next alert is a new problem (a recurrence).
    later = _am(client, _alert("TooManyRequests", "f3"))
    assert len(later.json()["accepted"]) == 1 and later.json()["accepted"][0] != first


def test_correlation_can_be_switched_off(tmp_path, cluster):
    settings = _settings(tmp_path, alert_correlation_window_s=0, correlation_window_s=0, own_action_window_s=0)
    with TestClient(create_app(settings, context_factory=fake_world(cluster))) as c:
        a = _am(c, _alert("EngineRequestsWaitingHigh", "f1")).json()
        b = _am(c, _alert("KvCacheFull", "f2")).json()
    assert len(a["accepted"]) == 1 and len(b["accepted"]) == 1 and b["correlated"] == []


def test_a_blip_that_resolves_within_the_settle_time_is_triaged_as_resolved(tmp_path, cluster):
    settings = _settings(tmp_path, alert_settle_s=1.0)
    blip = _am_payload(alertname="High408Rate")
    blip["alerts"][0]["annotations"] = {"summary": "HTTP 408 rate on llama-70b streaming above 0.5%"}
    with TestClient(create_app(settings, context_factory=fake_world(cluster))) as c:
        started = time.monotonic()
        incident_id = _am(c, blip).json()["accepted"][0]
        resolved = json.loads(json.dumps(blip))
        resolved["status"] = resolved["alerts"][0]["status"] = "resolved"
        resolved["alerts"][0]["endsAt"] = "2026-11-24T10:01:00Z"
        assert _am(c, resolved).json()["resolved"] == [incident_id]
        body = _wait(c, incident_id, lambda b: b["runs"] and b["runs"][0]["report"])
        first_step = body["runs"][0]["steps"][0]
    assert time.monotonic() - started >= 1.0
    report = body["runs"][0]["report"]
    assert any("resolved" in e for e in report["plan"]["no_action_evidence"]), report["plan"]
    assert first_step["node"] == "intake" and cluster.executed == []


def test_resolved_notification_updates_the_incident(client):
    incident_id = _am(client, _am_payload()).json()["accepted"][0]
    resolved = _am(client, _am_payload("resolved"))
    assert resolved.json()["resolved"] == [incident_id]
    body = _wait(client, incident_id, lambda b: b["incident"]["alert"]["status"] == "resolved")
    assert body["incident"]["alert"]["endsAt"].startswith("2026-11-24T10:05")


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({"version": "4"}, "groupKey"),
        ({**_am_payload(), "alerts": []}, "alerts"),
        ({**_am_payload(), "version": "3"}, "version"),
    ],
)
def test_malformed_alerts_get_422_with_the_reason_and_store_nothing(client, payload, where):
    response = _am(client, payload)
    assert response.status_code == 422
    assert any(where in ".".join(map(str, e["loc"])) for e in response.json()["detail"]["errors"])
    assert client.get("/incidents", headers={"Authorization": f"Bearer {API_TOKEN}"}).json() == []


def test_missing_or_wrong_token_gets_401(client):
    assert _am(client, _am_payload(), token="wrong").status_code == 401
    assert client.post("/webhooks/alertmanager", json=_am_payload()).status_code == 401
    assert client.get("/incidents").status_code == 401
    assert client.get("/incidents", headers={"Authorization": f"Bearer {API_TOKEN}"}).json() == []


def test_signed_incident_webhook(client):
    body = json.dumps(
        {
            "id": "W-1",
            "title": "HTTP 408 on streaming, still failing",
            "alert": {"labels": {"alertname": "x", "namespace": "llm-serving", "deployment": "d-1"}},
        }
    )
    ts = str(int(time.time()))
    good = {
        "X-Mitigate-Timestamp": ts,
        "X-Mitigate-Signature": sign(HMAC_KEY, ts, body.encode()),
        "Content-Type": "application/json",
    }
    assert client.post("/webhooks/incident", content=body, headers=good).status_code == 202
    stale_ts = str(int(time.time()) - 3600)
    stale = {**good, "X-Mitigate-Timestamp": stale_ts, "X-Mitigate-Signature": sign(HMAC_KEY, stale_ts, body.encode())}
    assert client.post("/webhooks/incident", content=body, headers=stale).status_code == 401
    forged = {**good, "X-Mitigate-Signature": sign("other-key", ts, body.encode())}
    assert client.post("/webhooks/incident", content=body, headers=forged).status_code == 401
    tampered = body.replace("W-1", "W-2")
    assert client.post("/webhooks/incident", content=tampered, headers=good).status_code == 401
    _wait(client, "W-1", lambda b: b["runs"] and b["runs"][0]["status"] == "awaiting_approval")
    assert client.get("/incidents/W-2", headers={"Authorization": f"Bearer {API_TOKEN}"}).status_code == 404


def test_approval_over_rest_resumes_the_run_once(client, cluster):
    response = client.post(
        "/incidents",
        headers={"Authorization": f"Bearer {API_TOKEN}"},
        json={
            "id": "R-1",
            "title": "XID 79 on node aks-gpu-7, pods there failing, still failing",
            "alert": {"labels": {"alertname": "GPUXid", "node": "aks-gpu-7", "namespace": "llm-serving"}},
        },
    )
    run_id = response.json()["run_id"]
    _wait(client, "R-1", lambda b: b["runs"][0]["status"] == "awaiting_approval")
    assert cluster.executed == []
    shared = {"Authorization": f"Bearer {API_TOKEN}"}  # the shared API token reads, it cannot approve
    assert client.post(f"/runs/{run_id}/approve", json={}, headers=shared).status_code == 401
    alice = {"Authorization": f"Bearer {TOKENS['alice']}"}
    assert client.post(f"/runs/{run_id}/approve", json={"by": "bob"}, headers=alice).status_code == 422  # no `by`
    assert client.post(f"/runs/{run_id}/approve", json={}, headers=alice).status_code == 202
    body = _wait(client, "R-1", lambda b: b["runs"][0]["status"] == "mitigated")
    assert body["runs"][0]["actions"][0]["approvals"] == [{"by": "alice", "decision": "approve", "reason": ""}]
    again = client.post(f"/runs/{run_id}/approve", json={}, headers={"Authorization": f"Bearer {TOKENS['bob']}"})
    assert again.status_code == 409 and len(cluster.executed) == 1


def test_oversized_body_is_refused(client):
    huge = {"version": "4", "groupKey": "x" * 2_000_000, "status": "firing", "alerts": []}
    response = _am(client, huge)
    assert response.status_code == 413


def test_health_ready_and_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["ready"] and ready["checks"]["database"] == "ok" and ready["checks"]["retriever"] == "not_configured"
    incident_id = _am(client, _am_payload()).json()["accepted"][0]
    _am(client, _am_payload())
    _wait(client, incident_id, lambda b: b["runs"][0]["status"] == "mitigated")

    # The worker counts the outcome just after the run's final status is committed: wait for the count.
    def counted() -> str | None:
        text = client.get("/metrics").text
        return text if 'mitigate_runs_total{status="mitigated"} 1.0' in text else None

    text = until(counted, "the outcome to be counted", 30)
    assert 'mitigate_incidents_received_total{source="alertmanager"} 1.0' in text
    assert 'mitigate_alerts_deduplicated_total{source="alertmanager"} 1.0' in text
    assert 'mitigate_runs_total{status="mitigated"} 1.0' in text
    assert "mitigate_triage_seconds_count 1.0" in text
    # The queue, read from the database at scrape time: nothing waits, one run mitigated, none failed.
    assert 'mitigate_runs{status="mitigated"} 1.0' in text and 'mitigate_runs{status="failed"} 0.0' in text
    assert 'mitigate_runs{status="queued"} 0.0' in text and "mitigate_queue_oldest_age_seconds 0.0" in text
    assert "mitigate_worker_last_heartbeat_timestamp_seconds{replica=" in text
    assert 'mitigate_database_seconds_count{operation="ingest"} 2.0' in text


def _pd(event_type: str = "incident.triggered") -> dict:
    return {
        "event": {
            "id": "01E1",
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": "2026-11-24T10:00:00Z",
            "data": {
                "id": "PGR0VU2",
                "type": "incident",
                "title": "429 throttling, queue backlog on every replica of llama-70b",
                "status": "triggered",
                "urgency": "high",
                "service": {"id": "S1", "summary": "llm-serving"},
            },
        }
    }


def _pd_post(client: TestClient, payload: dict, secret: str = "pd-secret"):
    import hashlib
    import hmac

    body = json.dumps(payload).encode()
    signature = "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return client.post(
        "/webhooks/pagerduty",
        content=body,
        headers={"X-PagerDuty-Signature": f"v1=old,{signature}", "Content-Type": "application/json"},
    )


@pytest.fixture
def pd_client(tmp_path: Path) -> Iterator[TestClient]:
    settings = _settings(tmp_path, pagerduty_webhook_secret=SecretStr("pd-secret"))
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_pagerduty_webhook(pd_client):
    first = _pd_post(pd_client, _pd())
    assert first.status_code == 202 and first.json()["incident_id"] == "pd-PGR0VU2" and first.json()["run_id"]
    assert _pd_post(pd_client, _pd()).json()["duplicate"] is True
    assert _pd_post(pd_client, _pd(), secret="forged").status_code == 401
    assert _pd_post(pd_client, {"event": {"id": "x"}}).status_code == 422
    assert _pd_post(pd_client, _pd("incident.resolved")).json() == {"incident_id": "pd-PGR0VU2", "resolved": True}
    body = _wait(pd_client, "pd-PGR0VU2", lambda b: b["incident"]["alert"]["status"] == "resolved")
    assert body["source"] == "pagerduty"


def test_authenticated_alerts_are_never_rate_limited_and_people_are_limited_per_credential(tmp_path):
    def incident(i: int) -> dict:
        return {"id": f"RL-{i}", "title": "429 throttling, queue backlog on all replicas"}

    with TestClient(create_app(_settings(tmp_path, rate_limit_per_minute=3))) as limited:
        # Noise first: unauthenticated posts on every door are refused by authentication, counted nowhere.
        noise = [_am(limited, _am_payload(alertname=f"N{i}"), token="wrong").status_code for i in range(10)]
        noise += [limited.post("/incidents", json=incident(i)).status_code for i in range(10)]
        assert set(noise) == {401}
        alerts = [_am(limited, _am_payload(alertname=f"A{i}")).status_code for i in range(8)]
        assert alerts == [202] * 8  # Alertmanager is never told 429, whatever the limit
        shared = {"Authorization": f"Bearer {API_TOKEN}"}
        rest = [limited.post("/incidents", json=incident(i), headers=shared) for i in range(5)]
        assert [r.status_code for r in rest] == [202, 202, 202, 429, 429]
        assert int(rest[3].headers["retry-after"]) >= 1
        alice = {"Authorization": f"Bearer {TOKENS['alice']}"}  # another credential has its own allowance
        assert limited.post("/incidents", json=incident(9), headers=alice).status_code == 202
        metrics = limited.get("/metrics").text
    assert 'mitigate_requests_rejected_total{code="401",door="alertmanager"} 10.0' in metrics
    assert 'mitigate_requests_rejected_total{code="401",door="rest"} 10.0' in metrics
    assert 'mitigate_requests_rejected_total{code="429",door="rest"} 2.0' in metrics


def test_secrets_never_reach_the_logs(tmp_path, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(_settings(tmp_path))) as client:
        _am(client, _am_payload())
        _am(client, _am_payload(), token="wrong-token-guess")
    for secret in (AM_TOKEN, API_TOKEN, HMAC_KEY, "wrong-token-guess"):
        assert secret not in caplog.text


def test_the_queue_gauges_see_a_waiting_run(tmp_path):
    # An alert that must settle for an hour waits queued: the scrape reads it from the database.
    with TestClient(create_app(_settings(tmp_path, alert_settle_s=3600))) as waiting:
        assert _am(waiting, _am_payload()).status_code == 202
        time.sleep(1.1)  # the oldest queued run's age is what is measured, so some must pass
        text = waiting.get("/metrics").text
    assert 'mitigate_runs{status="queued"} 1.0' in text
    age = float(
        next(line for line in text.splitlines() if line.startswith("mitigate_queue_oldest_age_seconds ")).split()[1]
    )
    assert 1.0 <= age < 60
