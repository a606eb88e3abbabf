"""Scaling with history (issue 14, item 7): the gap report aggregated in SQL equals the report computed
by loading everything; lists page by cursor with filters; pruning keeps the audit trail."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from api.settings import Settings
from api.wiring import open_store
from store.models import ActionRow, ApprovalRow, IncidentRow, RunRow, RunStepRow
from tests.db_urls import postgres_schema_url

T0 = datetime(2026, 9, 20, 8, 0, tzinfo=UTC)
LABELS = [
    ("A3", "timeout", "M4"),
    ("A3", "resource_exhaustion", "M2"),
    ("A1", "bad_node", "M4"),
    ("unknown", "unknown", "M1"),
]
OUTCOMES = ("mitigated", "no_action", "escalated", "awaiting_approval", "running")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/history.db"
    else:
        with postgres_schema_url() as url:
            yield url


def _history(store: Any, count: int, seed: int = 7) -> list[str]:
    """Incidents over three months with varied outcomes, re-runs, approvals and timings, written the
    way the service writes them (steps recorded, then the run finished through the recorder)."""
    rng = random.Random(seed)
    ids = []
    for k in range(count):
        received = T0 + timedelta(hours=17 * k + rng.random())
        started = None if k % 5 == 0 else received - timedelta(minutes=rng.randint(1, 300))
        incident_id = f"H-{k:04d}"
        ids.append(incident_id)
        with store.sessions.begin() as session:
            source = ("alertmanager", "slack", "rest", "pagerduty")[k % 4]
            session.add(
                IncidentRow(
                    id=incident_id,
                    source=source,
                    title=f"t{k}",
                    payload={"id": incident_id, "title": f"t{k}"},
                    started_at=started,
                    received_at=received,
                    status="open",
                )
            )
        for attempt in range(1 + (k % 7 == 0)):  # some incidents were triaged twice
            run_id = f"r-{k:04d}-{attempt}"
            created = received + timedelta(seconds=rng.randint(1, 900) + 3600 * attempt)
            category, subcategory, mitigation = rng.choice(LABELS)
            outcome = rng.choice(OUTCOMES)
            with store.sessions.begin() as session:
                session.add(RunRow(id=run_id, incident_id=incident_id, status="running", created_at=created))
            store.recorder.record_step(run_id, "classify", "c", {"category": category, "subcategory": subcategory})
            store.recorder.record_step(run_id, "plan", "p", {"mitigation": mitigation})
            with store.sessions.begin() as session:
                for node in ("verify", "report"):
                    at = created + timedelta(minutes=rng.randint(1, 2000))
                    session.add(RunStepRow(run_id=run_id, node=node, seq=5, summary="", data={}, finished_at=at))
                if rng.random() < 0.5:
                    action = ActionRow(
                        run_id=run_id, idempotency_key=f"{run_id}-a", mitigation=mitigation, operation="x"
                    )
                    session.add(action)
                    session.flush()
                    if rng.random() < 0.5:
                        session.add(ApprovalRow(action_id=action.id, approver="alice", decision="approve"))
            report = {"category": category, "subcategory": subcategory, "mitigation": mitigation, "confidence": 0.8}
            if outcome in ("mitigated", "no_action", "escalated"):
                store.recorder.finish_run(run_id, status=outcome, report=report)
            elif outcome == "awaiting_approval":
                store.recorder.set_run_status(run_id, outcome, report)
    return ids


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}/{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _flat(item, f"{prefix}[{i}]").items()}
    return {prefix: value}


def test_the_gap_report_in_sql_equals_the_report_over_every_loaded_incident(db_url):
    from evals.gaps import gap_report
    from evals.gaps_store import store_gap_report
    from tests.gap_oracle import store_cases

    store = open_store(Settings(database_url=db_url))
    _history(store, 160)
    for since in (T0 - timedelta(days=1), T0 + timedelta(days=40), T0 + timedelta(days=400)):
        cases, outcome = store_cases(store.sessions, since)
        expected = _flat(gap_report(cases) | {"mitigate": outcome})
        got = _flat(store_gap_report(store.sessions, since))
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert got[key] == (pytest.approx(value, rel=1e-6, abs=1e-6) if isinstance(value, float) else value), key
    report = store_gap_report(store.sessions, T0 - timedelta(days=1))
    assert report["n"] == 160 and len(report["lifecycle"]) >= 3  # several months, each with percentiles
    assert report["mitigate"]["closed_without_human"] > 0


def _assert_report_matches_the_oracle(store: Any, since: datetime) -> None:
    from evals.gaps import gap_report
    from evals.gaps_store import store_gap_report
    from tests.gap_oracle import store_cases

    cases, outcome = store_cases(store.sessions, since)
    expected = _flat(gap_report(cases) | {"mitigate": outcome})
    got = _flat(store_gap_report(store.sessions, since))
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == (pytest.approx(value, rel=1e-6, abs=1e-6) if isinstance(value, float) else value), key


def test_migration_0008_fills_the_facts_of_incidents_stored_before_it(db_url):
    """A database at 0007 with a history, upgraded: the report over the facts table the migration filled
    equals the old computation; later writes keep it so (the triggers it created)."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import delete, select

    from api.wiring import Store
    from store.db import MIGRATIONS, make_engine, migrate, session_factory
    from store.recorder import StoreRecorder

    engine = make_engine(db_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0007")
    sessions = session_factory(engine)
    store = Store(StoreRecorder(sessions), sessions, engine)
    ids = _history(store, 60)
    with engine.connect() as conn:
        assert not conn.exec_driver_sql("SELECT 1 FROM alembic_version WHERE version_num = '0008'").first()
    migrate(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM incident_facts").scalar() == len(ids)
    for since in (T0 - timedelta(days=1), T0 + timedelta(days=20)):
        _assert_report_matches_the_oracle(store, since)
    store.recorder.start_run("r-late", ids[-1], "rulebook", status="queued")  # a re-run: now the latest
    store.recorder.record_step("r-late", "classify", "c", {"category": "A4", "subcategory": "late"})
    with store.sessions.begin() as session:  # an incident deleted with its runs, as a cleanup would
        runs = select(RunRow.id).where(RunRow.incident_id == ids[0])
        actions = select(ActionRow.id).where(ActionRow.run_id.in_(runs))
        session.execute(delete(ApprovalRow).where(ApprovalRow.action_id.in_(actions)))
        session.execute(delete(ActionRow).where(ActionRow.run_id.in_(runs)))
        session.execute(delete(RunStepRow).where(RunStepRow.run_id.in_(runs)))
        session.execute(delete(RunRow).where(RunRow.incident_id == ids[0]))
        session.execute(delete(IncidentRow).where(IncidentRow.id == ids[0]))
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM incident_facts").scalar() == len(ids) - 1
    _assert_report_matches_the_oracle(store, T0 - timedelta(days=1))


def test_changes_written_while_reports_refresh_the_facts_are_all_counted(db_url):
    """Writes only note which incident changed; a report refreshes the noted facts before it reads.
    Runs re-triaged and finished on one thread while reports refresh on another: once both stop, one
    more report equals the oracle over everything loaded, and no note is left behind."""
    import threading

    from evals.gaps_store import store_gap_report
    from store.facts import ANY_NOTE, refresh_facts

    store = open_store(Settings(database_url=db_url))
    ids = _history(store, 24)
    done = threading.Event()
    failures: list[BaseException] = []

    def rerun() -> None:
        try:
            for k, incident_id in enumerate(ids):
                run_id = f"r-again-{k}"
                store.recorder.start_run(run_id, incident_id, "rulebook", status="queued")
                store.recorder.record_step(run_id, "classify", "c", {"category": "A2", "subcategory": "again"})
                store.recorder.record_step(run_id, "plan", "p", {"mitigation": "M6"})
                report = {"category": "A2", "subcategory": "again", "mitigation": "M6", "confidence": 0.9}
                store.recorder.finish_run(run_id, status=("mitigated", "escalated")[k % 2], report=report)
        except BaseException as exc:  # surfaced by the assertion below
            failures.append(exc)
        finally:
            done.set()

    writer = threading.Thread(target=rerun)
    writer.start()
    reports = 0
    while not done.is_set():
        store_gap_report(store.sessions, T0 - timedelta(days=1))
        reports += 1
    writer.join(timeout=60)
    assert not failures, failures
    assert reports >= 1
    _assert_report_matches_the_oracle(store, T0 - timedelta(days=1))
    refresh_facts(store.engine)
    with store.engine.connect() as conn:
        assert conn.execute(ANY_NOTE).first() is None


def test_the_gap_report_reads_indexes_on_sqlite_never_sorting(tmp_path):
    from sqlalchemy import event

    from evals.gaps_store import store_gap_report
    from store.facts import ANY_NOTE, refresh_facts

    store = open_store(Settings(database_url=f"sqlite:///{tmp_path}/plan.db"))
    _history(store, 40)
    refresh_facts(store.engine)  # what is measured below is the report's reading, not the facts' refresh
    captured: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        captured.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", keep)
    report = store_gap_report(store.sessions, T0 + timedelta(days=5))
    event.remove(store.engine, "before_cursor_execute", keep)
    assert report["n"] > 0 and captured
    walks = sum(s.count("OFFSET") for s, _ in captured)  # two per month and measure, in one statement
    assert walks >= 2 * 3 * len(report["lifecycle"])
    with store.engine.connect() as conn:
        for statement, parameters in captured:
            if statement == str(ANY_NOTE):
                continue  # the refresh's check for notes: LIMIT 1 of an unindexed table, emptied above
            assert "incidents " not in statement and "runs" not in statement, statement  # no join
            plan = " | ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters))
            assert "SCAN incident_facts" not in plan or "USING" in plan, plan  # a range of an index
            assert "TEMP B-TREE" not in plan, plan  # groups and order statistics come from walking indexes


def _walk(fetch: Any, **filters: Any) -> list[dict[str, Any]]:
    rows, cursor = [], None
    for _ in range(1000):
        page = fetch(cursor=cursor, **filters)
        rows += page.rows
        cursor = page.next_cursor
        if cursor is None:
            return rows
    raise AssertionError("pagination did not end")


def test_lists_page_by_cursor_with_filters_and_no_row_twice(db_url):
    from api.lookup import BadCursor, incidents_page, runs_page

    store = open_store(Settings(database_url=db_url))
    _history(store, 60)
    with store.sessions.begin() as session:  # ties on the time: the id breaks them
        for k in range(5):
            session.add(IncidentRow(id=f"TIE-{k}", source="rest", title="", payload={}, received_at=T0, status="open"))
    with store.sessions() as session:
        stored = [(i.id, i.source, i.status, i.received_at) for i in session.query(IncidentRow)]
        runs = [(r.id, r.status, r.created_at) for r in session.query(RunRow)]

    def newest_first(rows: list[Any], at: int) -> list[str]:
        return [r[0] for r in sorted(rows, key=lambda r: (r[at], r[0]), reverse=True)]

    def incidents(**filters: Any) -> Any:
        return incidents_page(store.sessions, limit=7, **filters)

    assert [r["id"] for r in _walk(incidents)] == newest_first(stored, 3)
    assert [r["id"] for r in _walk(incidents, source="rest")] == newest_first([r for r in stored if r[1] == "rest"], 3)
    since = T0 + timedelta(days=20)
    naive = since.replace(tzinfo=None)
    recent = [r for r in stored if r[3].replace(tzinfo=None) >= naive and r[2].startswith("escalated")]
    assert [r["id"] for r in _walk(incidents, since=since, status="escalated")] == newest_first(recent, 3)
    assert [r["id"] for r in _walk(lambda **f: runs_page(store.sessions, limit=9, **f))] == newest_first(runs, 2)
    waiting = [r for r in runs if r[1] == "awaiting_approval"]
    walked = _walk(lambda **f: runs_page(store.sessions, limit=3, **f), status="waiting")
    assert [r["id"] for r in walked] == newest_first(waiting, 2) and waiting

    first = incidents()
    with store.sessions.begin() as session:  # an alert arriving between two pages moves nothing
        session.add(IncidentRow(id="NEW", source="rest", title="", payload={}, received_at=T0 + timedelta(days=999)))
    second = incidents(cursor=first.next_cursor)
    assert [r["id"] for r in first.rows + second.rows] == newest_first(stored, 3)[:14]
    with pytest.raises(BadCursor):
        incidents(cursor="not-a-cursor")
    with pytest.raises(BadCursor):  # a run list's cursor is no incident list's
        incidents(cursor=runs_page(store.sessions, limit=1).next_cursor)


def test_every_list_query_reads_an_index_in_its_order_not_the_table(tmp_path):
    from sqlalchemy import event

    from api.lookup import incidents_page, runs_page

    store = open_store(Settings(database_url=f"sqlite:///{tmp_path}/plan.db"))
    _history(store, 30)
    captured: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        captured.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", keep)
    cursor = incidents_page(store.sessions, limit=3).next_cursor
    for filters in ({}, {"status": "escalated"}, {"source": "rest"}, {"since": T0}, {"cursor": cursor}):
        incidents_page(store.sessions, limit=3, **filters)
    cursor = runs_page(store.sessions, limit=3).next_cursor
    for filters in ({}, {"status": "waiting"}, {"since": T0}, {"cursor": cursor}):
        runs_page(store.sessions, limit=3, **filters)
    event.remove(store.engine, "before_cursor_execute", keep)
    lists = [(s, p) for s, p in captured if "LIMIT" in s]  # the page queries (not the runs of a page)
    assert len(lists) == 11
    with store.engine.connect() as conn:
        for statement, parameters in lists:
            plan = " | ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters))
            assert "USE TEMP B-TREE FOR ORDER BY" not in plan, plan  # the order comes from an index
            table = "runs" if "FROM runs" in statement else "incidents"
            assert f"SCAN {table}" not in plan or f"SCAN {table} USING INDEX" in plan, plan


def test_rest_incidents_follow_the_link_header_to_the_end(tmp_path):
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from api.app import create_app
    from tests.fakes import FakeCluster, fake_world

    settings = Settings(database_url=f"sqlite:///{tmp_path}/rest.db", engine="rulebook", api_token=SecretStr("tok"))
    _history(open_store(settings), 25)
    auth = {"Authorization": "Bearer tok"}
    with TestClient(create_app(settings, context_factory=fake_world(FakeCluster()))) as client:
        url: str | None = "/incidents?limit=4&source=alertmanager"
        seen: list[dict[str, Any]] = []
        while url:
            response = client.get(url, headers=auth)
            assert response.status_code == 200
            seen += response.json()
            url = response.links.get("next", {}).get("url")
        assert [r["source"] for r in seen] == ["alertmanager"] * 7  # 25 incidents, every fourth from Alertmanager
        assert [r["received_at"] for r in seen] == sorted((r["received_at"] for r in seen), reverse=True)
        everything = client.get("/incidents?limit=500", headers=auth)
        assert len(everything.json()) == 25 and "link" not in everything.headers
        bad = client.get("/incidents?cursor=garbage", headers=auth)
        assert bad.status_code == 422 and "cursor" in bad.json()["detail"]
        assert client.get("/incidents?limit=4").status_code == 401
        retention = client.app.state.retention  # serve prunes by itself (MITIGATE_PRUNE_AFTER_DAYS, default 30)
        assert retention._thread is not None and retention._thread.is_alive()


def test_the_graph_is_compiled_once_per_checkpointer():
    from langgraph.checkpoint.memory import InMemorySaver

    from agent.graph import build_graph

    one, two = InMemorySaver(), InMemorySaver()
    assert build_graph(one) is build_graph(one) and build_graph() is build_graph()
    assert build_graph(one) is not build_graph(two)
    assert build_graph(one).checkpointer is one and build_graph(two).checkpointer is two


def _triage_examples(settings: Settings, store: Any) -> dict[str, str]:
    """Three examples through the real graph and checkpointer: statuses by run id."""
    import json

    from agent.context import TriageContext
    from agent.rulebook import load_rulebook
    from agent.schemas import Incident
    from api.runs import start_run
    from api.wiring import open_checkpointer
    from tests.conftest import ROOT
    from tests.fakes import FakeCluster, FakeSla
    from tools.guard import load_policy

    outcomes = {}
    with open_checkpointer(settings.database_url) as checkpointer:
        for name in ("transient-blip-resolved", "exhaustion-429-saturated", "bad-node-xid"):
            payload = json.loads((ROOT / "examples" / f"{name}.json").read_text())
            context = TriageContext(
                rulebook=load_rulebook(),
                policy=load_policy(),
                recorder=store.recorder,
                cluster=FakeCluster(),
                sla=FakeSla("verified"),
            )
            outcome = start_run(
                Incident.model_validate(payload),
                source="alertmanager",
                payload=payload,
                recorder=store.recorder,
                context=context,
                checkpointer=checkpointer,
            )
            outcomes[outcome.run_id] = outcome.status
    return outcomes


def _counts(store: Any) -> dict[str, int]:
    from sqlalchemy import func, select

    from store.models import ApprovalAttemptRow, SlaCheckRow

    with store.sessions() as session:
        return {
            t.__tablename__: session.scalar(select(func.count()).select_from(t)) or 0
            for t in (IncidentRow, RunRow, RunStepRow, ActionRow, ApprovalRow, ApprovalAttemptRow, SlaCheckRow)
        }


def test_prune_deletes_finished_runs_checkpoints_and_steps_and_keeps_the_audit_trail(db_url):
    from sqlalchemy import column, func, select, table

    from agent.graph import build_graph
    from api.wiring import open_checkpointer
    from store.retention import CHECKPOINT_TABLES, prune

    settings = Settings(database_url=db_url)
    store = open_store(settings)
    outcomes = _triage_examples(settings, store)
    waiting = [run for run, status in outcomes.items() if status == "awaiting_approval"]
    finished = [run for run in outcomes if run not in waiting]
    assert waiting and finished
    checkpoints = table(CHECKPOINT_TABLES[store.engine.dialect.name][-1], column("thread_id"))

    def checkpointed(run_id: str) -> int:
        with store.engine.connect() as conn:
            found = conn.execute(select(func.count()).select_from(checkpoints).where(column("thread_id") == run_id))
            return int(found.scalar() or 0)

    before = _counts(store)
    with store.sessions() as session:
        reports = {r.id: r.report for r in session.query(RunRow)}
    assert prune(store.engine, timedelta(days=1)).runs == 0  # nothing finished a day ago yet
    assert all(checkpointed(run) for run in outcomes)

    report = prune(store.engine, timedelta(0), batch=1)
    assert report.runs == len(finished) and report.checkpoint_rows > 0 and report.step_rows > 0
    assert [checkpointed(run) for run in finished] == [0] * len(finished)
    after = _counts(store)
    assert after["run_steps"] < before["run_steps"]
    assert {k: v for k, v in after.items() if k != "run_steps"} == {k: v for k, v in before.items() if k != "run_steps"}
    with store.sessions() as session:
        assert {r.id: r.report for r in session.query(RunRow)} == reports  # every run's outcome kept
    # The run waiting for a human still has everything it needs to resume.
    assert all(checkpointed(run) for run in waiting)
    with open_checkpointer(settings.database_url) as checkpointer:
        for run in waiting:
            assert build_graph(checkpointer).get_state({"configurable": {"thread_id": run}}).next
    assert prune(store.engine, timedelta(0)).runs == 0  # already pruned: nothing to do again


@pytest.mark.postgres
def test_prune_deletes_the_queues_finished_jobs_and_keeps_the_pending_ones() -> None:
    from sqlalchemy import text

    from store.retention import prune

    jobs = "SELECT id FROM procrastinate_jobs WHERE queue_name = 'retention-test'"
    with postgres_schema_url() as url:
        store = open_store(Settings(database_url=url))  # migrated: the queue's tables exist
        # As the queue does it: deferred (todo), taken (doing), finished; its triggers write the events.
        with store.engine.begin() as conn:
            for _ in range(3):
                conn.execute(
                    text(
                        "INSERT INTO procrastinate_jobs (queue_name, task_name, args, status) "
                        "VALUES ('retention-test', 'run', '{}', 'todo')"
                    )
                )
        with store.engine.begin() as conn:
            taken = [row[0] for row in conn.execute(text(jobs + " ORDER BY id LIMIT 2"))]
            conn.execute(text("UPDATE procrastinate_jobs SET status = 'doing' WHERE id = ANY(:ids)"), {"ids": taken})
        for job, final in zip(taken, ("succeeded", "failed"), strict=True):
            with store.engine.begin() as conn:
                conn.execute(
                    text("UPDATE procrastinate_jobs SET status = CAST(:s AS procrastinate_job_status) WHERE id = :id"),
                    {"s": final, "id": job},
                )

        def statuses() -> list[str]:
            query = "SELECT status::text FROM procrastinate_jobs WHERE queue_name = 'retention-test' ORDER BY 1"
            with store.engine.connect() as conn:
                return [row[0] for row in conn.execute(text(query))]

        assert prune(store.engine, timedelta(days=1)).queue_jobs == 0  # finished just now: kept
        assert statuses() == ["failed", "succeeded", "todo"]
        assert prune(store.engine, timedelta(0)).queue_jobs == 2
        assert statuses() == ["todo"]  # a job still to do is never a receipt to delete


def test_serve_prunes_by_itself_and_the_cli_prunes_on_demand(tmp_path):
    import os
    import subprocess
    import sys

    from api.retention_loop import RetentionLoop
    from tests.conftest import ROOT
    from tests.waiting import until

    settings = Settings(database_url=f"sqlite:///{tmp_path}/auto.db")
    store = open_store(settings)
    _history(store, 12)
    with store.engine.begin() as conn:  # the history is months old: so is when its runs last changed
        conn.exec_driver_sql("UPDATE runs SET updated_at = created_at")
    finished = _counts(store)["run_steps"]
    loop = RetentionLoop(store.engine, older_than_days=1, every_s=0.2, first_after_s=0.05)
    loop.start()
    try:
        until(lambda: loop.passes >= 1, "a retention pass", 30)
    finally:
        loop.stop()
    assert _counts(store)["run_steps"] < finished  # its finished runs were pruned

    env = os.environ | {"MITIGATE_DATABASE_URL": settings.database_url, "MITIGATE_STATE_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "db", "prune", "--older-than", "0s", "--vacuum"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "pruned" in done.stdout and "vacuumed" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "api.cli", "db", "prune", "--older-than", "soon"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "not a duration" in bad.stderr


def test_the_default_gap_report_is_served_from_memory_and_recomputed_behind():
    import threading

    from api.gap_cache import GapCache
    from tests.waiting import until

    calls: list[datetime] = []
    release = threading.Event()

    def compute(since: datetime) -> dict[str, Any]:
        calls.append(since)
        if len(calls) > 1:
            release.wait(30)  # a slow recomputation: views meanwhile get the previous report at once
        return {"n": len(calls)}

    cache = GapCache(compute, fresh_s=0.0)
    first, age = cache.report()
    assert first == {"n": 1} and age == 0.0 and datetime.now(UTC) - calls[0] > timedelta(days=29)
    stale, _ = cache.report()  # stale: served as is, one refresh started
    assert stale == {"n": 1}
    until(lambda: len(calls) == 2, "the background refresh", 10)
    assert cache.report()[0] == {"n": 1} and len(calls) == 2  # no second refresh while one runs
    release.set()
    until(lambda: cache.report()[0] == {"n": 2}, "the refreshed report", 10)


def test_the_dashboard_incident_list_pages_to_older_incidents(tmp_path):
    import re

    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from api.app import create_app
    from tests.fakes import FakeCluster, fake_world

    settings = Settings(database_url=f"sqlite:///{tmp_path}/dash.db", engine="rulebook", api_token=SecretStr("tok"))
    store = open_store(settings)
    with store.sessions.begin() as session:
        for k in range(205):
            received = T0 + timedelta(minutes=k)
            session.add(IncidentRow(id=f"D-{k:03d}", source="rest", title=f"t{k}", payload={}, received_at=received))
    with TestClient(create_app(settings, context_factory=fake_world(FakeCluster()))) as client:
        first = client.get("/dashboard/incidents", auth=("d", "tok"))
        shown = set(re.findall(r"/dashboard/incidents/(D-\d+)", first.text))
        older = re.search(r'id="incidents-older" href="([^"]+)"', first.text)
        assert len(shown) == 200 and older is not None
        second = client.get(older.group(1).replace("&amp;", "&"), auth=("d", "tok"))
        rest = set(re.findall(r"/dashboard/incidents/(D-\d+)", second.text))
        assert rest == {f"D-{k:03d}" for k in range(5)} and not rest & shown
        assert 'id="incidents-older"' not in second.text
        assert client.get("/dashboard/incidents?cursor=junk", auth=("d", "tok")).status_code == 422
