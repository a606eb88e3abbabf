"""`mitigate eval run`: replay, score, record and print. Cases are stored as they finish, so an
interrupted run continues with `--resume EVAL_RUN_ID`."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import uuid
from dataclasses import replace
from typing import Any

from evals.dataset import DatasetError, dataset_digest, load_dataset
from evals.metrics import bootstrap_intervals, calibration, latency_intervals, percentile, score
from evals.replay import CaseResult, replay


def _fail(message: str) -> int:
    print(f"mitigate: error: {message}", file=sys.stderr)
    return 2


def _summary(stored: list[dict[str, Any]]) -> dict[str, Any]:
    metrics = score([c["expected"] for c in stored], [c["predicted"] for c in stored])
    latencies = [c["latency_ms"] for c in stored]
    metrics["latency_ms_p50"] = percentile(latencies, 0.5)
    metrics["latency_ms_p95"] = percentile(latencies, 0.95)
    metrics["ci95"] = bootstrap_intervals([c["expected"] for c in stored], [c["predicted"] for c in stored])
    metrics["ci95"] |= latency_intervals(latencies)
    metrics["calibration"] = calibration(
        [c["expected"] for c in stored], [c["predicted"] for c in stored], [c["confidence"] for c in stored]
    )
    metrics["llm_calls"] = sum(c["llm_calls"] for c in stored)
    metrics["tokens"] = sum(c["tokens"] for c in stored)
    metrics["needs_human_rate"] = sum(bool(c["predicted"].get("needs_human")) for c in stored) / len(stored)
    return metrics


def engine_shares(stored: list[dict[str, Any]]) -> dict[str, Any]:
    """Which engine answered each case, and the share of cases where the LLM path fell back: a
    candidate model whose answers are mostly the rulebook's is not the model it claims to be."""
    engines: dict[str, int] = {}
    for case in stored:
        engine = str(case["predicted"].get("engine", "rulebook"))
        engines[engine] = engines.get(engine, 0) + 1
    fell_back = sum(1 for c in stored if any(f.get("kind") != "vetoed" for f in c["predicted"].get("fallbacks", [])))
    return {"engines": engines, "fallback_rate": fell_back / len(stored) if stored else None}


def run_eval(args: argparse.Namespace) -> int:
    from agent.context import MemoryRecorder
    from api.progress import Progress
    from api.settings import get_settings
    from api.wiring import make_context, open_store
    from prompts import prompt_set_digest
    from store.evals import EvalStore

    try:
        cases = load_dataset(args.dataset, args.split)
    except (OSError, DatasetError) as exc:
        return _fail(str(exc))
    if args.limit is not None:
        if args.limit < 1:
            return _fail("--limit must be at least 1")
        cases = cases[: args.limit]
    if not cases:
        return _fail(f"{args.dataset} has no cases in split {args.split!r}")
    overrides = {k: v for k, v in (("llm_model", args.model), ("llm_base_url", args.base_url)) if v}
    settings = get_settings().model_copy(update=overrides)
    template = make_context(settings, MemoryRecorder(), propose_only=True, engine=args.engine)
    # A replay sees only what the incident carried: today's telemetry would be the future's.
    template = replace(template, telemetry=None, sla=None, localizer=None, investigator=None)
    if args.no_retrieval:
        template = replace(template, retriever=None)
    config = {
        "engine": "llm" if template.llm else "rulebook",
        "model": getattr(template.llm, "model", None),
        "split": args.split if args.limit is None else f"{args.split}[:{args.limit}]",
        "retrieval": template.retriever is not None,
        "rulebook_version": template.rulebook.version,
        # The judgement model that answered (None: the rulebook alone, and why).
        "judgement": template.judgement.version if template.judgement else None,
        "judgement_problem": template.judgement_problem,
        "rulebook_hash": template.rulebook.digest,
        "policy_hash": template.policy.digest,
        "prompt_hash": prompt_set_digest(),
    }
    evals = None if args.no_store else EvalStore(open_store(settings).sessions)
    eval_id = args.resume or uuid.uuid4().hex
    done: list[dict[str, Any]] = []
    if evals is not None and args.resume:
        previous = evals.get(args.resume)
        if previous is None:
            return _fail(f"no eval run {args.resume} to resume")
        if previous["dataset_hash"] != dataset_digest(args.dataset) or previous["config"] != config:
            return _fail(f"eval run {args.resume} was made with another dataset or configuration")
        done = evals.cases(args.resume)
    elif evals is not None:
        evals.start(
            eval_id,
            label=args.label,
            dataset=str(args.dataset),
            dataset_hash=dataset_digest(args.dataset),
            config=config,
        )
    finished = {c["case_id"] for c in done}
    todo = [c for c in cases if c.id not in finished]

    lock = threading.Lock()
    # A bar on a terminal, a line every 10 % or 10 s elsewhere (a CI log): a long replay is never silent.
    with Progress("replaying", total=len(cases)) as progress:
        progress.update(len(done))

        def record(result: CaseResult) -> None:
            with lock:
                if evals is not None:
                    evals.add_case(eval_id, result)
                progress.advance()

        results = replay(todo, lambda: replace(template), record, concurrency=args.concurrency)

    stored = done + [
        {
            "case_id": r.case_id,
            "expected": r.expected,
            "predicted": r.predicted,
            "confidence": r.confidence,
            "latency_ms": r.latency_ms,
            "llm_calls": r.llm_calls,
            "tokens": r.tokens,
        }
        for r in results
    ]
    metrics = _summary(stored)
    metrics["fallbacks"] = sum(len(c["predicted"].get("fallbacks", [])) for c in stored)
    metrics |= engine_shares(stored)
    price = settings.llm_cost_per_1k_tokens
    metrics["cost"] = round(metrics["tokens"] / 1000 * price, 6) if price and config["engine"] == "llm" else None
    if evals is not None:
        evals.finish(eval_id, metrics)
    out = {"eval_run_id": None if evals is None else eval_id, **metrics, "config": config}
    if args.json:
        if args.cases:
            order = {c.id: n for n, c in enumerate(cases)}
            out["cases"] = [
                {
                    "id": c["case_id"],
                    "expected": c["expected"],
                    "predicted": c["predicted"],
                    "confidence": c["confidence"],
                }
                for c in sorted(stored, key=lambda c: order[c["case_id"]])
            ]
        print(json.dumps(out, default=str))
    else:
        from api.render import print_metrics

        print_metrics(out)
    return 0
