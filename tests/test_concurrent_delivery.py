"""Deliveries of one alert racing in are one incident, on SQLite and PostgreSQL: the insert's ON CONFLICT
decides who stored it, so every loser is told "duplicate" and none raises (which would be a 500)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from agent.schemas import Incident
from api.pg_queue import job_in_statement
from store.correlation import Correlator
from store.db import make_engine, migrate, session_factory
from store.models import IncidentRow, RunRow
from store.recorder import StoreRecorder
from tests.db_urls import postgres_schema_url

RACERS = 12


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def recorder(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreRecorder]:
    def opened(url: str) -> StoreRecorder:
        engine = make_engine(url)
        migrate(engine)
        return StoreRecorder(session_factory(engine))

    if request.param == "sqlite":
        yield opened(f"sqlite:///{tmp_path}/race.db")
        return
    with postgres_schema_url() as url:
        store = opened(url)
        yield store
        store.sessions.kw["bind"].dispose()


def _race(call: Callable[[int], Any]) -> list[Any]:
    """Run `call(i)` on RACERS threads released together; their results, or the exception raised."""
    start = threading.Barrier(RACERS)
    results: list[Any] = [None] * RACERS

    def one(i: int) -> None:
        start.wait()
        try:
            results[i] = call(i)
        except Exception as exc:  # the defect this test is about
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def _count(recorder: StoreRecorder, row: Any) -> int:
    with recorder.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(row)) or 0)


def test_one_alert_delivered_at_once_is_one_incident_with_one_run(recorder):
    incident = Incident(id="am-race", title="EngineRequestsWaitingHigh: backlog")
    on_postgres = recorder.sessions.kw["bind"].dialect.name == "postgresql"

    def deliver(i: int) -> bool:
        return recorder.save_incident_with_run(
            incident,
            f"run-{i}",
            source="alertmanager",
            payload={"n": i},
            engine="rulebook",
            job=job_in_statement(f"run-{i}") if on_postgres else None,
        )

    results = _race(deliver)
    assert sorted(map(repr, results)) == sorted(["True"] + ["False"] * (RACERS - 1))
    assert _count(recorder, IncidentRow) == 1 and _count(recorder, RunRow) == 1
    if on_postgres:  # only the delivery that stored the incident wrote its run's job
        with recorder.sessions() as session:
            run_id = session.scalar(select(RunRow.id))
            jobs = session.execute(text("SELECT lock, args FROM procrastinate_jobs")).all()
        assert [(lock, args["run_id"]) for lock, args in jobs] == [(run_id, run_id)]


def test_a_correlated_alert_delivered_at_once_is_stored_once(recorder):
    primary = Incident(id="am-primary", title="first of the group")
    assert recorder.save_incident_with_run(primary, "run-p", source="alertmanager", payload={}, engine="rulebook")
    correlator = Correlator(recorder.sessions)
    joining = Incident(id="am-joining", title="second of the group")

    def deliver(_i: int) -> bool:
        return correlator.save_correlated(
            joining,
            primary_id=primary.id,
            reason="same Alertmanager group",
            source="alertmanager",
            payload={},
            fingerprint="fp",
            correlation_key="alertmanager:g",
        )

    results = _race(deliver)
    assert sorted(map(repr, results)) == sorted(["True"] + ["False"] * (RACERS - 1))
    assert _count(recorder, IncidentRow) == 2
    with recorder.sessions() as session:
        stored = session.get(IncidentRow, primary.id)
        assert stored is not None and stored.payload["description"].count("Also firing: second of the group") == 1
