from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agent.context import TriageContext
from agent.explore import skipped, why_not_explored
from agent.nodes._common import incident_of, record
from agent.state import TriageState


def explore(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """The LLM's read-only tool loop (agent/explore.py) when an LLM and the loop are configured; else a
    no-op that says why. Its findings go to classify as evidence; it never writes anywhere."""
    ctx = runtime.context
    if ctx.llm is None or ctx.explorer is None:  # the graph routes past this step then; called alone, say why
        return {"exploration": skipped(why_not_explored(ctx.llm, ctx.explorer) or "")}
    exploration, usage = ctx.explorer.run(ctx.llm, incident_of(state), state.get("entities", {}))
    refused = sum(1 for c in exploration["calls"] if not c["ok"])
    summary = (
        f"{len(exploration['calls'])} tool calls ({refused} refused) in {exploration['steps']} turns, "
        f"{len(exploration['findings'])} findings, {len(exploration['gaps'])} gaps; "
        f"stopped: {exploration['stop_reason']}"
    )
    record(runtime, state, "explore", summary, exploration)
    return {"exploration": exploration, "llm_usage": [{"stage": "explore", **usage}]}
