"""An ASGI app for tests that run `uvicorn` as a real process: the real service with a fake cluster
that logs executions to a file, and an SLA verifier that can hang (so the test can kill the server
mid-run).

Environment: MITIGATE_* settings as usual, plus TEST_CLUSTER_LOG (path) and TEST_SLA_MODE
(`verified` or `hang`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from agent.context import TriageContext
from agent.rulebook import load_rulebook
from agent.schemas import Incident
from api.app import create_app
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


def _context(store: Any) -> TriageContext:
    return TriageContext(
        rulebook=load_rulebook(),
        policy=load_policy(),
        recorder=store.recorder,
        cluster=FakeCluster(Path(os.environ["TEST_CLUSTER_LOG"])),
        sla=_Sla(),
    )


app = create_app(context_factory=_context)
