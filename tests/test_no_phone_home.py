"""No outbound connection except the configured ones: `mitigate postmortems ingest`, `mitigate triage`
(with precedents, so onnxruntime and chromadb load) and `mitigate serve` triaging an alert run as real
processes with an audit hook (sys.addaudithook, loaded by a sitecustomize on PYTHONPATH) that records
every socket connect and name lookup; only loopback may appear."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.waiting import until

MITIGATE = str(Path(sys.executable).with_name("mitigate"))
TOKEN = "egress-token"
HOOK = """
import json, os, sys

_LOG = os.environ["EGRESS_LOG"]


def _record(event, args):
    if event == "socket.connect":
        address = args[1]
        host = address[0] if isinstance(address, tuple) else str(address)
    elif event == "socket.getaddrinfo":
        host = args[0]
    else:
        return
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    with open(_LOG, "a") as log:
        log.write(json.dumps({"event": event, "host": host, "argv": sys.argv[:2]}) + "\\n")


sys.addaudithook(_record)
"""
LOOPBACK = {"127.0.0.1", "::1", "localhost", "0.0.0.0"}


@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    hook_dir = tmp_path / "hook"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(HOOK)
    log = tmp_path / "egress.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MITIGATE_", "HF_", "ANONYMIZED", "DO_NOT"))}
    env |= {
        "PYTHONPATH": f"{hook_dir}{os.pathsep}{ROOT}",
        "EGRESS_LOG": str(log),
        "MITIGATE_STATE_DIR": str(tmp_path / "state"),
        "MITIGATE_ENGINE": "rulebook",
        "MITIGATE_ALERTMANAGER_TOKEN": TOKEN,
        "MITIGATE_API_TOKEN": TOKEN,
        "MITIGATE_PROMETHEUS_URL": f"http://127.0.0.1:{_port()}",  # configured, and closed: tried, refused
    }
    yield env, log


def _hosts(log: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_triage_and_the_service_contact_only_configured_hosts(recorded: tuple[dict[str, str], Path], tmp_path: Path):
    env, log = recorded
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in sorted(p.name for p in (ROOT / "data" / "postmortems").glob("p156-00*.md"))[:4]:
        shutil.copy(ROOT / "data" / "postmortems" / name, corpus / name)
    subprocess.run([MITIGATE, "postmortems", "ingest", str(corpus)], env=env, check=True, capture_output=True)
    triage = subprocess.run(
        [MITIGATE, "triage", "--json", str(ROOT / "examples" / "bad-node-xid.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert triage.returncode == 0, triage.stderr[-2000:]
    assert json.loads(triage.stdout)["precedents"], "precedents were searched (onnxruntime loaded)"

    port = _port()
    server = subprocess.Popen(
        [MITIGATE, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        until(up, "mitigate serve answering", 120)
        alert = json.loads((ROOT / "examples" / "bad-node-xid.json").read_text())
        payload = {
            "version": "4",
            "groupKey": "egress",
            "status": "firing",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": "GPUXid", **(alert.get("alert") or {}).get("labels", {})},
                    "annotations": {"summary": alert["title"]},
                    "startsAt": "2026-12-02T10:00:00Z",
                }
            ],
        }
        headers = {"Authorization": f"Bearer {TOKEN}"}
        accepted = httpx.post(f"{base}/webhooks/alertmanager", json=payload, headers=headers, timeout=30)
        assert accepted.status_code == 202, accepted.text
        incident_id = accepted.json()["accepted"][0]

        def finished() -> bool:
            body = httpx.get(f"{base}/incidents/{incident_id}", headers=headers, timeout=10).json()
            return bool(body["runs"]) and body["runs"][0]["status"] not in ("queued", "running")

        until(finished, "the alert's run to finish", 180)
    finally:
        server.terminate()
        server.wait(timeout=60)
    seen = _hosts(log)
    # The hook works: the configured Prometheus (a closed loopback port) was tried by both processes.
    assert {e["argv"][1] for e in seen if e["host"] == "127.0.0.1" and len(e["argv"]) > 1} >= {"triage", "serve"}
    outside = sorted({entry["host"] for entry in seen} - LOOPBACK)
    assert outside == [], f"connections outside the configured hosts: {outside}"
