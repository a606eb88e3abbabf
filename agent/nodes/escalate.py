from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agent.context import TriageContext
from agent.nodes._common import record
from agent.state import TriageState
from tools.escalation import build_escalation


def escalate(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """Hand the incident to a human for an M1 hotfix, saying why automation stopped."""
    ctx = runtime.context
    escalation = build_escalation(state)
    if ctx.notify is not None:
        try:
            ctx.notify(escalation)
            escalation["notified"] = True
        except Exception as exc:  # a broken pager hook must not lose the escalation record
            escalation["notified"] = False
            escalation["notify_error"] = f"{type(exc).__name__}: {exc}"
    else:
        escalation["notified"] = False
        escalation["notify_error"] = "no notification hook configured"
    record(runtime, state, "escalate", escalation["reason"], escalation)
    return {"escalation": escalation}
