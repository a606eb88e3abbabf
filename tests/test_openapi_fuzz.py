"""No input produces a 5xx, and nothing is half-stored, on SQLite and on the real PostgreSQL.

schemathesis drives mitigate's own OpenAPI schema (every route, the webhook and chat bodies included
since they have models); hypothesis drives the webhook and chat doors with *authenticated* bodies
(signed, or a valid bearer token) built from arbitrary text, NUL and unpaired surrogates included, and
with raw garbage: invalid UTF-8, form noise, malformed and absurdly deep JSON. Afterwards the database
must be whole: every incident that is no correlated alert has its run, every run its incident.
Deterministic (derandomized, no example database) and bounded (well under a minute per database).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from sqlalchemy import text

from api.app import create_app
from api.security import sign
from api.settings import Settings
from tests.db_urls import postgres_schema_url
from tests.fake_botframework import FakeBotFramework, StaticTokenCredentials
from tests.fake_slack import FakeSlack
from tests.fakes import FakeCluster, fake_world

TOKEN = "fuzz-token"
SLACK_SECRET = "fuzz-slack-secret"
APP_ID = "00000000-0000-0000-0000-0000000000fz"
FUZZ = settings(
    max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{Path(tmp_path_factory.mktemp('fuzz')) / 'fuzz.db'}"
    else:
        with postgres_schema_url() as url:
            yield url


@pytest.fixture(scope="module")
def framework() -> Iterator[FakeBotFramework]:
    with FakeBotFramework() as fake:
        yield fake


@pytest.fixture(scope="module")
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture(scope="module")
def client(
    database_url: str, framework: FakeBotFramework, slack: FakeSlack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    with contextlib.nullcontext():
        app = create_app(
            Settings(
                state_dir=tmp_path_factory.mktemp("state"),
                database_url=database_url,
                engine="rulebook",
                api_token=SecretStr(TOKEN),
                alertmanager_token=SecretStr(TOKEN),
                incident_webhook_secret=SecretStr(TOKEN),
                pagerduty_webhook_secret=SecretStr(TOKEN),
                slack_signing_secret=SecretStr(SLACK_SECRET),
                slack_bot_token=SecretStr("xoxb-fuzz"),
                slack_api_url=f"{slack.url}/api/",
                teams_app_id=APP_ID,
                teams_app_password=SecretStr("pw"),
                teams_openid_metadata_url=f"{framework.url}/openid",
                rate_limit_per_minute=1_000_000,
                max_body_bytes=200_000,
            ),
            context_factory=fake_world(FakeCluster()),
            teams_credentials=StaticTokenCredentials(APP_ID),
        )
        with TestClient(app, raise_server_exceptions=False) as test_client:
            yield test_client


def _whole(client: TestClient) -> None:
    """Nothing half-stored: no incident (but a correlated alert) without its run, no run without its
    incident, no step without its run."""
    service = client.app.state.service  # type: ignore[attr-defined]
    with service.store.engine.connect() as conn:
        orphans = conn.execute(
            text(
                "SELECT count(*) FROM incidents i WHERE i.correlated_with IS NULL AND NOT EXISTS "
                "(SELECT 1 FROM runs r WHERE r.incident_id = i.id)"
            )
        ).scalar()
        runless = conn.execute(
            text("SELECT count(*) FROM runs r WHERE NOT EXISTS (SELECT 1 FROM incidents i WHERE i.id = r.incident_id)")
        ).scalar()
        stepless = conn.execute(
            text("SELECT count(*) FROM run_steps s WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = s.run_id)")
        ).scalar()
    assert (orphans, runless, stepless) == (0, 0, 0)


def test_no_openapi_input_produces_a_5xx(client: TestClient) -> None:
    # schemathesis' pytest plugin does not load under pytest 9; drive its strategies with hypothesis.
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {operation.path for operation in operations}
    assert {"/webhooks/alertmanager", "/webhooks/pagerduty", "/incidents", "/slack/events", "/teams/messages"} <= paths
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
        )
        def check(case: Any) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {TOKEN}"}
            response = case.call()
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}")

        check()
    assert failures == []
    _whole(client)


# ---- authenticated bodies, built from arbitrary text ---------------------------------------------------
TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=40) | st.sampled_from(
    ["\x00", "a\x00b", "\ud800", "x\udfffy", "", " ", "é✓", "\u202e"]
)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def alertmanager_bodies(draw: st.DrawFn) -> dict[str, Any]:
    alert = {
        "status": draw(st.sampled_from(["firing", "resolved"])),
        "labels": draw(st.dictionaries(TEXT, TEXT, min_size=1, max_size=4)),
        "annotations": draw(st.dictionaries(TEXT, TEXT, max_size=3)),
        "startsAt": draw(st.sampled_from(["2026-11-24T10:00:00Z", "not a date", "2026-11-24T10:00:00+05:00"])),
        "fingerprint": draw(TEXT),
    }
    body = {"version": "4", "groupKey": draw(TEXT), "status": "firing", "alerts": [alert]}
    if draw(st.booleans()):
        body[draw(TEXT)] = draw(JSONISH)
    return body


@st.composite
def incident_bodies(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "id": draw(TEXT),
        "title": draw(TEXT),
        "description": draw(TEXT),
        "alert": {"labels": draw(st.dictionaries(TEXT, TEXT, max_size=3))},
    }


@st.composite
def pagerduty_bodies(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "event": {
            "id": draw(TEXT),
            "event_type": draw(st.sampled_from(["incident.triggered", "incident.resolved", "incident.x"])),
            "resource_type": "incident",
            "occurred_at": "2026-11-24T10:00:00Z",
            "data": {"id": draw(TEXT), "title": draw(TEXT), "service": {"summary": draw(TEXT)}},
        }
    }


GARBAGE = st.binary(max_size=300) | st.sampled_from(
    [b"\xff\xfe\xfa", b"{", b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 5000 + b"1" + b"}" * 5000, b"a=%ZZ&&=", b"null"]
)


def _dumps(body: Any) -> bytes:
    return json.dumps(body).encode("utf-8", "surrogatepass")


def _post(client: TestClient, door: str, body: bytes, content_type: str = "application/json") -> int:
    headers = {"Content-Type": content_type}
    if door == "/webhooks/alertmanager" or door == "/incidents":
        headers["Authorization"] = f"Bearer {TOKEN}"
    elif door == "/webhooks/incident":
        stamp = str(int(time.time()))
        headers |= {"X-Mitigate-Timestamp": stamp, "X-Mitigate-Signature": sign(TOKEN, stamp, body)}
    elif door == "/webhooks/pagerduty":
        headers["X-PagerDuty-Signature"] = "v1=" + hmac.new(TOKEN.encode(), body, hashlib.sha256).hexdigest()
    elif door == "/slack/events":
        stamp = str(int(time.time()))
        signed = f"v0:{stamp}:".encode() + body  # Slack's v0 scheme, over bytes that may not be UTF-8
        signature = "v0=" + hmac.new(SLACK_SECRET.encode(), signed, hashlib.sha256).hexdigest()
        headers |= {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature}
    return client.post(door, content=body, headers=headers).status_code


def test_no_authenticated_body_produces_a_5xx(client: TestClient, slack: FakeSlack) -> None:
    codes: list[tuple[str, int]] = []

    @FUZZ
    @given(
        st.one_of(
            alertmanager_bodies().map(lambda b: ("/webhooks/alertmanager", _dumps(b), "application/json")),
            incident_bodies().map(lambda b: ("/webhooks/incident", _dumps(b), "application/json")),
            incident_bodies().map(lambda b: ("/incidents", _dumps(b), "application/json")),
            pagerduty_bodies().map(lambda b: ("/webhooks/pagerduty", _dumps(b), "application/json")),
            st.tuples(
                st.sampled_from(["/webhooks/alertmanager", "/webhooks/pagerduty", "/slack/events", "/teams/messages"]),
                GARBAGE,
                st.sampled_from(["application/json", "application/x-www-form-urlencoded"]),
            ),
            st.dictionaries(TEXT, TEXT, max_size=4).map(
                lambda form: (
                    "/slack/events",
                    "&".join(f"{k}={v}" for k, v in form.items()).encode("utf-8", "surrogatepass"),
                    "application/x-www-form-urlencoded",
                )
            ),
            st.builds(
                lambda command, text_: {
                    "command": command,
                    "text": text_,
                    "user_id": "U1",
                    "channel_id": "C1",
                    "response_url": f"{slack.url}/respond",
                },
                st.sampled_from(["/mitigate"]),
                st.sampled_from(
                    ["triage GPU XID 79 on node 7", "status r-1", "approve", "reject \x00", "triage é\ud800"]
                ),
            ).map(lambda form: ("/slack/events", _form(form), "application/x-www-form-urlencoded")),
        )
    )
    def check(request: tuple[str, bytes, str]) -> None:
        door, body, content_type = request
        codes.append((door, _post(client, door, body, content_type)))

    check()
    server_errors = [c for c in codes if c[1] >= 500]
    assert server_errors == []
    assert {code for _door, code in codes} & {202, 200}, "no valid body was accepted: the fuzz tested only refusals"
    _whole(client)


def _form(fields: dict[str, str]) -> bytes:
    from urllib.parse import urlencode

    return urlencode(fields, encoding="utf-8", errors="surrogatepass").encode()


def test_the_reported_inputs_are_4xx_naming_the_field(client: TestClient, framework: FakeBotFramework) -> None:
    deep = b'{"type": "message", "value": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    headers = {"Authorization": f"Bearer {framework.token(APP_ID)}", "Content-Type": "application/json"}
    assert client.post("/teams/messages", content=deep, headers=headers).status_code in (400, 422)
    for body in (b"\xff\xfe", b"payload=%7B", b"{not json"):  # signed and unsigned Slack garbage
        assert 400 <= _post(client, "/slack/events", body, "application/x-www-form-urlencoded") < 500
        unsigned = client.post("/slack/events", content=body, headers={"Content-Type": "application/json"})
        assert unsigned.status_code == 401
    alert = {
        "version": "4",
        "groupKey": "g",
        "status": "firing",
        "alerts": [{"status": "firing", "labels": {"alertname": "A\x00"}, "startsAt": "2026-11-24T10:00:00Z"}],
    }
    response = client.post(
        "/webhooks/alertmanager", content=_dumps(alert), headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 422 and response.json()["detail"]["field"] == "alerts.0.labels.alertname"
    titled = _dumps({"id": "nul-1", "title": "bad\x00title"})
    assert _post(client, "/webhooks/incident", titled) == 422
    assert client.get("/incidents/a%00b", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 422
    huge = b"x" * 300_000  # over max_body_bytes, unauthenticated: refused by byte count alone
    assert client.post("/incidents", content=huge).status_code == 413
    metrics = client.get("/metrics").text
    assert 'mitigate_requests_rejected_total{code="413",door="rest"}' in metrics
    _whole(client)
