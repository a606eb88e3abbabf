"""Replay labeled incidents through the same graph, propose-only, and collect per-case predictions."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from agent.context import MemoryRecorder, TriageContext
from agent.graph import build_graph
from evals.dataset import Case


@dataclass
class CaseResult:
    case_id: str
    expected: dict[str, Any]
    predicted: dict[str, Any]
    confidence: float
    latency_ms: float
    llm_calls: int = 0
    tokens: int = 0
    fallbacks: list[dict[str, Any]] = field(default_factory=list)


def replay_one(graph: Any, case: Case, context: TriageContext) -> CaseResult:
    context.recorder = MemoryRecorder()
    context.propose_only = True
    started = time.perf_counter()
    state = graph.invoke(
        {"run_id": f"eval-{case.id}", "incident": case.incident.model_dump(mode="json")}, context=context
    )
    latency = (time.perf_counter() - started) * 1000
    report = state["report"]
    usage = report.get("llm_usage", [])
    return CaseResult(
        case_id=case.id,
        expected=case.labels,
        # Which engine answered and why any fallback happened travel with the case, so a resumed eval
        # run counts them for the cases it did not replay itself.
        predicted={
            **{k: report[k] for k in ("category", "subcategory", "mitigation", "status", "engine")},
            "needs_human": bool(report.get("needs_human")),
            "fallbacks": [{"stage": f["stage"], "kind": f["kind"]} for f in report.get("fallbacks", [])],
        },
        confidence=float(report["confidence"]),
        latency_ms=latency,
        llm_calls=sum(u.get("calls", 0) for u in usage),
        tokens=sum(u.get("prompt_tokens", 0) + u.get("completion_tokens", 0) for u in usage),
        fallbacks=report.get("fallbacks", []),
    )


def replay(
    cases: Iterable[Case],
    make_context: Callable[[], TriageContext],
    on_case: Callable[[CaseResult], None] | None = None,
    concurrency: int = 1,
) -> list[CaseResult]:
    """Replay propose-only; with concurrency > 1 cases run on threads (useful when an LLM is the engine)."""
    graph = build_graph()
    items = list(cases)
    if concurrency <= 1:
        results = []
        for case in items:
            results.append(replay_one(graph, case, make_context()))
            if on_case is not None:
                on_case(results[-1])
        return results
    from concurrent.futures import ThreadPoolExecutor, as_completed

    by_id: dict[str, CaseResult] = {}
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [pool.submit(replay_one, graph, case, make_context()) for case in items]
        for future in as_completed(futures):
            result = future.result()
            by_id[result.case_id] = result
            if on_case is not None:
                on_case(result)
    return [by_id[case.id] for case in items]
