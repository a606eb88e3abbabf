"""schemathesis against mitigate's own OpenAPI schema: no input, valid or not, produces a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr

from api.app import create_app
from api.settings import Settings

TOKEN = "fuzz-token"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    db = Path(tmp_path_factory.mktemp("fuzz")) / "fuzz.db"
    app = create_app(
        Settings(
            database_url=f"sqlite:///{db}",
            engine="rulebook",
            api_token=SecretStr(TOKEN),
            alertmanager_token=SecretStr(TOKEN),
            incident_webhook_secret=SecretStr(TOKEN),
            rate_limit_per_minute=1_000_000,
        )
    )
    with TestClient(app) as test_client:
        yield test_client


def test_no_input_produces_a_5xx(client: TestClient) -> None:
    # schemathesis' pytest plugin does not load under pytest 9; drive its strategies with hypothesis.
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: Any) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {TOKEN}"}
            response = case.call()
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}")

        check()
    assert failures == []
