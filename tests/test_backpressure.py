"""When the database cannot keep up, Alertmanager gets backpressure it retries (503 + Retry-After), never a
429, and nothing is lost: on the real PostgreSQL, another session holds a lock on the incidents table so
that the alert's commit cannot finish within MITIGATE_INGEST_WAIT_S; once the lock is gone, the alert
that was answered 503 is stored, and Alertmanager's retry is a duplicate of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from api.settings import Settings
from tests.db_urls import postgres_schema_url
from tests.fakes import FakeCluster, fake_world
from tests.waiting import until

pytestmark = pytest.mark.postgres
TOKEN = "bp-token"


@pytest.fixture
def database_url() -> Iterator[str]:
    with postgres_schema_url() as url:
        yield url


def _alert(name: str) -> dict:
    return {
        "version": "4",
        "groupKey": f"bp-{name}",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": name, "namespace": "llm-serving"},
                "annotations": {"summary": "backpressure"},
                "startsAt": "2026-12-02T10:00:00Z",
            }
        ],
    }


def test_a_database_that_cannot_keep_up_gets_503_and_loses_nothing(database_url: str, tmp_path: Path) -> None:
    settings = Settings(
        state_dir=tmp_path,
        database_url=database_url,
        engine="rulebook",
        alertmanager_token=SecretStr(TOKEN),
        api_token=SecretStr(TOKEN),
        ingest_wait_s=0.5,
        rate_limit_per_minute=1,  # people's doors are limited hard; the alert door is never limited
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(settings, context_factory=fake_world(FakeCluster()))) as client:
        assert client.post("/webhooks/alertmanager", json=_alert("Before"), headers=headers).status_code == 202
        locker = psycopg.connect(database_url)
        try:
            locker.execute("LOCK TABLE incidents IN EXCLUSIVE MODE")  # readers pass, writers wait
            answered = client.post("/webhooks/alertmanager", json=_alert("During"), headers=headers)
            assert answered.status_code == 503 and int(answered.headers["retry-after"]) >= 1
        finally:
            locker.rollback()
            locker.close()
        retry = client.post("/webhooks/alertmanager", json=_alert("During"), headers=headers)
        assert retry.status_code == 202
        body = retry.json()
        # The first delivery's commit finished once the lock was gone; the retry found it or stored it.
        stored = (body["accepted"] + body["duplicates"])[0]
        until(lambda: client.get(f"/incidents/{stored}", headers=headers).status_code == 200, "the alert stored", 30)
        many = [client.post("/webhooks/alertmanager", json=_alert(f"Burst{i}"), headers=headers) for i in range(5)]
        assert [r.status_code for r in many] == [202] * 5  # a 1/minute limit elsewhere never reaches alerts
        metrics = client.get("/metrics").text
    assert 'mitigate_requests_rejected_total{code="503",door="alertmanager"} 1.0' in metrics
    assert "429" not in "".join(line for line in metrics.splitlines() if 'door="alertmanager"' in line)
