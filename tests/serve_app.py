"""An ASGI app for tests that run `uvicorn` as a real process: the real service with a fake cluster
that logs executions to a file, and an SLA verifier that can hang (so the test can kill the server
mid-run).

Environment: MITIGATE_* settings as usual, plus TEST_CLUSTER_LOG (path) and TEST_SLA_MODE
(`verified` or `hang`); TEST_KUBECONFIG to act on a real API server instead; TEST_CRASH_AT=NODE to
kill -9 this process right after that graph step recorded itself (once: TEST_CRASH_MARK is the file
that says it happened).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from agent.context import TriageContext
from agent.rulebook import load_rulebook
from agent.schemas import Incident
from api.app import create_app
from api.settings import get_settings
from api.wiring import make_retriever
from tests.fakes import FakeCluster
from tools.guard import load_policy


class _Sla:
    def baseline(self, plan: dict[str, Any], incident: Incident, observe: Any = None) -> dict[str, Any]:
        return {"values": {"sla": 0.5}}

    def verify(
        self, plan: dict[str, Any], incident: Incident, baseline: dict[str, Any] | None, observe: Any = None
    ) -> dict[str, Any]:
        if os.environ.get("TEST_SLA_MODE") == "hang":
            time.sleep(3600)  # the test kills the process here
        if os.environ.get("TEST_SLA_MODE") == "slow":
            time.sleep(2)  # the test asks for a graceful shutdown while this runs
        return {"status": "verified", "reason": "test SLA verified"}


class _CrashingRecorder:
    """The store's recorder, which kills the process (SIGKILL, as an OOM kill or a node loss would) once
    the step named in TEST_CRASH_AT has been recorded, before LangGraph checkpoints it."""

    def __init__(self, recorder: Any) -> None:
        self._recorder = recorder

    def __getattr__(self, name: str) -> Any:
        return getattr(self._recorder, name)

    def record_step(self, run_id: str, node: str, summary: str, data: dict[str, Any]) -> None:
        self._recorder.record_step(run_id, node, summary, data)
        mark = Path(os.environ.get("TEST_CRASH_MARK", "/nonexistent/mark"))
        if node == os.environ.get("TEST_CRASH_AT") and not mark.exists():
            mark.write_text(node)
            os.kill(os.getpid(), signal.SIGKILL)


def _cluster() -> Any:
    if os.environ.get("TEST_KUBECONFIG"):
        from tools.cluster import connect

        return connect(os.environ["TEST_KUBECONFIG"])
    return FakeCluster(Path(os.environ["TEST_CLUSTER_LOG"]))


def _context(store: Any) -> TriageContext:
    return TriageContext(
        rulebook=load_rulebook(),
        policy=load_policy(),
        recorder=_CrashingRecorder(store.recorder) if os.environ.get("TEST_CRASH_AT") else store.recorder,
        cluster=_cluster(),
        sla=_Sla(),
        retriever=make_retriever(get_settings()),  # the postmortem index under MITIGATE_STATE_DIR, if any
    )


app = create_app(context_factory=_context)
