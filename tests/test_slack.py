"""The Slack bot with the real slack_bolt/slack_sdk against a local stub of Slack's Web API."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from slack_sdk.signature import SignatureVerifier

from agent.context import TriageContext
from agent.rulebook import load_rulebook
from api.app import create_app
from api.settings import Settings
from tests.approvers import approvers_file
from tests.fake_slack import FakeSlack
from tests.fakes import FakeCluster, fake_world
from tests.waiting import until
from tools.guard import load_policy

SECRET = "slack-signing-secret"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as stub:
        yield stub


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()


@pytest.fixture
def client(tmp_path: Path, slack: FakeSlack, cluster: FakeCluster) -> Iterator[TestClient]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/slack.db",
        engine="rulebook",
        api_token=SecretStr("api"),
        slack_bot_token=SecretStr("xoxb-test"),
        slack_signing_secret=SecretStr(SECRET),
        slack_api_url=f"{slack.url}/api/",
        approvers_file=approvers_file(tmp_path),
    )

    with TestClient(create_app(settings, context_factory=fake_world(cluster))) as test_client:
        yield test_client


def _signed(body: str, secret: str = SECRET, age: int = 0) -> dict[str, str]:
    timestamp = str(int(time.time()) - age)
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    return {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature}


def _mention(text: str, ts: str = "1700000000.000100") -> str:
    return json.dumps(
        {
            "type": "event_callback",
            "team_id": "T1",
            "api_app_id": "A1",
            "event_id": "Ev1",
            "event_time": 1,
            "event": {"type": "app_mention", "user": "UBOB", "channel": "C42", "ts": ts, "text": f"<@UBOT> {text}"},
        }
    )


def test_mention_gets_a_threaded_summary(client, slack):
    body = _mention("XID 79 on node aks-gpu-7 in namespace llm-serving, its pods keep failing")
    response = client.post("/slack/events", content=body, headers={**_signed(body), "Content-Type": "application/json"})
    assert response.status_code == 200
    summary = until(lambda: [p for p in slack.posts() if p.get("blocks")], "the summary")[0]
    assert summary["channel"] == "C42" and summary["thread_ts"] == "1700000000.000100"
    text = json.dumps(summary["blocks"])
    assert "Approval needed" in text and "cordon_and_evict" in text
    # A paused run shows its category, risk and dry run, not only the plan.
    assert "A1/bad_node" in text and "*Risk*\\nhigh" in text and "dry-run-ok" in text
    actions = next(b for b in summary["blocks"] if b["type"] == "actions")["elements"]
    assert {a["action_id"] for a in actions} == {"mitigate_approve", "mitigate_reject"}


def _click(client: TestClient, slack: FakeSlack, run_id: str, user: str, action: str = "mitigate_approve") -> int:
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
        "actions": [{"action_id": action, "block_id": "b", "value": run_id, "type": "button", "action_ts": "1"}],
    }
    body = urlencode({"payload": json.dumps(payload)})
    return client.post(
        "/slack/events", content=body, headers={**_signed(body), "Content-Type": "application/x-www-form-urlencoded"}
    ).status_code


def test_button_click_approves_and_the_run_executes_once(client, slack, cluster):
    body = _mention("XID 79 on node aks-gpu-7 in namespace llm-serving, its pods keep failing")
    client.post("/slack/events", content=body, headers={**_signed(body), "Content-Type": "application/json"})
    summary = until(lambda: [p for p in slack.posts() if p.get("blocks")], "the approval request")[0]
    run_id = next(b for b in summary["blocks"] if b["type"] == "actions")["elements"][0]["value"]
    assert _click(client, slack, run_id, "UMALLORY") == 200  # not an approver: refused, nothing runs
    assert "not in the approvers group" in until(lambda: slack.posts("respond"), "the refusal")[0]["text"]
    assert cluster.executed == []
    assert _click(client, slack, run_id, "UALICE") == 200
    until(lambda: [p for p in slack.posts() if "mitigated" in p.get("text", "")], "the mitigated summary")
    assert _click(client, slack, run_id, "UALICE") == 200  # a second click does not run it again:
    assert "not waiting for an approval" in slack.posts("respond")[-1]["text"]  # handled before the 200
    assert len(cluster.executed) == 1
    timeline = client.get("/incidents/slack-C42-1700000000.000100", headers={"Authorization": "Bearer api"}).json()
    approvals = timeline["runs"][0]["actions"][0]["approvals"]
    assert approvals == [{"by": "alice", "decision": "approve", "reason": "approved in Slack"}]  # UALICE is alice


@pytest.mark.parametrize(
    "headers",
    [
        lambda body: _signed(body, secret="wrong-secret"),
        lambda body: _signed(body, age=3600),
        lambda body: {},
    ],
)
def test_bad_or_stale_signature_is_401_and_stores_nothing(client, slack, headers):
    body = _mention("429 throttling everywhere")
    response = client.post("/slack/events", content=body, headers={**headers(body), "Content-Type": "application/json"})
    assert response.status_code == 401
    assert client.get("/incidents", headers={"Authorization": "Bearer api"}).json() == []
    assert slack.posts() == []


def test_slash_commands(client, slack):
    def command(text: str) -> None:
        body = urlencode(
            {
                "command": "/mitigate",
                "text": text,
                "user_id": "UALICE",
                "channel_id": "C9",
                "trigger_id": "trig-1",
                "response_url": f"{slack.url}/respond",
                "team_id": "T1",
            }
        )
        response = client.post(
            "/slack/events",
            content=body,
            headers={**_signed(body), "Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 200

    command("triage 429 throttling, queue backlog on every replica of llama-70b in namespace llm-serving")
    started = until(lambda: slack.posts("respond"), "the triage answer")[0]["text"]
    run_id = started.split("`")[1]
    command(f"status {run_id[:8]}")  # a prefix of the id is enough
    until(lambda: any(run_id in p["text"] and "Run" in p["text"] for p in slack.posts("respond")), "status")
    command("frobnicate")
    until(lambda: any("Usage" in p["text"] for p in slack.posts("respond")), "usage")


def _thread_reply(text: str, ts: str = "1700000000.000500") -> str:
    return json.dumps(
        {
            "type": "event_callback",
            "team_id": "T1",
            "api_app_id": "A1",
            "event_id": "Ev2",
            "event_time": 2,
            "event": {
                "type": "message",
                "channel_type": "channel",
                "user": "UBOB",
                "channel": "C42",
                "ts": ts,
                "thread_ts": "1700000000.000100",
                "text": text,
            },
        }
    )


def _send(client: TestClient, body: str) -> None:
    response = client.post("/slack/events", content=body, headers={**_signed(body), "Content-Type": "application/json"})
    assert response.status_code == 200


def test_follow_up_without_an_llm_gets_the_status(client, slack):
    _send(
        client, _mention("HTTP 408 on streaming for llama-70b in namespace llm-serving, streams cut off, still failing")
    )
    until(lambda: [p for p in slack.posts() if p.get("blocks")], "the summary")
    _send(client, _thread_reply("why not restart it?"))
    reply = until(lambda: [p for p in slack.posts() if "No LLM is configured" in p.get("text", "")], "the reply")[0]
    assert reply["thread_ts"] == "1700000000.000100" and "A3/timeout" in reply["text"]


def test_follow_up_with_an_llm_is_answered_from_the_record(tmp_path, slack):
    from api.wiring import make_llm
    from tests.fake_openai import FakeOpenAI

    with FakeOpenAI() as llm:
        llm.script.extend(
            [
                (
                    "json",
                    {
                        "category": "A3",
                        "subcategory": "timeout",
                        "confidence": 0.9,
                        "rationale": "408s",
                        "evidence": ["408"],
                    },
                ),
                ("json", {"mitigation": "M1", "rationale": "keep-alive template"}),
                (
                    "json",
                    {"answer": "Because idle streams are dropped by the gateway; a restart would not change that."},
                ),
            ]
        )
        settings = Settings(
            database_url=f"sqlite:///{tmp_path}/s.db",
            engine="rulebook",
            api_token=SecretStr("api"),
            slack_bot_token=SecretStr("xoxb-test"),
            slack_signing_secret=SecretStr(SECRET),
            slack_api_url=f"{slack.url}/api/",
        )
        engine = make_llm(Settings(llm_base_url=llm.base_url, llm_model="scripted", llm_max_retries=0))

        def context(store: Any) -> TriageContext:
            return TriageContext(rulebook=load_rulebook(), policy=load_policy(), recorder=store.recorder, llm=engine)

        with TestClient(create_app(settings, context_factory=context)) as test_client:
            _send(test_client, _mention("HTTP 408 on streaming for llama-70b, streams cut off, still failing"))
            until(lambda: [p for p in slack.posts() if p.get("blocks")], "the summary")
            _send(test_client, _thread_reply("why not restart it?"))
            answer = until(lambda: [p for p in slack.posts() if "idle streams" in p.get("text", "")], "the answer")[0]
        assert answer["thread_ts"] == "1700000000.000100"
        question = llm.requests[-1]["body"]["messages"][0]["content"]
        assert "why not restart it?" in question and '"subcategory": "timeout"' in question


def test_webhook_incidents_are_summarised_in_the_alert_channel(tmp_path, slack):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/a.db",
        engine="rulebook",
        api_token=SecretStr("api"),
        alertmanager_token=SecretStr("am"),
        slack_bot_token=SecretStr("xoxb-test"),
        slack_signing_secret=SecretStr(SECRET),
        slack_api_url=f"{slack.url}/api/",
        slack_alert_channel="C-ALERTS",
    )
    with TestClient(create_app(settings)) as test_client:
        payload = {
            "version": "4",
            "groupKey": "g",
            "status": "firing",
            "alerts": [
                {
                    "status": "firing",
                    "startsAt": "2026-11-24T10:00:00Z",
                    "fingerprint": "abc",
                    "labels": {
                        "alertname": "GatewayHigh408Rate",
                        "namespace": "llm-serving",
                        "deployment": "llama-70b",
                    },
                    "annotations": {"summary": "408 rate 2.7% on streaming completions"},
                }
            ],
        }
        response = test_client.post("/webhooks/alertmanager", json=payload, headers={"Authorization": "Bearer am"})
        assert response.status_code == 202
        post = until(lambda: [p for p in slack.posts() if p.get("channel") == "C-ALERTS"], "the channel post")[0]
    assert "thread_ts" not in post or post["thread_ts"] in (None, "")
    assert "A3/timeout" in json.dumps(post["blocks"])


def test_oversized_chat_bodies_are_refused_before_verification(client, slack):
    body = _mention("x" * 1_100_000)
    response = client.post("/slack/events", content=body, headers={**_signed(body), "Content-Type": "application/json"})
    assert response.status_code == 413 and slack.posts() == []


def test_the_approval_message_is_updated_in_place_as_the_run_moves(tmp_path, slack, cluster):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/u.db",
        engine="rulebook",
        api_token=SecretStr("api"),
        slack_bot_token=SecretStr("xoxb-test"),
        slack_signing_secret=SecretStr(SECRET),
        slack_api_url=f"{slack.url}/api/",
        approvers_file=approvers_file(tmp_path),
        public_url="https://mitigate.example.com",
    )
    with TestClient(create_app(settings, context_factory=fake_world(cluster))) as client:
        _send(client, _mention("XID 79 on node aks-gpu-7 in namespace llm-serving, its pods keep failing"))
        summary = until(lambda: [p for p in slack.posts() if p.get("blocks")], "the approval request")[0]
        text = json.dumps(summary["blocks"])
        assert "XID 79 on node aks-gpu-7" in text and "Open in the dashboard" in text
        assert "mitigate.example.com/dashboard/incidents/slack-C42-1700000000.000100" in text
        buttons = next(b for b in summary["blocks"] if b["type"] == "actions")["elements"]
        assert buttons[0]["confirm"]["style"] == "danger"  # draining a node is confirmed before it is approved
        payload = {
            "type": "block_actions",
            "user": {"id": "UALICE"},
            "team": {"id": "T1"},
            "api_app_id": "A1",
            "token": "t",
            "trigger_id": "tr",
            "response_url": f"{slack.url}/respond",
            "container": {"type": "message", "message_ts": "1700000000.000200"},
            "channel": {"id": "C42"},
            "message": {"ts": "1700000000.000200", "blocks": summary["blocks"]},
            "actions": [{**buttons[0], "block_id": "b", "type": "button", "action_ts": "1"}],
        }
        body = urlencode({"payload": json.dumps(payload)})
        response = client.post(
            "/slack/events",
            content=body,
            headers={**_signed(body), "Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 200
        replaced = until(lambda: [r for r in slack.posts("respond") if r.get("replace_original")], "the edit")[0]
        assert not [b for b in replaced["blocks"] if b["type"] == "actions"]  # no second click possible
        assert "approved" in json.dumps(replaced["blocks"]) and "<@UALICE>" in json.dumps(replaced["blocks"])
        update = until(lambda: slack.posts("chat.update"), "the message edited with the outcome")[0]
        assert update["ts"] == "1700000000.000200" and "mitigated" in json.dumps(update["blocks"])
        assert "approved by alice" in json.dumps(update["blocks"])
        reply = until(lambda: [p for p in slack.posts() if "Run mitigated" in p.get("text", "")], "the thread reply")
        assert reply[0]["thread_ts"] == "1700000000.000100"
