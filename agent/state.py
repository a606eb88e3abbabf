"""The graph's state: plain JSON values only, so that every checkpoint can be stored and resumed."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict


class TriageInput(TypedDict):
    """What a caller passes in: the incident (as the Incident schema's dict) and the run's id."""

    run_id: str
    incident: dict[str, Any]


class TriageState(TypedDict, total=False):
    run_id: str
    incident: dict[str, Any]
    entities: dict[str, str]
    entity_sources: dict[str, str]  # per entity: alert_labels or text (agent/entities.py)
    precedents: list[dict[str, Any]]
    retrieval: dict[str, Any]
    cluster_evidence: dict[str, Any]
    # What the read-only investigation found and could not look at (agent/findings.py).
    investigation: dict[str, Any]
    # The LLM tool loop's record (agent/explore.py): findings, gaps, calls, stop_reason, steps, tokens.
    exploration: dict[str, Any]
    classification: dict[str, Any]
    no_action: dict[str, Any]  # the "no action" evidence, vetoes, probability and decision (agent/verdicts.py)
    degraded: str  # why the rulebook answered alone (no model loaded, or the model failed)
    model: str | None  # the judgement model's version when it answered
    llm_verdict: str  # how the LLM's answer was weighed against the model's
    signal_names: dict[str, Any]  # converted and unmapped signal names (agent/canonical.py)
    plan: dict[str, Any]
    localization: dict[str, Any]  # which pod is the cause, when a restart is planned and telemetry can tell
    # Before anyone is asked: the policy's verdict, whether the target exists, the dry run's answer.
    preflight: dict[str, Any]
    guard: dict[str, Any]
    approvals: list[dict[str, Any]]
    action: dict[str, Any]
    verification: dict[str, Any]
    escalation: dict[str, Any]
    # Every time the LLM path failed and the rulebook answered instead; appended by several nodes.
    fallbacks: Annotated[list[dict[str, Any]], operator.add]
    llm_usage: Annotated[list[dict[str, Any]], operator.add]
    status: str
    report: dict[str, Any]
