"""The PostgreSQL job queue with replicas as real processes (tests/serve_app.py under uvicorn, and
`mitigate worker`): each run executes exactly once, a killed worker's runs finish on another within the
lease, a lease that expires on a live worker never makes a run execute twice, and concurrent deliveries
of one alert are one incident."""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from store.db import make_engine
from tests.conftest import ROOT
from tests.db_urls import postgres_schema_url
from tests.waiting import until

pytestmark = pytest.mark.postgres

TOKEN = "queue-test-token"
LEASE_S = 3.0


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_schema_url() as url:
        yield url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp_path: Path, url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MITIGATE_", "OPENAI_"))}
    return (
        env
        | {
            "MITIGATE_DATABASE_URL": url,
            "MITIGATE_STATE_DIR": str(tmp_path / "state"),
            "MITIGATE_ENGINE": "rulebook",
            "MITIGATE_ALERTMANAGER_TOKEN": TOKEN,
            "MITIGATE_API_TOKEN": TOKEN,
            "MITIGATE_QUEUE_LEASE_S": str(LEASE_S),
            "MITIGATE_RATE_LIMIT_PER_MINUTE": "100000",
            "TEST_CLUSTER_LOG": str(tmp_path / "cluster.log"),
            "TEST_SLA_MODE": "verified",
        }
        | extra
    )


class Replica:
    def __init__(self, tmp_path: Path, url: str, **extra: str) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "tests.serve_app:app", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT,
            env=_env(tmp_path, url, **extra),
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / f"replica-{self.port}.log").open("wb"),
        )
        until(lambda: self.get("/healthz") is not None, "the replica to answer", 90)

    def get(self, path: str) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            return None

    def post_alert(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/webhooks/alertmanager",
            data=json.dumps(payload).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, {"error": exc.read().decode(errors="replace")}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def alert(i: int, *, group: str | None = None) -> dict[str, Any]:
    """One firing alert about its own deployment: each run scales a different target (no cooldown)."""
    return {
        "version": "4",
        "groupKey": group or f"group-{i}",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "startsAt": "2026-11-24T10:00:00Z",
                "fingerprint": f"fp-{i}",
                "labels": {
                    "alertname": "EngineRequestsWaitingHigh",
                    "namespace": "llm-serving",
                    "deployment": f"m-{i}",
                },
                "annotations": {"summary": "429 throttling and queue backlog on every replica"},
            }
        ],
    }


@functools.cache
def _engine(url: str) -> Any:
    return make_engine(url)


def _scalar(url: str, query: str, **params: Any) -> Any:
    with _engine(url).connect() as connection:
        return connection.execute(text(query), params).scalar()


def _rows(url: str, query: str, **params: Any) -> list[Any]:
    with _engine(url).connect() as connection:
        return list(connection.execute(text(query), params).all())


def _unfinished(url: str) -> int:
    return int(_scalar(url, "SELECT count(*) FROM runs WHERE status IN ('queued', 'running', 'retrying')"))


def _forked_histories(url: str) -> int:
    """Runs whose checkpoint history has two children of one checkpoint: executed twice from one state."""
    return int(
        _scalar(
            url,
            "SELECT count(DISTINCT thread_id) FROM (SELECT thread_id, parent_checkpoint_id FROM checkpoints "
            "WHERE checkpoint_ns = '' AND parent_checkpoint_id IS NOT NULL "
            "GROUP BY thread_id, parent_checkpoint_id HAVING count(*) > 1) forks",
        )
    )


def _events(url: str, kind: str) -> int:
    return int(_scalar(url, "SELECT count(*) FROM procrastinate_events WHERE type = :kind", kind=kind))


def _executions(tmp_path: Path) -> list[dict[str, Any]]:
    log = tmp_path / "cluster.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_two_replicas_execute_each_run_exactly_once(tmp_path, pg_url):
    replicas = [Replica(tmp_path, pg_url), Replica(tmp_path, pg_url)]
    try:
        n = 16
        for i in range(n):  # every alert delivered to both replicas, as two Alertmanagers in HA would
            for replica in replicas if i % 2 else reversed(replicas):
                status, _body = replica.post_alert(alert(i))
                assert status == 202
        until(lambda: _unfinished(pg_url) == 0 and _scalar(pg_url, "SELECT count(*) FROM runs") == n, "the runs", 240)
        assert _scalar(pg_url, "SELECT count(*) FROM incidents") == n
        statuses = _rows(pg_url, "SELECT status, count(*) FROM runs GROUP BY status")
        assert statuses == [("mitigated", n)]
        executions = _executions(tmp_path)
        assert len(executions) == n  # one cluster write per run, across both processes
        assert {e["pid"] for e in executions} == {r.proc.pid for r in replicas}  # both replicas claimed runs
        assert _scalar(pg_url, "SELECT count(*) FROM actions WHERE status = 'executed'") == n
        assert _scalar(pg_url, "SELECT count(DISTINCT run_id) FROM actions") == n
        assert _forked_histories(pg_url) == 0
        jobs = _rows(pg_url, "SELECT lock, status FROM procrastinate_jobs")
        assert sorted(status for _lock, status in jobs) == ["succeeded"] * n
        # Every step a run took is recorded once (uq_run_step_node would refuse a second; none failed).
        assert not _scalar(pg_url, "SELECT count(*) FROM run_steps WHERE node LIKE 'fault-%'")
    finally:
        for replica in replicas:
            replica.stop()


def test_a_killed_replicas_run_finishes_on_the_other_within_the_lease(tmp_path, pg_url):
    doomed = Replica(tmp_path, pg_url, TEST_SLA_MODE="hang")  # verification hangs: killed mid-run
    survivor: Replica | None = None
    try:
        status, body = doomed.post_alert(alert(1))
        assert status == 202
        incident_id = body["accepted"][0]
        until(lambda: _executions(tmp_path), "the doomed replica to execute the action")
        survivor = Replica(tmp_path, pg_url)
        # Killed once the write is recorded (verify hangs): a kill before that record is "outcome unknown".
        until(lambda: _rows(pg_url, "SELECT status FROM actions") == [("executed",)], "the write to be recorded")
        doomed.proc.send_signal(signal.SIGKILL)
        doomed.proc.wait(timeout=30)
        killed_at = time.monotonic()

        def finished() -> bool:
            body = survivor.get(f"/incidents/{incident_id}") if survivor else None
            return bool(body and body["runs"] and body["runs"][0]["status"] == "mitigated")

        # The lease, one sweep (lease/5) and one fetch poll (1 s), with room for a loaded machine.
        until(finished, "the run to finish on the surviving replica", LEASE_S * 1.2 + 1 + 20)
        took = time.monotonic() - killed_at
        executions = _executions(tmp_path)
        assert [e["pid"] for e in executions] == [doomed.proc.pid]  # the action was not repeated
        assert _forked_histories(pg_url) == 0
        assert _scalar(pg_url, "SELECT count(*) FROM actions") == 1
        print(f"killed replica's run finished on the other {took:.1f} s after the kill (lease {LEASE_S} s)")
    finally:
        doomed.stop()
        if survivor is not None:
            survivor.stop()


def test_a_lease_expiring_on_a_live_worker_never_runs_the_run_twice(tmp_path, pg_url):
    """SIGSTOP freezes a replica mid-run: no heartbeat, but its database sessions (and the run's advisory
    lock) live. The other replica's sweeper hands the job back after the lease; its worker finds the run
    locked and waits its turn. Resumed, the first replica finishes the run; nothing executes twice."""
    slow = Replica(tmp_path, pg_url, TEST_SLA_MODE="slow")  # verification takes 2 s
    other = Replica(tmp_path, pg_url)
    try:
        # The slow one takes the run: the other is not working while the alert is accepted.
        other.proc.send_signal(signal.SIGSTOP)
        status, _body = slow.post_alert(alert(7))
        assert status == 202
        until(lambda: _executions(tmp_path), "the slow replica to execute the action")
        slow.proc.send_signal(signal.SIGSTOP)
        other.proc.send_signal(signal.SIGCONT)
        until(lambda: _events(pg_url, "deferred_for_retry") >= 1, "the expired lease to hand the job back", 60)
        # The other replica claims it, finds the run locked and puts it back for later, again and again.
        until(lambda: _events(pg_url, "started") >= 3, "the other replica to claim the locked run twice", 60)
        assert _unfinished(pg_url) == 1  # it did not execute it
        slow.proc.send_signal(signal.SIGCONT)
        until(
            lambda: (
                _unfinished(pg_url) == 0
                and _scalar(pg_url, "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')") == 0
            ),
            "the run and its jobs to finish",
            90,
        )
        assert [e["pid"] for e in _executions(tmp_path)] == [slow.proc.pid]
        assert _forked_histories(pg_url) == 0
        assert _rows(pg_url, "SELECT status FROM runs") == [("mitigated",)]
    finally:
        for replica in (slow, other):
            if replica.proc.poll() is None:
                replica.proc.send_signal(signal.SIGCONT)
            replica.stop()


def test_concurrent_deliveries_of_one_alert_are_one_incident(tmp_path, pg_url):
    replicas = [Replica(tmp_path, pg_url), Replica(tmp_path, pg_url)]
    try:
        results: list[tuple[int, dict[str, Any]]] = []
        lock = threading.Lock()

        def deliver(replica: Replica, payload: dict[str, Any]) -> None:
            outcome = replica.post_alert(payload)
            with lock:
                results.append(outcome)

        def storm(payload: dict[str, Any]) -> None:
            threads = [threading.Thread(target=deliver, args=(replicas[k % 2], payload)) for k in range(16)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)

        storm(alert(1, group="shared"))
        # A second alert of the same group joins the first as `correlated`, also raced 16 times.
        second = alert(2, group="shared")
        storm(second)
        assert {status for status, _ in results} == {202}, results
        first_half, second_half = results[:16], results[16:]
        assert sum(len(body["accepted"]) for _, body in first_half) == 1
        assert sum(len(body["duplicates"]) for _, body in first_half) == 15
        assert sum(len(body["correlated"]) for _, body in second_half) == 1
        assert sum(len(body["duplicates"]) for _, body in second_half) == 15
        assert _scalar(pg_url, "SELECT count(*) FROM incidents") == 2
        assert _scalar(pg_url, "SELECT count(*) FROM runs") == 1
        assert _scalar(pg_url, "SELECT count(*) FROM procrastinate_jobs") == 1
    finally:
        for replica in replicas:
            replica.stop()


def test_mitigate_worker_executes_runs_a_serve_without_worker_accepted(tmp_path, pg_url):
    server = Replica(tmp_path, pg_url, MITIGATE_SERVE_WORKER="false")
    worker = None
    try:
        status, body = server.post_alert(alert(3))
        assert status == 202
        incident_id = body["accepted"][0]
        assert _rows(pg_url, "SELECT status FROM procrastinate_jobs") == [("todo",)]  # queued with the run
        worker = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "worker", "--concurrency", "1"],
            cwd=ROOT,
            env=_env(tmp_path, pg_url),
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "worker.log").open("wb"),
        )

        def finished() -> Any:
            body = server.get(f"/incidents/{incident_id}")
            return body and body["runs"] and body["runs"][0]["status"] not in ("queued", "running")

        until(finished, "`mitigate worker` to finish the run", 120)
        # The real context without a cluster: the plan is proposed, not executed.
        assert server.get(f"/incidents/{incident_id}")["runs"][0]["report"]["plan"]["operation"]
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
        server.stop()


def test_an_approval_resumes_the_run_on_another_replica(tmp_path, pg_url):
    """The run paused for approval on one replica, which then died; the approval, sent to the other
    replica, is a job any worker takes: the run resumes there from its checkpoint."""
    from tests.approvers import TOKENS, approvers_file

    people = {"MITIGATE_APPROVERS_FILE": str(approvers_file(tmp_path))}
    first = Replica(tmp_path, pg_url, **people)
    second: Replica | None = None
    try:
        payload = alert(9)
        payload["alerts"][0]["labels"] = {"alertname": "GPUXid", "namespace": "llm-serving", "node": "aks-gpu-7"}
        payload["alerts"][0]["annotations"] = {"summary": "XID 79 on node aks-gpu-7; its pods fail, still failing"}
        status, body = first.post_alert(payload)
        assert status == 202
        incident_id = body["accepted"][0]
        until(lambda: _rows(pg_url, "SELECT status FROM runs") == [("awaiting_approval",)], "the run to wait", 120)
        run_id = _scalar(pg_url, "SELECT id FROM runs WHERE incident_id = :i", i=incident_id)
        second = Replica(tmp_path, pg_url, **people)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=30)
        request = urllib.request.Request(
            f"http://127.0.0.1:{second.port}/runs/{run_id}/approve",
            data=json.dumps({"reason": "node is failing"}).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {TOKENS['alice']}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 202
        until(
            lambda: _unfinished(pg_url) == 0 and _rows(pg_url, "SELECT status FROM runs") != [("awaiting_approval",)],
            "the approved run to finish",
            120,
        )
        assert [e["pid"] for e in _executions(tmp_path)] == [second.proc.pid]
        assert _rows(pg_url, "SELECT status FROM actions") == [("executed",)]
        assert _forked_histories(pg_url) == 0
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_an_approved_run_whose_worker_died_after_acting_finishes_elsewhere_without_acting_again(tmp_path, pg_url):
    """The approval's job was taken by a replica that executed the action and was killed right after
    (TEST_CRASH_AT=act). The job is handed back after the lease: the other replica finds the run past its
    approval and continues it from its checkpoint (verify, report); the action is not executed again."""
    from tests.approvers import TOKENS, approvers_file

    people = {"MITIGATE_APPROVERS_FILE": str(approvers_file(tmp_path))}
    crash = {"TEST_CRASH_AT": "act", "TEST_CRASH_MARK": str(tmp_path / "crashed")}
    first = Replica(tmp_path, pg_url, **people, **crash)
    second: Replica | None = None
    try:
        payload = alert(11)
        payload["alerts"][0]["labels"] = {"alertname": "GPUXid", "namespace": "llm-serving", "node": "aks-gpu-9"}
        payload["alerts"][0]["annotations"] = {"summary": "XID 79 on node aks-gpu-9; its pods fail, still failing"}
        assert first.post_alert(payload)[0] == 202
        until(lambda: _rows(pg_url, "SELECT status FROM runs") == [("awaiting_approval",)], "the run to wait", 120)
        run_id = _scalar(pg_url, "SELECT id FROM runs")
        request = urllib.request.Request(
            f"http://127.0.0.1:{first.port}/runs/{run_id}/approve",
            data=json.dumps({"reason": "node is failing"}).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {TOKENS['alice']}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 202
        assert first.proc.wait(timeout=120) == -signal.SIGKILL  # killed itself right after acting
        second = Replica(tmp_path, pg_url, **people)
        until(lambda: _unfinished(pg_url) == 0, "the run to finish on the other replica", 120)
        assert _rows(pg_url, "SELECT status FROM runs") == [("mitigated",)]
        assert [e["pid"] for e in _executions(tmp_path)] == [first.proc.pid]
        refused = _scalar(pg_url, "SELECT count(*) FROM approval_attempts WHERE outcome = 'refused'")
        assert refused == 0  # the handed-back answer is not a second, refused, approval
        assert _forked_histories(pg_url) == 0
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_metrics_report_the_heartbeat_of_every_live_queue_worker(pg_url: str) -> None:
    """On PostgreSQL the heartbeats on /metrics are the queue's own, so any replica reports every worker
    (the 'no live worker' alert of deploy/prometheus/mitigate-alerts.yml reads them)."""
    from api.app import queue_heartbeats
    from api.settings import Settings
    from api.wiring import open_store

    store = open_store(Settings(database_url=pg_url))  # migrated: the queue's tables exist
    assert queue_heartbeats(store.engine) == {}  # no worker has started
    with store.engine.begin() as conn:
        conn.execute(text("INSERT INTO procrastinate_workers DEFAULT VALUES"))
    beats = queue_heartbeats(store.engine)
    assert len(beats) == 1 and abs(next(iter(beats.values())) - time.time()) < 60
