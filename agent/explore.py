"""The LLM tool loop: a bounded LangGraph subgraph in which the model reads the cluster, Prometheus,
the incident store and the postmortems through the read-only tool registry (tools/read_tools), with
OpenAI-compatible function calling (`tools=[...]`, `tool_calls`, one `tool` message per call,
several calls per turn).

    START -> ask_model -(tool calls)-> run_tools -> ask_model ... -(an answer, or the budget)-> END

It can only read: the registry's tools get read ports, and a name outside it is refused (recorded,
told to the model, and the loop goes on). Every turn checks the budget first (steps, tokens,
seconds), and the reason it stopped is recorded. Tool output goes back to the model as escaped data
inside <tool_output>, like incident text. What it found feeds classify as untrusted evidence; every
write still goes plan -> guard -> act.
"""

from __future__ import annotations

import math
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC
from typing import Any, Literal, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import START, StateGraph
from langgraph.runtime import Runtime

from agent.findings import Finding, Gap
from agent.llm import LLMEngine, LLMFailure, Usage, untrusted_block
from agent.schemas import Incident
from prompts import render
from tools.read_tools.registry import CallOutcome, ReadSources, Registry, parse_arguments

TOOL_OUTPUT_CHARS = 6000  # what one call may put into the conversation
# The loop passes `durability` on purpose (see Explorer.run); LangGraph warns that it does nothing there.
warnings.filterwarnings("ignore", message="`durability` has no effect when no checkpointer", category=UserWarning)


@dataclass(frozen=True)
class ExploreBudget:
    max_steps: int = 6  # model turns
    max_tokens: int = 24_000  # prompt + completion tokens over all turns
    max_seconds: float = 60.0
    max_calls_per_step: int = 6

    def exhausted(self, steps: int, tokens: int, elapsed_s: float) -> str | None:
        if steps >= self.max_steps:
            return "budget: steps"
        if tokens >= self.max_tokens:
            return "budget: tokens"
        if elapsed_s >= self.max_seconds:
            return "budget: seconds"
        return None


class ExploreState(TypedDict):
    messages: list[dict[str, Any]]
    pending: list[dict[str, str]]
    calls: list[dict[str, Any]]
    findings: list[Finding]
    gaps: list[Gap]
    steps: int
    tokens: int
    usage: dict[str, int]
    stop_reason: str
    conclusion: str


@dataclass
class ExploreRun:
    """The subgraph's run context: the engine, the tools and their sources, the budget, the clock."""

    engine: LLMEngine
    registry: Registry
    sources: ReadSources
    budget: ExploreBudget
    started: float

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def _add_usage(total: dict[str, int], usage: Usage) -> dict[str, int]:
    return {k: total.get(k, 0) + v for k, v in usage.as_dict().items()}


def ask_model(state: ExploreState, runtime: Runtime[ExploreRun]) -> dict[str, Any]:
    run = runtime.context
    stop = run.budget.exhausted(state["steps"], state["tokens"], run.elapsed())
    if stop:
        return {"stop_reason": stop, "pending": []}
    remaining = run.budget.max_seconds - run.elapsed()
    try:
        choice, usage = run.engine.chat_with_tools(state["messages"], run.registry.specs(run.sources), remaining)
    except LLMFailure as failure:
        # A call cut off by the loop's own deadline is the time budget ending, not the model failing.
        out_of_time = failure.kind == "timeout" and run.elapsed() >= run.budget.max_seconds
        return {
            "stop_reason": "budget: seconds" if out_of_time else f"llm failure: {failure.kind}",
            "pending": [],
            "usage": _add_usage(state["usage"], failure.usage),
            "steps": state["steps"] + 1,
        }
    message = choice.message
    calls = [
        {"id": c.id, "name": c.function.name, "arguments": c.function.arguments or "{}"}
        for c in (message.tool_calls or [])
        if getattr(c, "function", None) is not None
    ]
    # An empty string, never null: llama.cpp's OpenAI-compatible server answers 500 to an assistant
    # turn whose content is null, which is what a tool-calling turn carries (found in the live run).
    said: dict[str, Any] = {"role": "assistant", "content": message.content or ""}
    if calls:
        said["tool_calls"] = [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in calls
        ]
    update: dict[str, Any] = {
        "messages": [*state["messages"], said],
        "steps": state["steps"] + 1,
        "tokens": state["tokens"] + usage.prompt_tokens + usage.completion_tokens,
        "usage": _add_usage(state["usage"], usage),
        "pending": calls,
    }
    if not calls:
        update["stop_reason"] = "truncated" if choice.finish_reason == "length" else "done"
        update["conclusion"] = " ".join(str(message.content or "").split())[:2000]
    return update


def _told(outcome: CallOutcome) -> str:
    body = untrusted_block({"tool": outcome.tool, **outcome.for_model()})
    if len(body) > TOOL_OUTPUT_CHARS:
        body = body[:TOOL_OUTPUT_CHARS] + "\n... (cut: output over the tool's size limit)"
    return f"<tool_output>\n{body}\n</tool_output>"


def run_tools(state: ExploreState, runtime: Runtime[ExploreRun]) -> dict[str, Any]:
    """Every call of the last turn, concurrently (a turn may ask for several); one tool message each,
    in the order asked. Calls over the per-turn limit are refused, not run."""
    run = runtime.context
    pending = state["pending"]
    allowed = pending[: run.budget.max_calls_per_step]
    with ThreadPoolExecutor(max_workers=min(4, max(1, len(allowed)))) as pool:
        outcomes = list(pool.map(lambda c: run.registry.call(c["name"], c["arguments"], run.sources), allowed))
    for extra in pending[len(allowed) :]:
        limit = f"refused: over the limit of {run.budget.max_calls_per_step} tool calls in one turn"
        outcomes.append(CallOutcome(extra["name"][:80], parse_arguments(extra["arguments"]), False, limit))
    messages, calls = list(state["messages"]), list(state["calls"])
    findings, gaps = list(state["findings"]), list(state["gaps"])
    seen = {(f["summary"], str(f["source"])) for f in findings}
    for call, outcome in zip(pending, outcomes, strict=True):
        content = _told(outcome)
        messages.append({"role": "tool", "tool_call_id": call["id"], "content": content})
        calls.append(
            {
                "step": state["steps"],
                "tool": outcome.tool,
                "args": outcome.args if outcome.ok else parse_arguments(call["arguments"]),
                "latency_ms": outcome.latency_ms,
                "tokens": math.ceil(len(content) / 4),  # what its output costs in the conversation (estimate)
                "ok": outcome.ok,
                "error": outcome.error,
            }
        )
        for found in outcome.findings:
            if (found["summary"], str(found["source"])) not in seen:
                seen.add((found["summary"], str(found["source"])))
                findings.append(found)
        gaps.extend(g for g in outcome.gaps if g not in gaps)
    return {"messages": messages, "calls": calls, "findings": findings, "gaps": gaps, "pending": []}


def route_after_model(state: ExploreState) -> Literal["run_tools", "__end__"]:
    if state.get("stop_reason"):
        return "__end__"
    if state["pending"]:
        return "run_tools"
    raise ValueError("the model turn neither answered nor asked for tools")


loop_builder: StateGraph[ExploreState, ExploreRun, ExploreState, ExploreState] = StateGraph(
    ExploreState, context_schema=ExploreRun
)
loop_builder.add_node("ask_model", ask_model)
loop_builder.add_node("run_tools", run_tools)
loop_builder.add_edge(START, "ask_model")
loop_builder.add_conditional_edges("ask_model", route_after_model)
loop_builder.add_edge("run_tools", "ask_model")
# No checkpoints of its own (even inside a checkpointed run): a bounded read-only loop is simply
# asked again if the run is.
LOOP = loop_builder.compile(checkpointer=False)


def why_not_explored(llm: Any, explorer: Any) -> str | None:
    """Why the LLM's tool loop cannot run for this context, or None when it can."""
    if llm is None:
        return "no LLM configured"
    return "tool loop not configured" if explorer is None else None


def skipped(reason: str) -> dict[str, Any]:
    return {
        "findings": [],
        "gaps": [],
        "calls": [],
        "stop_reason": reason,
        "steps": 0,
        "tokens": 0,
        "elapsed_ms": 0.0,
    }


@dataclass
class Explorer:
    """The tool loop as the graph's `explore` node uses it: which tools, over which sources, within
    which budget. The LLM engine comes from the run context."""

    registry: Registry
    sources: ReadSources
    budget: ExploreBudget = ExploreBudget()

    def run(
        self, engine: LLMEngine, incident: Incident, entities: dict[str, str]
    ) -> tuple[dict[str, Any], dict[str, int]]:
        """(the exploration record, what the LLM calls cost)"""
        tools = self.registry.available(self.sources)
        if not tools:
            return skipped("no read-only source configured"), Usage().as_dict()
        system = render(
            "explore",
            tools="\n".join(f"- {t.name}: {t.description}" for t in tools),
            namespaces=", ".join(sorted(self.sources.namespaces)),
            max_steps=str(self.budget.max_steps),
        )
        data = {"incident": incident.model_dump(mode="json", exclude_none=True), "entities": entities}
        start: ExploreState = {
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": f"<incident>\n{untrusted_block(data)[:20_000]}\n</incident>"},
            ],
            "pending": [],
            "calls": [],
            "findings": [],
            "gaps": [],
            "steps": 0,
            "tokens": 0,
            "usage": {},
            "stop_reason": "",
            "conclusion": "",
        }
        # This run's incident for the tools that read relative to it (history leaves it out; changes say
        # how long before its start they happened). A copy: the Explorer's sources are shared by runs.
        impact = incident.started_at
        if impact is not None and impact.tzinfo is None:
            impact = impact.replace(tzinfo=UTC)
        sources = replace(self.sources, incident_id=incident.id, impact=impact)
        context = ExploreRun(engine, self.registry, sources, self.budget, time.monotonic())
        # durability="exit": a checkpointed parent run's "sync" would otherwise be inherited, and a graph
        # without a checkpointer then waits on a checkpoint write it never made (LangGraph 1.2).
        limit: RunnableConfig = {"recursion_limit": 2 * self.budget.max_steps + 4}
        final = LOOP.invoke(start, limit, context=context, durability="exit")
        exploration = {
            "findings": final["findings"],
            "gaps": final["gaps"],
            "calls": final["calls"],
            "stop_reason": final["stop_reason"],
            "steps": final["steps"],
            "tokens": final["tokens"],
            "elapsed_ms": round(context.elapsed() * 1000, 1),
            "conclusion": final["conclusion"],
        }
        return exploration, final["usage"] or Usage().as_dict()
