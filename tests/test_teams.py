"""The Teams bot with the real botbuilder CloudAdapter: the framework validates each inbound JWT (against
local OpenID metadata and keys), and replies go to a local stub of the connector service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from api.settings import Settings
from tests.approvers import approvers_file
from tests.fake_botframework import FakeBotFramework, StaticTokenCredentials
from tests.fakes import FakeCluster, fake_world
from tests.waiting import until

APP_ID = "00000000-0000-0000-0000-0000000000aa"


@pytest.fixture
def framework() -> Iterator[FakeBotFramework]:
    with FakeBotFramework() as fake:
        yield fake


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()


@pytest.fixture
def client(tmp_path: Path, framework: FakeBotFramework, cluster: FakeCluster) -> Iterator[TestClient]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/teams.db",
        engine="rulebook",
        api_token=SecretStr("api"),
        teams_app_id=APP_ID,
        teams_app_password=SecretStr("pw"),
        approvers_file=approvers_file(tmp_path),
        teams_openid_metadata_url=f"{framework.url}/openid",
    )

    app = create_app(settings, context_factory=fake_world(cluster), teams_credentials=StaticTokenCredentials(APP_ID))
    with TestClient(app) as test_client:
        yield test_client


def _activity(
    framework: FakeBotFramework,
    text: str = "",
    value: dict | None = None,
    user: str = "aad-bob",
    activity_id: str = "act-1",
    reply_to: str | None = None,
) -> dict[str, Any]:
    return {
        **({"replyToId": reply_to} if reply_to else {}),
        "type": "message",
        "id": activity_id,
        "channelId": "msteams",
        "serviceUrl": framework.url,
        "from": {"id": f"29:{user}", "aadObjectId": user, "name": user},
        "conversation": {"id": "19:incident-room"},
        "recipient": {"id": APP_ID, "name": "mitigate"},
        "text": text,
        "value": value,
    }


def _post(client: TestClient, framework: FakeBotFramework, activity: dict, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token or framework.token(APP_ID)}"}
    return client.post("/teams/messages", json=activity, headers=headers).status_code


def test_a_message_gets_a_reply_through_the_connector(client, framework):
    status = _post(
        client,
        framework,
        _activity(framework, "XID 79 on node aks-gpu-7 in namespace llm-serving, its pods keep failing"),
    )
    assert status in (200, 202)
    # The reply to the message, not the card: a fast triage's card can be sent first.
    reply = until(lambda: [r for r in framework.replies if r["body"].get("text")], "the reply")[0]
    assert reply["path"] == "/v3/conversations/19%3Aincident-room/activities/act-1"
    assert reply["auth"] == "Bearer outbound-test-token" and "Triaging" in reply["body"]["text"]
    card = until(lambda: [r for r in framework.replies if r["body"].get("attachments")], "the card")[0]
    content = card["body"]["attachments"][0]["content"]
    assert content["type"] == "AdaptiveCard" and "Approval needed" in content["body"][0]["text"]
    facts = {f["title"]: f["value"] for b in content["body"] if b["type"] == "FactSet" for f in b["facts"]}
    assert facts["Category"].startswith("A1/bad_node") and facts["Risk"] == "high"
    assert "Dry run: dry-run-ok" in card_text(content)


def card_text(content: dict) -> str:
    """Every text a card shows, its text runs joined: what a reader sees, whatever the layout."""
    lines = []
    for block in content["body"]:
        if block["type"] == "TextBlock":
            lines.append(block["text"])
        elif block["type"] == "RichTextBlock":
            lines.append("".join(run["text"] for run in block["inlines"]))
    return "\n".join(lines)


def test_a_card_action_approves(client, framework, cluster):
    _post(client, framework, _activity(framework, "XID 79 on node aks-gpu-7 in namespace llm-serving, still failing"))
    card = until(lambda: [r for r in framework.replies if r["body"].get("attachments")], "the card")[0]
    # Draining a node is high risk: Approve opens a confirmation that says what it does and asks why.
    approve = card["body"]["attachments"][0]["content"]["actions"][0]
    assert approve["type"] == "Action.ShowCard" and "cordon_and_evict" in str(approve["card"]["body"])
    reason = next(i for i in approve["card"]["body"] if i["type"] == "Input.Text")
    submit = approve["card"]["actions"][0]["data"] | {reason["id"]: "XID 79: the node must go"}
    card_id = f"reply-{framework.replies.index(card) + 1}"  # the id the connector gave the card (Teams' replyToId)
    refused = _activity(framework, value=submit, user="aad-mallory", activity_id="a2", reply_to=card_id)
    assert _post(client, framework, refused) in (200, 202)
    assert "not in the approvers group" in framework.replies[-1]["body"]["text"] and cluster.executed == []
    approved = _activity(framework, value=submit, user="aad-alice", activity_id="a3", reply_to=card_id)
    assert _post(client, framework, approved) in (200, 202)
    until(lambda: cluster.executed, "the approved action")
    # The same card is replaced in place: first saying who approved it, then that the run mitigated.
    done = until(
        lambda: [u for u in framework.updates if "mitigated" in str(u["body"].get("attachments"))],
        "the mitigated card",
    )
    assert all(u["path"].endswith(f"/activities/{card_id}") for u in framework.updates)
    assert any("Approved by alice" in str(u["body"]) for u in framework.updates)
    assert "actions" not in done[-1]["body"]["attachments"][0]["content"] or not [
        a for a in done[-1]["body"]["attachments"][0]["content"]["actions"] if a["type"] == "Action.Submit"
    ]
    assert len(cluster.executed) == 1


@pytest.mark.parametrize(
    "token",
    [
        lambda fw: fw.token(APP_ID, key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        lambda fw: fw.token(APP_ID, issuer="https://evil.example"),
        lambda fw: fw.token("someone-elses-bot"),
        lambda fw: "not-a-jwt",
    ],
)
def test_tokens_the_framework_rejects_get_401_and_store_nothing(client, framework, token):
    status = _post(client, framework, _activity(framework, "429 throttling everywhere"), token=token(framework))
    assert status == 401
    assert framework.replies == []
    assert client.get("/incidents", headers={"Authorization": "Bearer api"}).json() == []
