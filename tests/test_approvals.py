"""Approvals are people, through every door: REST (personal tokens), the dashboard (personal sign-in and a
form token), Slack (signed requests) and Teams (validated JWTs). Forged, repeated, expired and
wrong-role attempts are refused with a message, and every attempt is an audit row with who, how and
from where. A deletion (critical risk) needs two different people; one person on two doors is one."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from pydantic import SecretStr
from slack_sdk.signature import SignatureVerifier

from api.app import create_app
from api.settings import Settings
from tests.approvers import TOKENS, approvers_file
from tests.fake_botframework import FakeBotFramework, StaticTokenCredentials
from tests.fake_slack import FakeSlack
from tests.fakes import FakeCluster, fake_world
from tests.waiting import until
from tools.guard import DEFAULT_POLICY

API, SLACK_SECRET, APP_ID = "shared-api-token", "slack-signing-secret", "00000000-0000-0000-0000-0000000000aa"
SHARED = {"Authorization": f"Bearer {API}"}
BAD_DEPLOYMENT = {
    "id": "APR-1",
    "title": "new deployment returns gibberish; it was just created this morning, still broken; the previous "
    "deployment still serves fine",
    "alert": {"labels": {"alertname": "Gibberish", "namespace": "llm-serving", "deployment": "llama-70b"}},
}
BAD_NODE = {
    "id": "APR-2",
    "title": "XID 79 on node aks-gpu-7; its pods fail, still failing",
    "alert": {"labels": {"alertname": "GPUXid", "namespace": "llm-serving", "node": "aks-gpu-7"}},
}


@pytest.fixture
def doors(tmp_path: Path) -> Iterator[tuple[FakeSlack, FakeBotFramework]]:
    with FakeSlack() as slack, FakeBotFramework() as framework:
        yield slack, framework


def _app(tmp_path: Path, doors: Any, cluster: FakeCluster, factory: Any = None, **extra: Any) -> TestClient:
    slack, framework = doors
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/approvals.db",
        engine="rulebook",
        api_token=SecretStr(API),
        approvers_file=approvers_file(tmp_path),
        slack_bot_token=SecretStr("xoxb-test"),
        slack_signing_secret=SecretStr(SLACK_SECRET),
        slack_api_url=f"{slack.url}/api/",
        teams_app_id=APP_ID,
        teams_app_password=SecretStr("pw"),
        teams_openid_metadata_url=f"{framework.url}/openid",
        **extra,
    )
    factory = factory or fake_world(cluster)
    app = create_app(settings, context_factory=factory, teams_credentials=StaticTokenCredentials(APP_ID))
    return TestClient(app)


def _start(client: TestClient, incident: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    run_id = client.post("/incidents", json=incident, headers=SHARED).json()["run_id"]
    run = until(
        lambda: (r := client.get(f"/runs/{run_id}", headers=SHARED).json())["status"] == "awaiting_approval" and r,
        "the run to wait for approval",
    )
    return run_id, run


def _rest(client: TestClient, run_id: str, token: str, **body: Any) -> Any:
    return client.post(f"/runs/{run_id}/approve", json=body, headers={"Authorization": f"Bearer {token}"})


def _slack_click(client: TestClient, slack: FakeSlack, run_id: str, user: str, secret: str = SLACK_SECRET) -> int:
    payload = {
        "type": "block_actions",
        "user": {"id": user},
        "team": {"id": "T1"},
        "api_app_id": "A1",
        "token": "t",
        "trigger_id": "tr",
        "response_url": f"{slack.url}/respond",
        "container": {"type": "message"},
        "channel": {"id": "C42"},
        "actions": [{"action_id": "mitigate_approve", "block_id": "b", "value": run_id, "type": "button"}],
    }
    body = urlencode({"payload": json.dumps(payload)})
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    headers = {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }
    return client.post("/slack/events", content=body, headers=headers).status_code


def _teams_card(
    client: TestClient, framework: FakeBotFramework, run_id: str, aad: str, token: str | None = None
) -> int:
    activity = {
        "type": "message",
        "id": f"act-{aad}-{time.monotonic_ns()}",
        "channelId": "msteams",
        "serviceUrl": framework.url,
        "from": {"id": f"29:{aad}", "aadObjectId": aad, "name": aad},
        "conversation": {"id": "19:incident-room"},
        "recipient": {"id": APP_ID, "name": "mitigate"},
        "value": {"mitigate": "approve", "run_id": run_id},
    }
    headers = {"Authorization": f"Bearer {token or framework.token(APP_ID)}"}
    return client.post("/teams/messages", json=activity, headers=headers).status_code


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _attempts(client: TestClient, incident_id: str) -> list[dict[str, Any]]:
    timeline = client.get(f"/incidents/{incident_id}", headers=SHARED).json()
    return list(timeline["runs"][0]["approval_attempts"])


def test_two_different_authorised_people_through_any_door_and_every_refusal_audited(tmp_path, doors):
    slack, framework = doors
    cluster = FakeCluster()
    with _app(tmp_path, doors, cluster) as client:
        run_id, run = _start(client, BAD_DEPLOYMENT)
        # A paused run shows what it waits on (item 6): category, plan, risk, dry run.
        report = run["report"]
        assert (run["category"], report["plan"]["operation"], report["risk"]) == ("A2", "delete_deployment", "critical")
        assert report["dry_run"]["status"] == "dry-run-ok" and report["guard"]["approvals_required"] == 2

        # REST: a forged token, the shared token, a `by` name, a person whose roles stop at high risk.
        assert _rest(client, run_id, "forged-token").status_code == 401
        assert _rest(client, run_id, API).status_code == 401
        assert _rest(client, run_id, TOKENS["alice"], by="carol").status_code == 422
        wrong_role = _rest(client, run_id, TOKENS["bob"], reason="bad weights")
        assert wrong_role.status_code == 403 and "may not approve critical" in wrong_role.json()["detail"]
        first = _rest(client, run_id, TOKENS["alice"], reason="gibberish since the deploy")
        assert first.status_code == 202 and first.json()["by"] == "alice"

        def counted() -> bool:
            timeline = client.get(f"/incidents/{BAD_DEPLOYMENT['id']}", headers=SHARED).json()
            run = timeline["runs"][0]
            return run["status"] == "awaiting_approval" and bool(run["actions"][0]["approvals"])

        until(counted, "alice's approval to count")
        again = _rest(client, run_id, TOKENS["alice"])
        assert again.status_code == 409 and "already approved" in again.json()["detail"]
        # The same person again, through other doors: still one person.
        assert _slack_click(client, slack, run_id, "UALICE") == 200
        assert "already approved" in until(lambda: slack.posts("respond"), "Slack's answer")[-1]["text"]
        assert _teams_card(client, framework, run_id, "aad-alice") in (200, 202)
        assert "already approved" in framework.replies[-1]["body"]["text"]
        # Forged Slack signature and forged Teams token claiming someone else: 401, audited.
        assert _slack_click(client, slack, run_id, "UBOB", secret="wrong-secret") == 401
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        assert _teams_card(client, framework, run_id, "aad-bob", token=framework.token(APP_ID, key=key)) == 401
        # Unknown Slack user, and a junior (medium risk only) through Teams.
        assert _slack_click(client, slack, run_id, "UMALLORY") == 200
        assert _teams_card(client, framework, run_id, "aad-dave") in (200, 202)
        assert "may not approve critical" in framework.replies[-1]["body"]["text"]
        # Dashboard: wrong password, the shared token (read-only), then carol signs in as herself.
        page = f"/dashboard/incidents/{BAD_DEPLOYMENT['id']}"
        assert client.get(page, headers=_basic("carol", "guess")).status_code == 401
        read_only = client.post(
            f"/dashboard/runs/{run_id}/decide", data={"decision": "approve", "csrf": "x"}, headers=_basic("any", API)
        )
        assert read_only.status_code == 403
        html = client.get(page, headers=_basic("carol", TOKENS["carol"])).text
        assert "Approve as carol" in html and "critical" in html and "dry-run-ok" in html
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)  # type: ignore[union-attr]
        cross_site = client.post(
            f"/dashboard/runs/{run_id}/decide",
            data={"decision": "approve", "csrf": csrf, "reason": "x"},
            headers=_basic("carol", TOKENS["carol"]) | {"Sec-Fetch-Site": "cross-site"},
        )
        assert cross_site.status_code == 403 and cluster.executed == []
        unconfirmed = client.post(  # a deletion approved without ticking the confirmation: not counted
            f"/dashboard/runs/{run_id}/decide",
            data={"decision": "approve", "csrf": csrf, "reason": "bad weights"},
            headers=_basic("carol", TOKENS["carol"]) | {"Sec-Fetch-Site": "same-origin"},
        )
        assert "tick the confirmation first" in unconfirmed.text and cluster.executed == []
        done = client.post(
            f"/dashboard/runs/{run_id}/decide",
            data={"decision": "approve", "csrf": csrf, "reason": "confirmed: bad weights", "confirm": "yes"},
            headers=_basic("carol", TOKENS["carol"]) | {"Sec-Fetch-Site": "same-origin"},
        )
        assert done.status_code == 200 and "approval by carol recorded" in done.text
        until(lambda: client.get(f"/runs/{run_id}", headers=SHARED).json()["status"] == "mitigated", "the deletion")
        assert len(cluster.executed) == 1 and cluster.executed[0]["operation"] == "delete_deployment"
        attempts = _attempts(client, BAD_DEPLOYMENT["id"])
    accepted = [(a["person"], a["via"]) for a in attempts if a["outcome"] == "accepted"]
    assert accepted == [("alice", "rest"), ("carol", "dashboard")]
    refused = [
        (a["person"] or a["subject"] or "-", a["via"], a["message"]) for a in attempts if a["outcome"] == "refused"
    ]
    by_door = {(who, via) for who, via, _ in refused}
    assert {("-", "rest"), ("bob", "rest"), ("alice", "slack"), ("alice", "teams"), ("UMALLORY", "slack")} <= by_door
    assert {
        ("UBOB", "slack"),
        ("aad-bob", "teams"),
        ("dave", "teams"),
        ("-", "dashboard"),
        ("carol", "dashboard"),
    } <= by_door
    messages = " | ".join(m for _, _, m in refused)
    for why in ("personal API token", "may not approve critical", "already approved", "signature did not verify"):
        assert why in messages
    assert "token did not validate" in messages and "not a configured approver" in messages
    assert all(a["address"] for a in attempts)  # from where, every time


def test_an_expired_approval_is_refused_audited_and_ends_the_request(tmp_path, doors):
    from tools.guard import load_policy

    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(yaml.safe_load(DEFAULT_POLICY.read_text()) | {"approval_ttl_seconds": 0}))
    cluster = FakeCluster()
    world = fake_world(cluster)

    def factory(store: Any) -> Any:
        context = world(store)
        context.policy = load_policy(policy_file)  # the guard and the doors read the same short-lived policy
        return context

    with _app(tmp_path, doors, cluster, factory, policy_path=policy_file) as client:
        run_id, _run = _start(client, BAD_NODE)
        late = _rest(client, run_id, TOKENS["alice"])
        assert late.status_code == 409 and "expired" in late.json()["detail"]
        until(
            lambda: client.get(f"/runs/{run_id}", headers=SHARED).json()["status"] == "rejected", "the request to end"
        )
        attempts = _attempts(client, BAD_NODE["id"])
    assert [(a["person"], a["outcome"]) for a in attempts] == [("alice", "expired")]
    assert "past the 0s limit" in attempts[0]["message"] and cluster.executed == []
