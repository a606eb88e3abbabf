"""Kill -9 the real server between accepting an alert and finishing its run: after a restart the run
completes, the incident is there, and the cluster action is not repeated."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.conftest import ROOT
from tests.waiting import until

TOKEN = "restart-test-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(tmp_path: Path, port: int, sla_mode: str, **extra: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MITIGATE_", "OPENAI_"))}
    env |= extra | {
        "MITIGATE_DATABASE_URL": f"sqlite:///{tmp_path}/svc.db",
        "MITIGATE_ENGINE": "rulebook",
        "MITIGATE_ALERTMANAGER_TOKEN": TOKEN,
        "MITIGATE_API_TOKEN": TOKEN,
        "TEST_CLUSTER_LOG": str(tmp_path / "cluster.log"),
        "TEST_SLA_MODE": sla_mode,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.serve_app:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    until(lambda: _get(port, "/healthz") is not None, "the server to answer", 120)
    return proc


def _get(port: int, path: str) -> dict | None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return json.loads(response.read())
    except OSError:
        return None


def _post_alert(port: int, fingerprint: str = "f00d") -> dict:
    payload = {
        "version": "4",
        "groupKey": "g",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "startsAt": "2026-11-24T10:00:00Z",
                "fingerprint": fingerprint,
                "labels": {
                    "alertname": "EngineRequestsWaitingHigh",
                    "namespace": "llm-serving",
                    "deployment": "llama-70b",
                },
                "annotations": {"summary": "429 throttling and queue backlog on every replica"},
            }
        ],
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/webhooks/alertmanager",
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202
        return json.loads(response.read())


def _action_status(port: int, incident_id: str) -> str | None:
    body = _get(port, f"/incidents/{incident_id}")
    actions = (body or {}).get("runs", [{}])[0].get("actions") if body and body.get("runs") else None
    return actions[0]["status"] if actions else None


def test_killed_server_finishes_the_run_after_restart_without_repeating_the_action(tmp_path):
    port = _free_port()
    log = tmp_path / "cluster.log"
    server = _serve(tmp_path, port, "hang")
    try:
        incident_id = _post_alert(port)["accepted"][0]
        # Kill once the write is recorded as executed (verify then hangs): a kill between the cluster's
        # answer and that record is the "outcome unknown" case, which a human must look at.
        until(lambda: _action_status(port, incident_id) == "executed", "the action to be recorded as executed")
        assert log.read_text().strip() != ""
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
    server = _serve(tmp_path, port, "verified")
    try:

        def finished() -> bool:
            body = _get(port, f"/incidents/{incident_id}")
            return bool(body and body["runs"] and body["runs"][0]["status"] == "mitigated")

        until(finished, "the resumed run to finish")
        body = _get(port, f"/incidents/{incident_id}")
        assert body is not None and len(body["runs"]) == 1
        assert len(log.read_text().splitlines()) == 1
        assert _post_alert(port)["duplicates"] == [incident_id]  # a redelivery after restart starts nothing
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def test_graceful_shutdown_finishes_the_run_in_flight(tmp_path):
    from api.settings import Settings
    from api.wiring import open_store

    port = _free_port()
    log = tmp_path / "cluster.log"
    server = _serve(tmp_path, port, "slow")
    try:
        incident_id = _post_alert(port)["accepted"][0]
        until(lambda: log.exists() and log.read_text().strip() != "", "the action to be executed")
    finally:
        server.send_signal(signal.SIGTERM)  # verify is still sleeping: shutdown must wait for it
        # uvicorn re-raises SIGTERM after its graceful shutdown, so -15 is the normal exit here
        assert server.wait(timeout=60) in (0, -signal.SIGTERM)
    store = open_store(Settings(database_url=f"sqlite:///{tmp_path}/svc.db"))
    run = store.recorder.latest_run_of(incident_id)
    assert run is not None and run["status"] == "mitigated"


def test_a_corrupted_postmortem_store_on_restart_is_a_readiness_reason_not_a_failed_run(tmp_path):
    """The embedded Chroma store is opened once; after a kill -9 it opens again; corrupted, it cannot open:
    /readyz says so (and stays 200: triage without precedents still triages), and runs finish, noting it."""
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MITIGATE_", "OPENAI_"))}
    ingest = subprocess.run(
        [sys.executable, "-m", "api.cli", "postmortems", "ingest", str(ROOT / "data" / "postmortems" / "p156-001.md")],
        cwd=ROOT,
        env=env | {"MITIGATE_STATE_DIR": str(state)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ingest.returncode == 0, ingest.stderr
    port = _free_port()
    server = _serve(tmp_path, port, "verified", MITIGATE_STATE_DIR=str(state))
    try:
        until(
            lambda: (_get(port, "/readyz") or {}).get("checks", {}).get("retriever") == "ok", "the index to open", 120
        )
        first = _post_alert(port, "first")["accepted"][0]
        until(
            lambda: ((_get(port, f"/incidents/{first}") or {}).get("runs") or [{}])[0].get("report"),
            "the first run",
            120,
        )
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
    store = state / "chroma" / "chroma.sqlite3"
    store.write_bytes(b"not a database" * 512)  # what a crash mid-write or a bad disk leaves
    server = _serve(tmp_path, port, "verified", MITIGATE_STATE_DIR=str(state))
    try:
        ready = until(
            lambda: (r := _get(port, "/readyz")) and r["checks"].get("retriever", "").startswith("degraded") and r,
            "readiness to name the broken index",
        )
        assert ready["ready"] is True and "postmortem collection" in ready["checks"]["retriever"]
        second = _post_alert(port, "second")["accepted"][0]

        def finished() -> dict | None:
            body = _get(port, f"/incidents/{second}")
            return body if body and body["runs"] and body["runs"][0]["report"] else None

        run = until(finished, "the run with a broken index to finish")["runs"][0]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    # Finished, not failed: the same scale-out ran for the first alert within its cooldown.
    assert run["status"] == "already_mitigated"
    retrieve = next(s for s in run["steps"] if s["node"] == "retrieve")
    assert retrieve["summary"].startswith("postmortem search failed")
    assert any("postmortem search failed" in note for note in run["report"]["notes"])
