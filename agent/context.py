"""Run-scoped dependencies of the graph, injected through LangGraph's run context.

Tests, the CLI, the server and the simulator each build a TriageContext; nodes never import a
client, a database or the settings themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from agent.rulebook import Rulebook
from agent.schemas import Incident, ToolResult
from tools.approvers import Approvers
from tools.guard import Policy

if TYPE_CHECKING:
    import numpy as np

    from agent.explore import Explorer
    from agent.judgement import Judgement
    from agent.llm import LLMEngine


class Retriever(Protocol):
    def search(self, incident: Incident, k: int) -> list[dict[str, Any]]: ...


class Cluster(Protocol):
    def evidence(self, target: dict[str, Any]) -> dict[str, Any]: ...
    def lookup(self, target: dict[str, Any]) -> dict[str, Any]:
        """{"exists": bool, "detail": str}: does the plan's target exist? Faults raise DependencyFault."""
        ...

    def observe(self, plan: dict[str, Any], owners: list[str]) -> dict[str, float]:
        """Cluster-side symptoms of an executed plan (a drain's pods left, replicas not ready)."""
        ...

    def dry_run(self, plan: dict[str, Any]) -> ToolResult: ...
    def execute(self, plan: dict[str, Any]) -> ToolResult: ...


Observe = Callable[[], dict[str, float]]


class SlaVerifier(Protocol):
    def baseline(self, plan: dict[str, Any], incident: Incident, observe: Observe | None = None) -> dict[str, Any]:
        """The SLA and the plan's symptoms right before the action."""
        ...

    def verify(
        self, plan: dict[str, Any], incident: Incident, baseline: dict[str, Any] | None, observe: Observe | None = None
    ) -> dict[str, Any]: ...


class Telemetry(Protocol):
    """Live serving signals for an incident (rulebook signal names; `<name>_peak` over a lookback)."""

    def signals(self, incident: Incident) -> dict[str, float]: ...


class Localizer(Protocol):
    """Ranks the pods of the incident's service as root-cause candidates (tools/rca/localize.py)."""

    def rank(self, incident: Incident) -> dict[str, Any]: ...


class Embedder(Protocol):
    """Sentence embeddings (tools/embeddings.py): what the learned judgement reads of the text."""

    def embed_one(self, text: str) -> np.ndarray: ...


class IncidentHistory(Protocol):
    """Earlier incidents of the same alert or target: the recurrence veto of "no action"."""

    def recent_occurrences(self, incident: Incident, since: datetime) -> list[str]: ...


class Investigator(Protocol):
    """Read-only investigation before classification (tools/investigate/): recent changes, workload
    state, metric trends, history. Returns {"findings": [...], "gaps": [...], "elapsed_ms": float}
    (agent/findings.py) and never raises: a source that cannot answer is a gap. It may add
    "recurrences", what its read of the store's history covered, which classify's recurrence veto
    answers from (agent/no_action.py `known_occurrences`) instead of reading the store again."""

    # True when it reads nothing but this process's own incident store (no cluster, no Prometheus): a
    # bounded local read, which the graph does within intake's step (agent/nodes/intake.py).
    local_only: bool

    def investigate(self, incident: Incident, entities: dict[str, str]) -> dict[str, Any]: ...


class Recorder(Protocol):
    def record_step(self, run_id: str, node: str, summary: str, data: dict[str, Any]) -> None: ...
    def propose_action(self, run_id: str, key: str, plan: dict[str, Any]) -> dict[str, Any]: ...
    def update_action(self, key: str, **changes: Any) -> dict[str, Any]: ...
    def record_approval(self, key: str, approver: str, decision: str, reason: str = "") -> None: ...
    def record_approval_attempt(self, run_id: str, key: str | None, attempt: dict[str, Any]) -> None:
        """Audit one approval attempt: who (person, via, subject), from where, decision, outcome, message."""
        ...

    def recent_action(self, operation: str, target_name: str, since: datetime) -> str | None:
        """The run that executed this operation on this target since a moment, if any (cooldowns)."""
        ...

    def record_sla_check(self, run_id: str, status: str, details: dict[str, Any]) -> None: ...
    def record_touched(self, run_id: str, keys: list[str]) -> None:
        """What an executed action changed (node:, deployment: keys), so alerts it causes correlate."""
        ...


class Notifier(Protocol):
    def __call__(self, escalation: dict[str, Any]) -> None: ...


class MemoryRecorder:
    """Keeps the trail in memory: for eval replay and tests that do not need the database."""

    def __init__(self) -> None:
        self.steps: dict[tuple[str, str], dict[str, Any]] = {}
        self.actions: dict[str, dict[str, Any]] = {}
        self.approvals: list[dict[str, Any]] = []
        self.attempts: list[dict[str, Any]] = []
        self.touched: list[tuple[str, str]] = []
        self.sla_checks: list[dict[str, Any]] = []

    def record_step(self, run_id: str, node: str, summary: str, data: dict[str, Any]) -> None:
        self.steps[(run_id, node)] = {"summary": summary, "data": data}

    def propose_action(self, run_id: str, key: str, plan: dict[str, Any]) -> dict[str, Any]:
        if key not in self.actions:
            self.actions[key] = {
                "key": key,
                "mitigation": plan["mitigation"],
                "operation": plan["operation"],
                "target": plan.get("target", {}),
                "parameters": plan.get("parameters", {}),
                "risk": plan.get("risk", "low"),
                "status": "proposed",
                "reason": "",
                "dry_run": None,
                "result": None,
                "executed_at": None,
                "requested_at": datetime.now(UTC).isoformat(),
            }
        return dict(self.actions[key])

    def update_action(self, key: str, **changes: Any) -> dict[str, Any]:
        self.actions[key].update(changes)
        if changes.get("status") == "executed":
            self.actions[key]["executed_at"] = datetime.now(UTC)
        return dict(self.actions[key])

    def record_approval(self, key: str, approver: str, decision: str, reason: str = "") -> None:
        self.approvals.append({"key": key, "approver": approver, "decision": decision, "reason": reason})

    def record_approval_attempt(self, run_id: str, key: str | None, attempt: dict[str, Any]) -> None:
        seen = {a.get("attempt_id") for a in self.attempts if a.get("attempt_id")}
        if not attempt.get("attempt_id") or attempt["attempt_id"] not in seen:  # replays of a resume
            self.attempts.append({"run_id": run_id, "key": key, **attempt})

    def recent_action(self, operation: str, target_name: str, since: datetime) -> str | None:
        for a in self.actions.values():
            if (
                a["operation"] == operation
                and a["target"].get("name") == target_name
                and a["status"] == "executed"
                and a["executed_at"] is not None
                and a["executed_at"] >= since
            ):
                return str(a["key"]).split(":", 1)[0]
        return None

    def record_sla_check(self, run_id: str, status: str, details: dict[str, Any]) -> None:
        self.sla_checks.append({"run_id": run_id, "status": status, "details": details})

    def record_touched(self, run_id: str, keys: list[str]) -> None:
        self.touched.extend((run_id, key) for key in keys)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class TriageContext:
    rulebook: Rulebook
    policy: Policy
    recorder: Recorder = field(default_factory=MemoryRecorder)
    llm: LLMEngine | None = None
    # The LLM's read-only tool loop (agent/explore.py); used only when `llm` is set too.
    explorer: Explorer | None = None
    retriever: Retriever | None = None
    cluster: Cluster | None = None
    sla: SlaVerifier | None = None
    telemetry: Telemetry | None = None
    localizer: Localizer | None = None
    notify: Notifier | None = None
    # The learned judgement (agent/judgement.py) and what it reads; without it the rulebook alone
    # answers, and `judgement_problem` says why in every report.
    judgement: Judgement | None = None
    judgement_problem: str | None = None
    embedder: Embedder | None = None
    history: IncidentHistory | None = None
    investigator: Investigator | None = None
    # Who may approve what (tools/approvers.py). Empty: no approval can be accepted (fail closed).
    approvers: Approvers = field(default_factory=Approvers)
    # Propose-only: plan and guard as usual, but never write to a cluster (eval replay, dry runs).
    propose_only: bool = False
    precedents_k: int = 5
    clock: Callable[[], datetime] = _utcnow
