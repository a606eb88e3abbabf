"""`mitigate rca eval [--json]`: the localisation matrix and its table, beside the paper's Table 1."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

FAULT_NAMES = {"cpu_hog": "CPU", "memory_leak": "MEMORY", "network_latency": "NETWORK", "gpu_throttle": "GPU"}


def _row(cells: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    for fault in FAULT_NAMES:
        values = cells.get(fault)
        out += ["" if values is None else f"{values[k]:.2f}" for k in ("AC@1", "AC@3", "Avg@5")]
    return out


def print_table(result: dict[str, Any]) -> None:
    print(
        f"Fault localisation: {result['injections']} injections, {result['candidates']} candidate pods "
        f"(random AC@1 = 1/{result['candidates']}); this run, then Scheinert et al. Table 1\n"
    )
    width = 2 + max(len(m) for m in (*result["methods"], *(f"paper: {m}" for m in result["paper"])))
    head = "".join(f"{name:^18}" for name in FAULT_NAMES.values())
    print(f"{'':{width}}{head}")
    print(f"{'method':{width}}" + "  AC@1  AC@3 Avg@5" * len(FAULT_NAMES))
    for label, rows in (("", result["methods"]), ("paper: ", result["paper"])):
        for method, cells in rows.items():
            print(f"{label + method:{width}}" + "".join(f"{c:>6}" for c in _row(cells)))
    overall = ", ".join(f"{m} {v:.2f}" for m, v in result["ac1_overall"].items())
    print(f"\nAC@1 over all injections: {overall}")
    for method, cells in result["methods"].items():
        blamed: dict[str, int] = {}
        for values in cells.values():
            for pod, count in values["blamed"].items():
                blamed[pod] = blamed.get(pod, 0) + count
        if blamed and method != "Random":
            print(f"{method} ranked first when wrong: {blamed}")
    print(f"({result['seconds']} s: simulate, backfill with promtool, range queries, rank)")


def cmd_rca_eval(args: argparse.Namespace) -> int:
    from evals.rca import run_matrix
    from sim.stack import Schedule

    try:
        result = run_matrix(Schedule(repeats=args.repeats), seed=args.seed, workdir=args.workdir)
    except (RuntimeError, OSError) as exc:
        print(f"mitigate: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0


def add_rca_commands(sub: Any) -> None:
    rca = sub.add_parser("rca", help="fault localisation: which pod of the serving stack is the cause")
    rca_sub = rca.add_subparsers(dest="rca_command", required=True, metavar="RCA_COMMAND")
    evaluate = rca_sub.add_parser(
        "eval", help="the RCA paper's experiment on the simulated stack: AC@1, AC@3, Avg@5 per fault and method"
    )
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--repeats", type=int, default=10, help="injections per fault and worker (default 10)")
    evaluate.add_argument("--seed", type=int, default=4, help="the simulation's seed (default 4)")
    evaluate.add_argument("--workdir", type=Path, help="keep the telemetry and Prometheus blocks here")
    evaluate.set_defaults(func=cmd_rca_eval)
