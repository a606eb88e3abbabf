"""The bots route messages by intent, with the real slack_bolt and botbuilder clients against the local
fakes: a question is answered from history with citations and creates no incident; a bare approve asks
which run; an approval from someone who is not an approver is refused with the reason; empty, overlong
and non-English messages get a short answer. The store on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from api.lookup import list_incidents, list_runs
from api.settings import Settings
from tests.approvers import approvers_file
from tests.db_urls import postgres_schema_url
from tests.fake_botframework import FakeBotFramework, StaticTokenCredentials
from tests.fake_slack import FakeSlack
from tests.fakes import FakeCluster, fake_world
from tests.history import seed
from tests.test_slack import SECRET, _signed
from tests.test_teams import APP_ID, _activity, _post
from tests.waiting import until

PUBLIC = "https://mitigate.example.com"
KV_QUESTION = "what did we do last time the KV cache filled up on mixtral?"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/chat.db"
    else:
        with postgres_schema_url() as url:
            yield url


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as stub:
        yield stub


@pytest.fixture
def slack_client(tmp_path: Path, db_url: str, slack: FakeSlack, cluster: FakeCluster) -> Iterator[TestClient]:
    settings = Settings(
        database_url=db_url,
        engine="rulebook",
        api_token=SecretStr("api"),
        slack_bot_token=SecretStr("xoxb-test"),
        slack_signing_secret=SecretStr(SECRET),
        slack_api_url=f"{slack.url}/api/",
        approvers_file=approvers_file(tmp_path),
        public_url=PUBLIC,
        state_dir=tmp_path / "state",
    )
    with TestClient(create_app(settings, context_factory=fake_world(cluster))) as client:
        seed(client.app.state.service.store.recorder)  # type: ignore[attr-defined]
        yield client


def _say(
    client: TestClient,
    slack: FakeSlack,
    text: str,
    user: str = "UALICE",
    ts: str = "1700000001.000100",
    thread: str | None = None,
    starting: str = "",
) -> str:
    """Mention the bot (in `thread` when given); the text of its reply in the thread (the one that
    starts with `starting`: a fast triage's summary can be posted before the "Triaging" line)."""
    before = len(slack.posts())
    where = {"thread_ts": thread} if thread else {}
    body = json.dumps(
        {
            "type": "event_callback",
            "team_id": "T1",
            "api_app_id": "A1",
            "event_id": f"Ev-{ts}",
            "event_time": 1,
            "event": {"type": "app_mention", "user": user, "channel": "C42", "ts": ts, "text": f"<@UBOT> {text}"}
            | where,
        }
    )
    response = client.post("/slack/events", content=body, headers={**_signed(body), "Content-Type": "application/json"})
    assert response.status_code == 200
    posts = until(
        lambda: [
            p
            for p in slack.posts()[before:]
            if p.get("thread_ts") == (thread or ts)
            and not p.get("blocks")  # a run summary the worker posts, not the reply
            and str(p.get("text", "")).startswith(starting)
        ],
        "the reply",
    )
    return str(posts[0]["text"])


def _incidents(client: TestClient) -> list[str]:
    return [i["id"] for i in list_incidents(client.app.state.service.store.sessions)]  # type: ignore[attr-defined]


def test_slack_answers_a_question_with_citations_and_creates_no_incident(slack_client, slack):
    before = _incidents(slack_client)
    answer = _say(slack_client, slack, KV_QUESTION)
    assert "INC-KV-1" in answer and "M2 scale_out" in answer
    assert f"{PUBLIC}/dashboard/incidents/INC-KV-1" in answer
    german = _say(slack_client, slack, "Was haben wir bei der Zeitüberschreitung von llama-70b gemacht?", ts="2.1")
    assert "INC-408-1" in german
    assert _incidents(slack_client) == before and "Triaging" not in answer + german


def _reply_in_thread(client: TestClient, slack: FakeSlack, text: str, thread: str, ts: str) -> str:
    """A plain reply in a thread (no mention of the bot); the text of the bot's answer in that thread."""
    before = len(slack.posts())
    event = {"type": "message", "channel_type": "channel", "user": "UALICE", "channel": "C42", "ts": ts}
    event |= {"thread_ts": thread, "text": text}
    body = json.dumps(
        {"type": "event_callback", "team_id": "T1", "api_app_id": "A1", "event_id": f"Ev-{ts}", "event_time": 2}
        | {"event": event}
    )
    response = client.post("/slack/events", content=body, headers={**_signed(body), "Content-Type": "application/json"})
    assert response.status_code == 200
    # The bot's answer, not a run summary (Block Kit) the worker may post in the thread meanwhile.
    posts = until(
        lambda: [p for p in slack.posts()[before:] if p.get("thread_ts") == thread and not p.get("blocks")],
        "the reply",
    )
    return str(posts[0]["text"])


def test_slack_a_question_in_an_incidents_thread_is_answered_from_history_without_an_llm(slack_client, slack):
    """No LLM configured: a reply in a triaged incident's thread that asks about history gets the run's
    status and retrieval's answer (store and postmortems, with citations), and creates no incident."""
    service = slack_client.app.state.service  # type: ignore[attr-defined]
    assert service.make_context().llm is None
    started = _say(
        slack_client,
        slack,
        "KV cache full on mixtral-8x7b in namespace llm-serving, queueing",
        ts="6.1",
        starting="Triaging",
    )
    run_id = started.split("`")[1]
    until(lambda: service.store.recorder.run(run_id)["report"], "the run's report")
    until(lambda: [p for p in slack.posts() if p.get("thread_ts") == "6.1" and p.get("blocks")], "the summary")
    before = _incidents(slack_client)
    answer = _reply_in_thread(slack_client, slack, "what did we do last time?", thread="6.1", ts="6.2")
    assert f"Run `{run_id}`" in answer  # this thread's run first
    assert "INC-KV-1" in answer and "M2 scale_out" in answer  # what fixed the earlier one, from the store
    assert f"{PUBLIC}/dashboard/incidents/INC-KV-1" in answer
    assert "slack-C42-6.1" not in answer  # the thread's own incident is not its own history
    assert _incidents(slack_client) == before and service.store.recorder.run(run_id)["status"] != "running"


def test_slack_empty_overlong_and_help_get_short_polite_answers(slack_client, slack):
    before = _incidents(slack_client)
    assert _say(slack_client, slack, "", ts="3.1").startswith("Hello!")
    long = _say(slack_client, slack, "pods failing " * 1700, ts="3.2")  # ~22k characters
    assert "I read at most 8,000" in long and len(long) < 300
    assert "approve RUN_ID" in _say(slack_client, slack, "help", ts="3.3")
    assert _incidents(slack_client) == before


def test_slack_bare_approve_asks_which_run_and_a_non_approver_is_refused(slack_client, slack, cluster):
    started = _say(
        slack_client,
        slack,
        "XID 79 on node aks-gpu-7 in namespace llm-serving, pods failing",
        ts="4.1",
        starting="Triaging",
    )
    run_id = started.split("`")[1]
    service = slack_client.app.state.service  # type: ignore[attr-defined]
    until(lambda: [r for r in list_runs(service.store.sessions, status="waiting") if r["id"] == run_id], "waiting")
    until(lambda: [p for p in slack.posts() if p.get("blocks")], "the summary")  # posted before we talk on
    which = _say(slack_client, slack, "approve", ts="4.2")
    assert which.startswith("Which run?") and run_id[:12] in which
    # In the incident's own thread an approval is still an approval, not a question about the incident.
    refused = _say(slack_client, slack, f"approve {run_id[:10]}", user="UMALLORY", ts="4.3", thread="4.1")
    assert "is not in the approvers group; nothing was changed" in refused
    assert service.store.recorder.run(run_id)["status"] == "awaiting_approval" and cluster.executed == []
    approved = _say(slack_client, slack, f"approve {run_id[:10]}", user="UBOB", ts="4.4")
    assert "Approved by" in approved
    until(lambda: cluster.executed, "the approved drain")


@pytest.fixture
def framework() -> Iterator[FakeBotFramework]:
    with FakeBotFramework() as fake:
        yield fake


@pytest.fixture
def teams_client(tmp_path: Path, framework: FakeBotFramework, cluster: FakeCluster) -> Iterator[TestClient]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/teams.db",
        engine="rulebook",
        api_token=SecretStr("api"),
        teams_app_id=APP_ID,
        teams_app_password=SecretStr("pw"),
        approvers_file=approvers_file(tmp_path),
        teams_openid_metadata_url=f"{framework.url}/openid",
        public_url=PUBLIC,
        state_dir=tmp_path / "state",
    )
    app = create_app(settings, context_factory=fake_world(cluster), teams_credentials=StaticTokenCredentials(APP_ID))
    with TestClient(app) as client:
        seed(client.app.state.service.store.recorder)  # type: ignore[attr-defined]
        yield client


def _tell(client: TestClient, framework: FakeBotFramework, text: str, **kw: Any) -> str:
    before = len(framework.replies)
    assert _post(client, framework, _activity(framework, text, **kw)) in (200, 202)
    replies = until(lambda: [r for r in framework.replies[before:] if r["body"].get("text")], "the reply")
    return str(replies[0]["body"]["text"])


def test_teams_routes_by_intent(teams_client, framework, cluster):
    before = _incidents(teams_client)
    answer = _tell(teams_client, framework, f"<at>mitigate</at> {KV_QUESTION}", activity_id="q1")
    assert "INC-KV-1" in answer and f"{PUBLIC}/dashboard/incidents/INC-KV-1" in answer
    sent = next(r["body"] for r in framework.replies if "INC-KV-1" in (r["body"].get("text") or ""))
    assert sent["textFormat"] == "plain"  # incident titles in it cannot become markdown links
    chinese = _tell(teams_client, framework, "上次 llama-70b 的超时是怎么解决的？", activity_id="q2")
    assert "INC-408-1" in chinese and "earlier incident(s) match" in chinese  # answered, in English
    assert _tell(teams_client, framework, "", activity_id="q3").startswith("Hello!")
    assert "I read at most 8,000" in _tell(teams_client, framework, "z" * 20_000, activity_id="q4")
    assert _tell(teams_client, framework, "reject", activity_id="q5").startswith("Which run?")
    assert _incidents(teams_client) == before and cluster.executed == []
    started = _tell(teams_client, framework, "XID 79 on node aks-gpu-7 in namespace llm-serving", activity_id="q6")
    assert started.startswith("Triaging") and len(_incidents(teams_client)) == len(before) + 1
