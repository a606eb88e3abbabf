"""Test doubles at the graph's ports. They record what they were asked, and can persist it to a file
so that tests spanning several processes can count cluster writes."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from agent.schemas import Incident, ToolResult


class FakeCluster:
    def __init__(
        self,
        log: Path | None = None,
        *,
        dry_run_status: str = "dry-run-ok",
        execute_status: str = "executed",
        details: dict[str, Any] | None = None,
    ) -> None:
        self.log = log
        self.dry_runs: list[dict[str, Any]] = []
        self.executed: list[dict[str, Any]] = []
        self._dry_run_status = dry_run_status
        self._execute_status = execute_status
        self.missing: set[str] = set()
        self.details = details or {}  # what an execution reports (e.g. a drain's evicted pods' owners)

    def evidence(self, target: dict[str, Any]) -> dict[str, Any]:
        return {"target": target}

    def lookup(self, target: dict[str, Any]) -> dict[str, Any]:
        """Every named target exists, except names listed in `missing`."""
        exists = bool(target.get("name")) and target.get("name") not in self.missing
        return {
            "exists": exists,
            "detail": f"{target.get('kind')} {target.get('namespace') or ''}/{target.get('name')}",
        }

    def observe(self, plan: dict[str, Any], owners: list[str]) -> dict[str, float]:
        return {}

    def dry_run(self, plan: dict[str, Any]) -> ToolResult:
        self.dry_runs.append(plan)
        return ToolResult(status=self._dry_run_status, reason="fake dry run")  # type: ignore[arg-type]

    def execute(self, plan: dict[str, Any]) -> ToolResult:
        self.executed.append(plan)
        if self.log is not None:
            with self.log.open("a") as handle:
                handle.write(json.dumps({"pid": os.getpid(), "operation": plan["operation"]}) + "\n")
        return ToolResult(status=self._execute_status, reason="fake execution", details=self.details)  # type: ignore[arg-type]


class FakeSla:
    def __init__(self, status: str = "verified", *, crash: bool = False) -> None:
        self.status = status
        self.crash = crash
        self.calls = 0
        self.baselines: list[dict[str, Any] | None] = []

    def baseline(self, plan: dict[str, Any], incident: Incident, observe: Any = None) -> dict[str, Any]:
        return {"values": {"sla": 0.9}, "taken_by": "fake"}

    def verify(
        self, plan: dict[str, Any], incident: Incident, baseline: dict[str, Any] | None, observe: Any = None
    ) -> dict[str, Any]:
        self.calls += 1
        self.baselines.append(baseline)
        if self.crash:
            os._exit(17)  # a process dying mid-run, as a kill -9 would
        return {"status": self.status, "reason": f"fake SLA {self.status}"}


def fake_world(cluster: FakeCluster, sla: Any = None) -> Any:
    """A context factory for the service: the real rulebook and policy, the store's recorder, a fake
    cluster and SLA verifier (what create_app's `context_factory` expects)."""
    from agent.context import TriageContext
    from agent.rulebook import load_rulebook
    from tests.approvers import REGISTRY
    from tools.guard import load_policy

    def context(store: Any) -> TriageContext:
        return TriageContext(
            rulebook=load_rulebook(),
            policy=load_policy(),
            recorder=store.recorder,
            cluster=cluster,
            sla=sla or FakeSla("verified"),
            approvers=REGISTRY,
        )

    return context


class HeldVerifier:
    """Verification that ends when the test says so: alerts can arrive while the drain is verifying."""

    def __init__(self) -> None:
        self.verifying, self.release = threading.Event(), threading.Event()

    def baseline(self, *args: Any) -> dict[str, Any]:
        return {"values": {"sla": 0.6}}

    def verify(self, *args: Any) -> dict[str, Any]:
        self.verifying.set()
        assert self.release.wait(60)
        return {"status": "verified", "reason": "test: recovered"}
