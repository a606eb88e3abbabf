"""`mitigate eval run`: replay, score, record and print."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from typing import Any

from evals.dataset import DatasetError, dataset_digest, load_dataset
from evals.metrics import score
from evals.replay import CaseResult, replay


def run_eval(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from agent.context import MemoryRecorder
    from api.settings import get_settings
    from api.wiring import make_context
    from prompts import prompt_set_digest

    try:
        cases = load_dataset(args.dataset, args.split)
    except (OSError, DatasetError) as exc:
        print(f"mitigate: error: {exc}", file=sys.stderr)
        return 2
    if not cases:
        print(f"mitigate: error: {args.dataset} has no cases in split {args.split!r}", file=sys.stderr)
        return 2
    settings = get_settings()
    template = make_context(settings, MemoryRecorder(), propose_only=True, engine=args.engine)
    console = Console(stderr=True)
    with Progress(
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("replay", total=len(cases))

        def advance(_: CaseResult) -> None:
            progress.advance(task)

        def fresh_context() -> Any:
            from dataclasses import replace

            return replace(template)

        results = replay(cases, fresh_context, advance)

    metrics = score([r.expected for r in results], [r.predicted for r in results])
    latencies = sorted(r.latency_ms for r in results)
    metrics["latency_ms_p50"] = latencies[len(latencies) // 2]
    metrics["latency_ms_p95"] = latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))]
    metrics["llm_calls"] = sum(r.llm_calls for r in results)
    metrics["fallbacks"] = sum(len(r.fallbacks) for r in results)
    config = {
        "engine": "llm" if template.llm else "rulebook",
        "model": getattr(template.llm, "model", None),
        "split": args.split,
        "rulebook_version": template.rulebook.version,
        "rulebook_hash": template.rulebook.digest,
        "policy_hash": template.policy.digest,
        "prompt_hash": prompt_set_digest(),
    }
    eval_id = uuid.uuid4().hex
    if not args.no_store:
        from api.wiring import open_store
        from store.evals import save_eval_run

        store = open_store(settings)
        save_eval_run(
            store.sessions,
            run_id=eval_id,
            label=args.label,
            dataset=str(args.dataset),
            dataset_hash=dataset_digest(args.dataset),
            config=config,
            metrics=metrics,
            cases=results,
        )
    out = {"eval_run_id": None if args.no_store else eval_id, **metrics, "config": config}
    if args.json:
        if args.cases:
            out["cases"] = [
                {"id": r.case_id, "expected": r.expected, "predicted": r.predicted, "confidence": r.confidence}
                for r in results
            ]
        print(json.dumps(out, default=str))
    else:
        from api.render import print_metrics

        print_metrics(out)
    return 0
