"""The triage graph: intake -> (investigate, with a cluster or Prometheus to look at) -> (explore, with an LLM
and its tool loop) -> retrieve -> classify -> plan -> preflight -> guard -> act -> verify -> (escalate) -> report.
Without a cluster or Prometheus, intake reads the store's history itself and records it as the
investigate step.

`builder` is exported uncompiled so that tests, the CLI and the server compile it with the
checkpointer they own.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from langgraph.graph import END, START, StateGraph

from agent.context import TriageContext
from agent.nodes.act import act
from agent.nodes.classify import classify
from agent.nodes.escalate import escalate
from agent.nodes.explore import explore
from agent.nodes.guard import guard
from agent.nodes.intake import intake
from agent.nodes.investigate import investigate
from agent.nodes.plan import plan
from agent.nodes.preflight import preflight
from agent.nodes.report import report
from agent.nodes.retrieve import retrieve
from agent.nodes.verify import verify
from agent.routes import (
    route_after_act,
    route_after_guard,
    route_after_intake,
    route_after_investigate,
    route_after_verify,
)
from agent.state import TriageInput, TriageState

builder: StateGraph[TriageState, TriageContext, TriageInput, TriageState] = StateGraph(
    TriageState, context_schema=TriageContext, input_schema=TriageInput
)
builder.add_node("intake", intake)
builder.add_node("investigate", investigate)
builder.add_node("explore", explore)
builder.add_node("retrieve", retrieve)
builder.add_node("classify", classify)
builder.add_node("plan", plan)
builder.add_node("preflight", preflight)
builder.add_node("guard", guard)
builder.add_node("act", act)
builder.add_node("verify", verify)
builder.add_node("escalate", escalate)
builder.add_node("report", report)
builder.add_edge(START, "intake")
builder.add_conditional_edges("intake", route_after_intake)
builder.add_conditional_edges("investigate", route_after_investigate)
builder.add_edge("explore", "retrieve")
builder.add_edge("retrieve", "classify")
builder.add_edge("classify", "plan")
builder.add_edge("plan", "preflight")
builder.add_edge("preflight", "guard")
builder.add_conditional_edges("guard", route_after_guard)
builder.add_conditional_edges("act", route_after_act)
builder.add_conditional_edges("verify", route_after_verify)
builder.add_edge("escalate", "report")
builder.add_edge("report", END)


_COMPILED_KEPT = 4  # a process has one checkpointer (serve, worker, CLI); tests open many in turn
_compiled: OrderedDict[int, tuple[Any, Any]] = OrderedDict()
_compiling = threading.Lock()


def build_graph(checkpointer: Any = None) -> Any:
    """The graph compiled with this checkpointer, once per process and checkpointer: compiling took
    ~15 % of a triage when it was done for every run. Keyed by the checkpointer object itself (held
    while cached, so its id cannot be reused), so a run always gets the graph bound to the checkpointer
    its caller owns; only the last few are kept, so a closed checkpointer is not held for ever."""
    with _compiling:
        entry = _compiled.get(id(checkpointer))
        if entry is not None and entry[0] is checkpointer:
            _compiled.move_to_end(id(checkpointer))
            return entry[1]
        graph = builder.compile(checkpointer=checkpointer)
        _compiled[id(checkpointer)] = (checkpointer, graph)
        while len(_compiled) > _COMPILED_KEPT:
            _compiled.popitem(last=False)
        return graph
