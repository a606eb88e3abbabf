"""The dashboard's shared fixtures: a server with recorded eval runs, a triaged incident and approvers,
and Debian's Chromium driven by Playwright. Session-scoped: recording two eval runs takes a minute."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from agent.rulebook import DEFAULT_RULEBOOK
from tests.approvers import approvers_file
from tests.conftest import ROOT
from tests.waiting import until

TOKEN = "dashboard-test-token"
DATASET = ROOT / "evals" / "datasets" / "paper156.jsonl"
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MITIGATE_", "OPENAI_"))}
    return env | {
        "MITIGATE_DATABASE_URL": f"sqlite:///{tmp}/dash.db",
        "MITIGATE_STATE_DIR": str(tmp / "state"),
        "MITIGATE_ENGINE": "rulebook",
        **extra,
    }


def _cli(tmp: Path, *args: str, **env: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=ROOT,
        env=_env(tmp, **env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two eval runs recorded through the CLI (the current rulebook and one without its timeout rules),
    one triaged incident, and the service (tests/serve_app.py: a fake cluster that logs what it executes,
    an SLA that verifies, the approvers of tests/approvers.py) on a free loopback port."""
    tmp = tmp_path_factory.mktemp("dashboard")
    _cli(tmp, "eval", "run", "--dataset", str(DATASET), "--split", "test", "--label", "current")
    data = yaml.safe_load(DEFAULT_RULEBOOK.read_text())
    for key in ("phrases", "alerts", "signals"):
        data["subcategories"]["timeout"][key] = []
    degraded = tmp / "degraded.yaml"
    degraded.write_text(yaml.safe_dump(data))
    _cli(
        tmp,
        *("eval", "run", "--dataset", str(DATASET), "--split", "test", "--label", "no-timeout-rules"),
        MITIGATE_RULEBOOK_PATH=str(degraded),
    )
    _cli(tmp, "triage", str(ROOT / "examples" / "timeout-408-streaming.json"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (tmp / "serve.log").open("wb")
    serve_env = _env(
        tmp,
        MITIGATE_API_TOKEN=TOKEN,
        MITIGATE_APPROVERS_FILE=str(approvers_file(tmp)),
        TEST_CLUSTER_LOG=str(tmp / "cluster.log"),
        TEST_SLA_MODE="verified",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.serve_app:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=serve_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"mitigate serve exited: {(tmp / 'serve.log').read_text()}")
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    until(up, "mitigate serve to answer /healthz", 120)
    runs = httpx.get(f"{base}/dashboard", auth=("dri", TOKEN)).text
    yield {"base": base, "tmp": tmp, "runs_html": runs}
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()
