"""The graph's conditional edges: pure functions of the state, raising on anything unexpected."""

from __future__ import annotations

from typing import Literal

from agent.state import TriageState


def route_after_intake(state: TriageState) -> Literal["investigate", "explore", "retrieve"]:
    # intake looks itself when the store's history is all there is to read (agent/nodes/intake.py).
    return "investigate" if state.get("investigation") is None else route_after_investigate(state)


def route_after_investigate(state: TriageState) -> Literal["explore", "retrieve"]:
    # investigate states the exploration as skipped when no LLM or tool loop is configured.
    return "retrieve" if state.get("exploration") is not None else "explore"


def route_after_guard(state: TriageState) -> Literal["act", "escalate", "report"]:
    plan, verdict = state["plan"], state["guard"]["verdict"]
    if plan["mitigation"] == "M5":
        return "report"
    if verdict == "already_mitigated":  # the cause was acted on by another run: nobody is paged for it
        return "report"
    if verdict in ("allowed", "approved", "approval_required", "unconfirmed"):
        # approval_required reaches act only when nobody can approve (propose-only or no cluster), and
        # unconfirmed when the target does not exist: act then records the proposal without executing it.
        return "act"
    if verdict in ("not_applicable", "denied", "rejected"):
        return "escalate"
    raise ValueError(f"unexpected guard verdict {verdict!r}")


def route_after_act(state: TriageState) -> Literal["verify", "escalate", "report"]:
    status = state["action"]["status"]
    if status == "executed":
        return "verify"
    if status == "proposed":
        return "report"
    if status in ("failed", "denied", "approval-required", "not-configured"):
        return "escalate"
    raise ValueError(f"unexpected action status {status!r}")


def route_after_verify(state: TriageState) -> Literal["escalate", "report"]:
    status = state["verification"]["status"]
    if status in ("verified", "nothing_to_verify"):
        return "report"
    if status in ("not_recovered", "unverified"):
        return "escalate"
    raise ValueError(f"unexpected verification status {status!r}")
