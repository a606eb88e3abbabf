"""The store on SQLite and on PostgreSQL: migrations, the run trail, exactly-once actions, and runs that
survive the death of their process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from agent.schemas import Incident
from api.settings import Settings
from api.wiring import open_store
from store.migrations import HEAD_REVISION
from store.models import ActionRow, RunRow
from tests.conftest import ROOT
from tests.db_urls import postgres_schema_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/store.db"
    else:
        with postgres_schema_url() as url:
            yield url


def test_migrations_create_the_schema_once(db_url):
    store = open_store(Settings(database_url=db_url))
    tables = set(inspect(store.engine).get_table_names())
    assert {
        "incidents",
        "runs",
        "run_steps",
        "actions",
        "approvals",
        "sla_checks",
        "eval_runs",
        "eval_cases",
        "alembic_version",
    } <= tables
    open_store(Settings(database_url=db_url))  # a second start must not fail or migrate again


def test_head_revision_constant_matches_the_migration_files():
    files = sorted((ROOT / "store" / "migrations" / "versions").glob("*.py"))
    revisions = {re.search(r"^revision = ['\"](\w+)['\"]", f.read_text(), re.M).group(1) for f in files}
    downs = {m.group(1) for f in files if (m := re.search(r"^down_revision = ['\"](\w+)['\"]", f.read_text(), re.M))}
    assert revisions - downs == {HEAD_REVISION}


def test_recorder_keeps_one_row_per_action_and_per_approver(db_url):
    store = open_store(Settings(database_url=db_url))
    recorder = store.recorder
    assert recorder.save_incident(Incident(id="S-1", title="t"), source="test", payload={"id": "S-1"})
    assert not recorder.save_incident(Incident(id="S-1", title="t"), source="test", payload={"id": "S-1"})
    recorder.start_run("run-a", "S-1", "rulebook")
    plan = {"mitigation": "M4", "operation": "rollout_restart", "target": {"name": "x"}, "risk": "medium"}
    recorder.propose_action("run-a", "k1", plan)
    recorder.propose_action("run-a", "k1", plan)
    recorder.record_approval("k1", "alice", "approve")
    recorder.record_approval("k1", "alice", "approve")
    recorder.record_step("run-a", "plan", "first", {})
    recorder.record_step("run-a", "plan", "again on resume", {})
    with store.sessions() as session:
        actions = session.scalars(select(ActionRow)).all()
        assert len(actions) == 1 and len(actions[0].approvals) == 1
        run = session.get(RunRow, "run-a")
        assert [s.summary for s in run.steps] == ["again on resume"]


def test_steps_keep_their_order_and_place_and_label_the_run_only_when_a_label_changes(db_url):
    store = open_store(Settings(database_url=db_url))
    recorder = store.recorder
    recorder.save_incident(Incident(id="S-2", title="t"), source="test", payload={})
    recorder.start_run("run-b", "S-2", "rulebook")
    recorder.record_step("run-b", "intake", "incident S-2", {"entities": {"namespace": "ns"}})
    recorder.record_step("run-b", "classify", "A3/crash", {"category": "A3", "subcategory": "crash"})
    recorder.record_step("run-b", "plan", "M4", {"mitigation": "M4", "target": {"name": "m"}})
    with store.sessions() as session:
        run = session.get(RunRow, "run-b")
        assert (run.category, run.subcategory, run.mitigation) == ("A3", "crash", "M4")
        labelled = run.updated_at
    # Classify again on resume with the same answer: its row keeps its place, the run is not rewritten.
    recorder.record_step("run-b", "classify", "A3/crash again", {"category": "A3", "subcategory": "crash"})
    with store.sessions() as session:
        run = session.get(RunRow, "run-b")
        assert [(s.seq, s.node, s.summary) for s in run.steps] == [
            (0, "intake", "incident S-2"),
            (1, "classify", "A3/crash again"),
            (2, "plan", "M4"),
        ]
        assert run.steps[0].data == {"entities": {"namespace": "ns"}} and run.updated_at == labelled
    recorder.record_step("run-b", "classify", "A2/config_change", {"category": "A2", "subcategory": "config_change"})
    with store.sessions() as session:
        run = session.get(RunRow, "run-b")
        assert (run.category, run.subcategory) == ("A2", "config_change") and run.updated_at > labelled


def _proc(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "tests.proc_run", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _incident(tmp_path: Path, payload: dict) -> str:
    path = tmp_path / "incident.json"
    path.write_text(json.dumps(payload))
    return str(path)


SATURATED = {
    "id": "X-1",
    "title": "429 throttling, queue backlog on every replica",
    "alert": {"labels": {"alertname": "Q", "namespace": "llm-serving", "deployment": "llama-70b"}},
    "signals": {"replicas_desired": 4},
}
BAD_NODE = {
    "id": "X-2",
    "title": "XID 79 on node aks-gpu-7, pods there keep failing",
    "alert": {"labels": {"alertname": "GPUXid", "node": "aks-gpu-7", "namespace": "llm-serving"}},
}


def test_run_killed_before_its_last_node_resumes_in_a_new_process(db_url, tmp_path):
    log, incident = tmp_path / "cluster.log", _incident(tmp_path, SATURATED)
    crashed = subprocess.run(
        [sys.executable, "-m", "tests.proc_run", "start", db_url, str(log), incident, "--crash-in-verify"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert crashed.returncode == 17  # died inside verify, after the action was executed
    store = open_store(Settings(database_url=db_url))
    [run_id] = store.recorder.runs_with_status("running")
    outcome = _proc("resume", db_url, str(log), incident, run_id)
    assert outcome["status"] == "mitigated"
    assert len(log.read_text().splitlines()) == 1  # the scale-out ran once, not again on resume
    assert store.recorder.run(run_id)["status"] == "mitigated"


def test_paused_run_survives_a_restart_and_executes_once_on_approval(db_url, tmp_path):
    log, incident = tmp_path / "cluster.log", _incident(tmp_path, BAD_NODE)
    paused = _proc("start", db_url, str(log), incident)
    assert paused["status"] == "awaiting_approval" and not log.exists()
    still = _proc("resume", db_url, str(log), incident, paused["run_id"])
    assert still["status"] == "awaiting_approval" and not log.exists()
    done = _proc("approve", db_url, str(log), incident, paused["run_id"])
    assert done["status"] == "mitigated"
    again = _proc("resume", db_url, str(log), incident, paused["run_id"])
    assert again["status"] == "mitigated"
    assert len(log.read_text().splitlines()) == 1
