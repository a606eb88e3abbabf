"""Investigation's other sources and its step in the graph: metric trends from a real Prometheus
(ongoing, then recovered), a Prometheus that is down, slow or answers nonsense (gaps, within the
deadline), history from the incident store on SQLite and PostgreSQL, findings turned into the
rulebook's readings, and a graph that carries on whatever investigation does."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from agent.change_signals import change_signals, with_earliest_change
from agent.findings import finding
from agent.graph import builder
from agent.rulebook import score_subcategories
from agent.schemas import Alert, Classification, Incident
from api.settings import Settings
from api.wiring import open_store
from tests.conftest import incident as incident_dict
from tests.db_urls import postgres_schema_url
from tests.test_metrics import prometheus  # noqa: F401 - the real Prometheus scraping a test exporter
from tests.waiting import until
from tools.investigate import Bounds, Investigator
from tools.investigate.bounds import redact, safe_text
from tools.investigate.history import incident_history
from tools.investigate.trends import metric_trends
from tools.metrics import MetricsSettings, PrometheusMetrics

FAST = Bounds(trend_minutes=1, trend_step_s=1, timeout_s=1.0)


def _incident(**fields: Any) -> Incident:
    labels = {"alertname": "SLABurn", "namespace": "ns", "model": "m", "deployment": "m-eastus"}
    return Incident(id=fields.pop("id", "I-1"), title="SLA burn", alert=Alert(status="firing", labels=labels), **fields)


# The trend test asserts what is found; a busy machine's slow query must not become a gap.
PATIENT_TRENDS = Bounds(trend_minutes=1, trend_step_s=1, timeout_s=5.0)


def _trend(url: str, name: str, include_steady: bool = False) -> dict[str, Any] | None:
    queries = PrometheusMetrics(url, MetricsSettings(window="3s")).trend_queries(_incident())
    findings, gaps = metric_trends(
        url, {name: queries[name]}, now=datetime.now(UTC), bounds=PATIENT_TRENDS, include_steady=include_steady
    )
    assert gaps == [] or include_steady, gaps
    return findings[0] if findings else None


def test_a_series_that_moves_is_ongoing_then_recovered_with_its_query_and_range(prometheus):  # noqa: F811
    url, traffic = prometheus
    traffic.error_share = 0.0

    def clean_history() -> bool:
        # The baseline is the first quarter of the minute: it needs clean points before the errors, or
        # a Prometheus started moments ago (or still holding an earlier test's errors) has none.
        trend = _trend(url, "http_5xx_rate", include_steady=True)
        data = trend["data"] if trend else {}
        return data.get("state") == "steady" and data.get("points", 0) >= 20 and data.get("extreme", 1.0) <= 0.01

    until(clean_history, "20 s of clean history", 90)
    assert _trend(url, "http_5xx_rate") is None  # a steady series is not reported unless asked for
    traffic.error_share = 0.4
    ongoing = until(
        lambda: (t := _trend(url, "http_5xx_rate")) and t["data"]["state"] == "ongoing" and t, "ongoing", 30
    )
    assert ongoing["source"]["type"] == "prometheus" and "gateway_requests_total" in ongoing["source"]["query"]
    assert set(ongoing["source"]["range"]) == {"start", "end", "step"} and ongoing["at"] is not None
    traffic.error_share = 0.0
    recovered = until(
        lambda: (t := _trend(url, "http_5xx_rate")) and t["data"]["state"] == "recovered" and t, "recovered", 40
    )
    assert recovered["data"]["last"] < recovered["data"]["extreme"]


class _Prometheus(BaseHTTPRequestHandler):
    """A server on Prometheus' port that is not a good Prometheus: it answers nonsense or too late."""

    mode = "malformed"

    def do_GET(self) -> None:
        if self.mode == "slow":
            time.sleep(3)
        body = {
            "malformed": b'{"status": "success", "data": {"resultType": "matrix", "result": [{"values": "nope"}]}}',
            "html": b"<html>502 Bad Gateway</html>",
            "slow": b"{}",
        }[self.mode]
        self.send_response(502 if self.mode == "html" else 200)
        self.send_header("Content-Type", "text/html" if self.mode == "html" else "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def bad_prometheus() -> Iterator[tuple[str, type[_Prometheus]]]:
    handler = type("Handler", (_Prometheus,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()


@pytest.mark.parametrize(
    ("mode", "said"),
    [
        ("malformed", "malformed answer for sla"),
        ("html", "Prometheus answered 502"),
        ("slow", "did not answer within 1 s"),
    ],
)
def test_a_bad_prometheus_is_a_gap_within_the_deadline(bad_prometheus, mode, said):
    url, handler = bad_prometheus
    handler.mode = mode
    started = time.monotonic()
    series = {"sla": "up", "queue_depth": "up", "kv_cache": "up", "http_5xx_rate": "up", "ttft": "up"}
    findings, gaps = metric_trends(url, series, now=datetime.now(UTC), bounds=FAST)
    assert findings == [] and gaps and said in gaps[0]["reason"], gaps
    assert time.monotonic() - started < 3.5  # one timeout (1 s), not one per series (5 s)


def test_an_unreachable_prometheus_says_no_trend():
    findings, gaps = metric_trends("http://127.0.0.1:9", {"sla": "up"}, now=datetime.now(UTC), bounds=FAST)
    assert findings == [] and gaps[0]["source"] == "prometheus" and gaps[0]["reason"].endswith("no trend")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "sqlite":
        yield open_store(Settings(database_url=f"sqlite:///{tmp_path}/store.db"))
    else:
        with postgres_schema_url() as url:
            yield open_store(Settings(database_url=url))


def test_history_counts_the_same_alert_on_the_same_target_and_names_the_last_outcome(store):
    recorder = store.recorder
    for i, ago in enumerate((3, 1)):
        earlier = _incident(id=f"I-old-{i}", started_at=datetime.now(UTC) - timedelta(days=ago))
        recorder.save_incident(earlier, source="test", payload={})
        run = f"run-{i}-{uuid.uuid4().hex[:6]}"
        recorder.start_run(run, earlier.id, "rulebook")
        report = {"category": "A3", "subcategory": "crash", "confidence": 0.8, "mitigation": "M4"}
        recorder.finish_run(run, status="mitigated", report=report)
    other = Incident(
        id="I-other", title="x", alert=Alert(status="firing", labels={"alertname": "Other", "deployment": "m-eastus"})
    )
    recorder.save_incident(other, source="test", payload={})
    now = _incident(id="I-now")
    findings, gaps = incident_history(store.sessions, now, now=datetime.now(UTC))
    assert gaps == [] and len(findings) == 1
    found = findings[0]
    assert found["data"]["count"] == 2 and sorted(found["source"]["incident_ids"]) == ["I-old-0", "I-old-1"]
    assert found["data"]["last"]["incident"] == "I-old-1" and found["data"]["last"]["classified"] == "A3/crash"
    assert "SLABurn on m-eastus seen 2 time(s)" in found["summary"]


def test_unreadable_history_is_a_gap(tmp_path):
    store = open_store(Settings(database_url=f"sqlite:///{tmp_path}/store.db"))
    store.engine.dispose()
    (tmp_path / "store.db").unlink()
    (tmp_path / "store.db").mkdir()  # no longer a database file
    findings, gaps = incident_history(store.sessions, _incident(), now=datetime.now(UTC))
    assert findings == [] and gaps[0]["source"] == "incident_store"


def test_redaction_and_printable_text():
    assert redact("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abcdEFGH") == "Authorization: [redacted]"
    assert "sk-live" not in redact("key sk-liveABCDEFGHIJKLMNOP used")
    assert redact("--model meta-llama/Meta-Llama-3-70B-Instruct --max-num-seqs 256") == (
        "--model meta-llama/Meta-Llama-3-70B-Instruct --max-num-seqs 256"
    )
    text = safe_text(b"\xff\xfe\x00ok\x1b[2J\n\xe2\x82", 1000)
    assert all(ch.isprintable() or ch == "\n" for ch in text) and "ok" in text


def _change(minutes_before: float, impact: datetime, **data: Any) -> dict[str, Any]:
    at = (impact - timedelta(minutes=minutes_before)).isoformat()
    return dict(finding("recent_change", "x", {"type": "kubernetes"}, at, data))


def test_findings_become_readings_only_for_configuration_changes_before_the_impact():
    impact = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    arg = [{"field": "args --max-num-seqs", "from": "256", "to": "1024"}]
    assert change_signals([_change(12, impact, change="rollout", changes=arg)], impact) == {
        "config_change_age_min": 12.0
    }
    assert change_signals([_change(12, impact, change="rollout", changes=[])], impact) == {}  # a restart
    assert change_signals([_change(-5, impact, change="rollout", changes=arg)], impact) == {}  # after the impact
    assert change_signals([_change(12, impact, change="cordon")], impact) == {}
    alone = _change(30, impact, change="created", changes=[])  # a new service: nothing older to compare with
    assert change_signals([alone], impact) == {}
    beside = _change(30, impact, change="created", changes=arg, previous_deployment="ns/m", previous_ready=2)
    assert change_signals([beside], impact) == {"config_change_age_min": 30.0, "new_deployment_beside_good": 1.0}


def test_a_change_just_before_an_engine_symptom_is_the_earliest_cause(rulebook):
    oom = Incident(id="I-2", title="vLLM pods OOMKilled, restarting", signals={"pod_restarts": 6, "oom_kills": 4})
    engine = Classification(category="A3", subcategory="crash", confidence=0.9, engine="model")
    without = score_subcategories(rulebook, oom)
    assert with_earliest_change(rulebook, oom, without, engine) is engine  # no investigation: unchanged
    changed = oom.model_copy(update={"signals": {**oom.signals, "config_change_age_min": 12.0}})
    answer = with_earliest_change(rulebook, changed, score_subcategories(rulebook, changed), engine)
    assert (answer.category, answer.subcategory) == ("A2", "config_change")
    assert "Earliest cause" in answer.rationale and any(
        e.detail.startswith("config_change_age_min=12") for e in answer.evidence
    )
    surge = changed.model_copy(update={"signals": {"http_429_rate": 0.2, "config_change_age_min": 12.0}})
    exhausted = Classification(category="A3", subcategory="resource_exhaustion", confidence=0.9, engine="model")
    assert with_earliest_change(rulebook, surge, score_subcategories(rulebook, surge), exhausted) is exhausted
    infra = Classification(category="A1", subcategory="bad_node", confidence=0.9, engine="model")
    assert with_earliest_change(rulebook, changed, score_subcategories(rulebook, changed), infra) is infra


class _Broken:
    local_only = False  # as if it read a cluster

    def investigate(self, incident: Incident, entities: dict[str, str]) -> dict[str, Any]:
        raise RuntimeError("boom")


class _Found:
    local_only = False

    def investigate(self, incident: Incident, entities: dict[str, str]) -> dict[str, Any]:
        started = incident.started_at or datetime.now(UTC)
        change = _change(
            12, started, change="rollout", changes=[{"field": "args --max-num-seqs", "from": "256", "to": "1024"}]
        )
        return {"findings": [change], "gaps": [], "elapsed_ms": 1.0}


def _run(context: Any, **fields: Any) -> dict[str, Any]:
    graph = builder.compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": uuid.uuid4().hex}}
    return graph.invoke({"run_id": "r1", "incident": incident_dict(**fields)}, config, context=context)


def test_the_graph_states_gaps_without_an_investigator_and_survives_a_broken_one(context):
    state = _run(context, title="vLLM pods OOMKilled")
    assert state["report"]["investigation"]["findings"] == []
    assert {g["source"] for g in state["report"]["investigation"]["gaps"]} == {"kubernetes", "prometheus"}
    from dataclasses import replace

    state = _run(replace(context, investigator=_Broken()), title="vLLM pods OOMKilled")
    assert "boom" in state["report"]["investigation"]["gaps"][0]["reason"] and state["report"]["status"]


def test_a_change_found_by_investigation_reaches_the_classification_and_the_timeline(context):
    from dataclasses import replace

    ctx = replace(context, investigator=_Found())
    state = _run(ctx, title="vLLM pods OOMKilled and restarting", signals={"pod_restarts": 6, "oom_kills": 3})
    assert (state["report"]["category"], state["report"]["subcategory"]) == ("A2", "config_change")
    assert state["report"]["investigation"]["signals"] == {"config_change_age_min": 12.0}
    step = ctx.recorder.steps[("r1", "investigate")]
    assert step["summary"].startswith("1 findings, 0 gaps") and json.dumps(step["data"])


def test_an_investigator_without_any_source_configured_gives_gaps_only():
    result = Investigator().investigate(_incident(), {"namespace": "ns", "deployment": "m-eastus"})
    assert result["findings"] == [] and {g["source"] for g in result["gaps"]} == {"kubernetes", "prometheus"}


def test_slack_and_teams_messages_show_findings_with_their_sources_and_the_gaps():
    from api.chat_summary import summarize
    from api.runs import RunOutcome
    from api.slack_blocks import blocks
    from api.teams_card import card

    change = finding(
        "recent_change",
        "Deployment ns/m-v2 created (12 min before impact), revision 1; differs from m: args --max-num-seqs 256 → 1024",
        {"type": "kubernetes", "object": "apps/v1 ReplicaSet ns/m-v2-7f4", "resourceVersion": "356"},
        None,
    )
    trend = finding(
        "metric_trend", "sla ongoing: baseline 1, worst 0.7, now 0.72", {"type": "prometheus", "query": "q"}
    )
    investigation = {"findings": [change, trend], "gaps": [{"source": "kubernetes", "reason": "log: forbidden (403)"}]}
    report = {
        "status": "proposed",
        "category": "A2",
        "subcategory": "config_change",
        "confidence": 0.68,
        "plan": {
            "mitigation": "M6",
            "operation": "delete_deployment",
            "target": {"kind": "deployment", "name": "m-v2"},
        },
        "investigation": investigation,
    }
    summary = summarize(RunOutcome("r1", "proposed", report), _incident())
    slack = json.dumps(blocks(summary), ensure_ascii=False)
    assert "--max-num-seqs 256 → 1024 (apps/v1 ReplicaSet ns/m-v2-7f4@356)" in slack
    assert "sla ongoing" in slack and "Prometheus range query" in slack
    assert "not looked at: kubernetes: log: forbidden (403)" in slack
    teams = json.dumps(card(summary), ensure_ascii=False)
    assert "Found" in teams and "apps/v1 ReplicaSet ns/m-v2-7f4@356" in teams and "Not looked at" in teams


def test_a_source_slower_than_the_budget_is_left_out_and_said_so():
    class Slow(Investigator):
        def sources(self, incident: Incident, entities: dict[str, str]) -> Any:
            fast = finding("history", "seen before", {"type": "incident_store", "incident_ids": ["I-0"]})
            return {"slow": lambda: (time.sleep(6.0), ([], []))[1], "fast": lambda: ([fast], [])}, []

    started = time.monotonic()
    result = Slow(budget_s=0.3).investigate(_incident(), {})
    assert time.monotonic() - started < 3.0  # not waiting for the slow source (6 s)
    assert [f["summary"] for f in result["findings"]] == ["seen before"]
    assert result["gaps"] == [{"source": "slow", "reason": "slow took longer than the 0.3 s budget: left out"}]


def test_with_only_the_store_to_read_intake_looks_and_the_step_is_recorded_without_a_superstep(context, tmp_path):
    from dataclasses import replace

    from api.settings import Settings
    from api.wiring import open_store

    store = open_store(Settings(database_url=f"sqlite:///{tmp_path}/h.db"))
    alert = {"status": "firing", "labels": {"alertname": "SLABurn", "namespace": "ns", "deployment": "m-eastus"}}
    earlier = Incident.model_validate(incident_dict(title="SLABurn again", id="I-earlier", alert=alert))
    store.recorder.save_incident(earlier, source="alertmanager", payload={})
    investigator = Investigator(sessions=store.sessions)
    assert investigator.local_only and not Investigator(prometheus_url="http://x", trend_queries=dict).local_only
    ctx = replace(context, investigator=investigator)
    graph = builder.compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": uuid.uuid4().hex}}
    ran = [
        name
        for chunk in graph.stream(
            {"run_id": "r1", "incident": incident_dict(title="SLABurn", alert=alert)}, config, context=ctx
        )
        for name in chunk
    ]
    assert "investigate" not in ran and ran[0] == "intake"
    findings = graph.get_state(config).values["report"]["investigation"]["findings"]
    history = [f for f in findings if f["kind"] == "history"]
    assert history and history[0]["source"]["incident_ids"] == ["I-earlier"]
    assert ("r1", "investigate") in ctx.recorder.steps  # the timeline still shows the step
