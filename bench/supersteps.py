"""Benchmark: what a checkpointed LangGraph superstep costs, one node after another against a fan-out.

Graphs of no-op nodes over a ~6 KB state (about a triage's), compiled with the project's checkpointer
(SQLite, durability "sync", as api.runs runs the triage graph), interleaved:
  chain3    a -> b -> d                 3 supersteps
  chain4    a -> b -> c -> d            4
  chain5    a -> b -> c -> e -> d       5   (intake, investigate, explore, retrieve, classify)
  fan2      a -> (b | c) -> d           3   (b and c side by side)
  seq+fan2  a -> e -> (b | c) -> d      4   (intake, investigate, (explore | retrieve), classify)
A superstep with one task runs inline; one with several runs them on LangGraph's thread pool. The
question it answers: does running two nodes side by side save the superstep it removes?

usage: .venv/bin/python bench/supersteps.py [--repeat 600]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, TypedDict

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class State(TypedDict, total=False):
    blob: dict[str, str]
    a: int
    b: int
    c: int
    d: int
    e: int


def _node(key: str) -> Any:
    def write(state: State) -> dict[str, Any]:
        return {key: 1}

    return write


def _graph(edges: list[tuple[str, str]]) -> Any:
    from langgraph.graph import StateGraph

    graph = StateGraph(State)
    for name in sorted({n for edge in edges for n in edge} - {"__start__", "__end__"}):
        graph.add_node(name, _node(name))
    for source, target in edges:
        graph.add_edge(source, target)
    return graph


def main() -> None:
    from langgraph.graph import END, START

    from api.wiring import open_checkpointer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=600)
    args = parser.parse_args()
    shapes = {
        "chain3": [(START, "a"), ("a", "b"), ("b", "d"), ("d", END)],
        "chain4": [(START, "a"), ("a", "b"), ("b", "c"), ("c", "d"), ("d", END)],
        "chain5": [(START, "a"), ("a", "b"), ("b", "c"), ("c", "e"), ("e", "d"), ("d", END)],
        "fan2": [(START, "a"), ("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("d", END)],
        "seq+fan2": [(START, "a"), ("a", "e"), ("e", "b"), ("e", "c"), ("b", "d"), ("c", "d"), ("d", END)],
    }
    blob = {f"k{i}": "x" * 50 for i in range(100)}
    results: dict[str, list[float]] = {name: [] for name in shapes}
    with tempfile.TemporaryDirectory() as tmp, open_checkpointer(f"sqlite:///{tmp}/checkpoints.db") as checkpointer:
        compiled = {name: _graph(edges).compile(checkpointer=checkpointer) for name, edges in shapes.items()}
        for i in range(args.repeat + 5):
            for name, graph in compiled.items():  # interleaved: drift in the machine's load hits all alike
                config: dict[str, Any] = {"configurable": {"thread_id": uuid.uuid4().hex}}
                started = time.perf_counter()
                graph.invoke({"blob": blob}, config=config, durability="sync")
                if i >= 5:  # the first few warm the connection and the compiled graphs
                    results[name].append((time.perf_counter() - started) * 1000)
    base = statistics.median(results["chain3"])
    print(f"no-op graphs, SQLite checkpointer, durability sync, n={args.repeat} each, interleaved:")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"  {name:9s} median {median:5.2f} ms  ({median - base:+.2f} ms against chain3)")


if __name__ == "__main__":
    main()
