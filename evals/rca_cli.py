"""`mitigate rca eval`: the fault-localisation matrix and its tables (per fault type, per tier, overall;
AC@1, AC@3, Avg@5 with 95 % bootstrap intervals), beside the paper's Table 1."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

METRICS = ("AC@1", "AC@3", "Avg@5")


def _cell(values: dict[str, Any] | None, metric: str) -> str:
    if values is None:
        return ""
    low, high = values.get("ci", {}).get(metric, (values[metric], values[metric]))
    return f"{values[metric]:.2f} [{low:.2f}-{high:.2f}]"


def _table(title: str, rows: dict[str, dict[str, dict[str, Any]]], columns: list[str], metric: str) -> None:
    width = 2 + max(len(m) for m in rows)
    print(f"\n{title}: {metric} [95 % bootstrap interval]")
    print(f"{'method':{width}}" + "".join(f"{c[:16]:>18}" for c in columns))
    for method, cells in rows.items():
        print(f"{method:{width}}" + "".join(f"{_cell(cells.get(c), metric):>18}" for c in columns))


def print_table(result: dict[str, Any]) -> None:
    print(
        f"Fault localisation ({result['stress']} stress, noise {result['noise']:g}, seed {result['seed']}): "
        f"{result['injections']} injections, {result['candidates']} candidates (random AC@1 = "
        f"1/{result['candidates']}), {', '.join(result['faults'])} on tiers {', '.join(result['tiers'])}"
    )
    overall = {m: {"all": v} for m, v in result["overall"].items()}
    by_fault, by_tier = result["methods"], result["by_tier"]
    faults = list(next(iter(by_fault.values())))
    tiers = list(next(iter(by_tier.values())))
    for metric in METRICS:
        _table("Overall", overall, ["all"], metric)
        _table("Per fault type", by_fault, faults, metric)
        _table("Per tier", by_tier, tiers, metric)
    print("\nRanked first when wrong (all faults):")
    for method, cells in result["overall"].items():
        if method != "Random" and cells["blamed"]:
            top = ", ".join(f"{pod} {n}" for pod, n in list(cells["blamed"].items())[:4])
            print(f"  {method}: {top}")
    paper = result["paper"]
    print("\nScheinert et al., Table 1 (faults on the workers only, 6 candidates): AC@1")
    for method, cells in paper.items():
        print(f"  {method:8}" + "".join(f"{f} {v['AC@1']:.2f}  " for f, v in cells.items()))
    timings = ", ".join(f"{k} {v}" for k, v in result["timings_s"].items())
    print(f"\n({result['seconds']} s: {timings})")


def _names(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def cmd_rca_eval(args: argparse.Namespace) -> int:
    from evals.rca import run_matrix
    from sim.stack import Schedule
    from sim.stack_faults import STACK_FAULTS, TIERS

    tiers = _names(args.tiers) if args.tiers else TIERS
    faults = _names(args.faults) if args.faults else None
    unknown = [t for t in tiers if t not in TIERS] + [f for f in faults or () if f not in STACK_FAULTS]
    if unknown:
        print(f"mitigate: error: unknown tier or fault: {', '.join(unknown)}", file=sys.stderr)
        return 2
    try:
        result = run_matrix(
            Schedule(repeats=args.repeats),
            seed=args.seed,
            noise=args.noise,
            tiers=tiers,
            faults=faults,
            stress=args.stress,
            workdir=args.workdir,
        )
    except (RuntimeError, OSError, ValueError) as exc:
        print(f"mitigate: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0


def add_rca_commands(sub: Any) -> None:
    from sim.stack import STRESSES
    from sim.stack_faults import STACK_FAULTS, TIERS

    rca = sub.add_parser("rca", help="fault localisation: which pod or node of the serving stack is the cause")
    rca_sub = rca.add_subparsers(dest="rca_command", required=True, metavar="RCA_COMMAND")
    evaluate = rca_sub.add_parser(
        "eval",
        help="the RCA paper's experiment, made fairer: faults on every tier, realistic noise, every method on the "
        "same data; AC@1, AC@3, Avg@5 per fault, tier and overall",
    )
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--repeats", type=int, default=10, help="injections per fault and target (default 10)")
    evaluate.add_argument("--seed", type=int, default=4, help="the simulation's seed (default 4)")
    evaluate.add_argument(
        "--noise", type=float, default=0.05, help="per-scrape jitter; gaps, bursts, background anomalies scale with it"
    )
    evaluate.add_argument("--tiers", help=f"comma-separated, of {','.join(TIERS)} (default all)")
    evaluate.add_argument("--faults", help=f"comma-separated, of {','.join(STACK_FAULTS)} (default the seen ones)")
    evaluate.add_argument(
        "--stress",
        choices=STRESSES,
        default="none",
        help="noise: 3x the noise; two_faults: two concurrent faults; unseen: faults the methods were not built for",
    )
    evaluate.add_argument("--workdir", type=Path, help="keep the telemetry and Prometheus blocks here")
    evaluate.set_defaults(func=cmd_rca_eval)
