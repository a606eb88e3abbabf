"""`mitigate eval ...` and `mitigate report ...`: replay and score, compare and gate, retrieval, gaps."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def _fail(message: str) -> int:
    print(f"mitigate: error: {message}", file=sys.stderr)
    return 2


def cmd_eval_run(args: argparse.Namespace) -> int:
    from evals.run import run_eval

    return run_eval(args)


def _retrieval_index(postmortems: Path) -> tuple[Any, str]:
    """The retrieval eval's own index of `postmortems`, kept in the state directory and brought up to
    date (unchanged files are skipped by their content hash), instead of rebuilt on every call."""
    import hashlib

    from api.progress import Progress
    from api.settings import get_settings
    from tools.postmortems import PostmortemIndex

    folder = postmortems.resolve()
    key = hashlib.sha256(str(folder).encode()).hexdigest()[:12]
    where = get_settings().state_dir / "retrieval-eval" / key
    index = PostmortemIndex(where)
    before = index.count()
    with Progress(f"indexing {postmortems}") as progress:
        report = index.ingest(folder, progress.update, prune=True)
    changed = len(report.added) + len(report.updated)
    if before and not changed and not report.removed:
        said = f"reused the index in {where}: {report.unchanged} postmortems unchanged"
    else:
        said = f"indexed in {where}: {changed} added or changed, {len(report.removed)} removed"
        said += f", {report.unchanged} unchanged"
    return index, said + (f", {len(report.failed)} skipped" if report.failed else "")


def cmd_eval_retrieval(args: argparse.Namespace) -> int:
    from evals.dataset import DatasetError, load_dataset
    from evals.retrieval import MODES, retrieval_eval

    if not args.postmortems.exists():
        return _fail(f"{args.postmortems} does not exist")
    try:
        cases = load_dataset(args.dataset)
    except (OSError, DatasetError) as exc:
        return _fail(str(exc))
    index, said = _retrieval_index(args.postmortems)
    print(said, file=sys.stderr)
    try:
        result = retrieval_eval(index, cases) | {"postmortems": index.count()}
    finally:
        index.close()
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['n']} incidents against {result['postmortems']} postmortems (time-filtered, leave-one-out)")
    for mode in MODES:
        for label in ("subcategory", "category"):
            m = result[mode][label]
            print(f"  {mode:<8} same {label:<12} hit@1 {m['hit@1']:.3f}  hit@5 {m['hit@5']:.3f}  MRR {m['mrr']:.3f}")
    return 0


def _comparison(a: str, b: str, resamples: int) -> dict[str, Any]:
    from api.settings import get_settings
    from api.wiring import open_store
    from evals.compare import compare, load_run

    needs_db = not (Path(a).is_file() and Path(b).is_file())
    sessions = open_store(get_settings()).sessions if needs_db else None
    if sessions is not None:  # stored eval runs may be named by a unique prefix of their id
        from api.lookup import resolve

        a, b = (x if Path(x).is_file() else resolve(sessions, "eval run", x) for x in (a, b))
    a_cases, a_figures = load_run(a, sessions)
    b_cases, b_figures = load_run(b, sessions)
    return compare(a_cases, b_cases, resamples, a_figures, b_figures)


def _figure(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def cmd_eval_compare(args: argparse.Namespace) -> int:
    try:
        result = _comparison(args.a, args.b, args.resamples)
    except (LookupError, ValueError, KeyError) as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['n']} paired cases; deltas are candidate - baseline with bootstrap 95% intervals")
    for metric, d in result["deltas"].items():
        low, high = d["ci95"]
        interval = f"[{low:+.3f}, {high:+.3f}]" if low is not None and high is not None else "[n/a]"
        delta = f"{d['delta']:+.3f}" if d["delta"] is not None else "n/a"
        print(f"  {metric:<22} {delta:>7} {interval}")
    for key, label in (
        ("mcnemar_category", "category"),
        ("mcnemar_mitigation", "mitigation"),
        ("mcnemar_m5_recall", "M5 recall"),
    ):
        test = result[key]
        print(
            f"McNemar ({label} correctness): baseline-only right {test['only_a_right']}, candidate-only right "
            f"{test['only_b_right']}, p = {test['p_value']:.4f}"
        )
    for side, name in (("a", "baseline"), ("b", "candidate")):
        m5 = result["m5_precision_exact"][side]
        low = f"{m5['low']:.3f}" if m5["low"] is not None else "n/a"
        figures = result["runs"][side]
        shown = ", ".join(
            f"{k} {_figure(figures.get(k))}" for k in ("fallback_rate", "latency_ms_p95", "tokens", "cost")
        )
        print(f"{name}: M5 {m5['right']}/{m5['decided']} right (exact 95% lower bound {low}); {shown}")
    print(f"{len(result['flipped'])} flipped cases:")
    for case in result["flipped"][:50]:
        print(
            f"  {case['id']}: expected {case['expected'].get('category')}/{case['expected'].get('mitigation')}, "
            f"baseline {case['a'].get('category')}/{case['a'].get('mitigation')}, "
            f"candidate {case['b'].get('category')}/{case['b'].get('mitigation')}"
        )
    return 0


def cmd_eval_gate(args: argparse.Namespace) -> int:
    from evals.compare import gate

    try:
        reasons = gate(_comparison(args.baseline, args.candidate, args.resamples))
    except (LookupError, ValueError, KeyError) as exc:
        return _fail(str(exc))
    for reason in reasons:
        print(f"gate: FAIL: {reason}")
    if not reasons:
        print(
            "gate: pass (no significant loss in category or mitigation accuracy or M5 recall; M5 precision's "
            "exact lower bound over the floor; not mostly fallbacks)"
        )
    return 1 if reasons else 0


def cmd_report_gaps(args: argparse.Namespace) -> int:
    from evals.dataset import DatasetError, load_dataset
    from evals.gaps import gap_report, to_csv, to_markdown

    if args.dataset is not None:
        try:
            report = gap_report(load_dataset(args.dataset))
        except (OSError, DatasetError) as exc:
            return _fail(str(exc))
    else:
        from api.settings import get_settings
        from api.wiring import open_store
        from evals.gaps_store import store_gap_report

        report = store_gap_report(open_store(get_settings()).sessions, args.since)
    if args.format == "json":
        print(json.dumps(report))
    else:
        print(to_csv(report) if args.format == "csv" else to_markdown(report), end="")
    return 0


def _since(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO date or datetime: {text!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def add_eval_commands(sub: Any) -> None:
    evals = sub.add_parser("eval", help="replay labeled incidents and score the copilot")
    eval_sub = evals.add_subparsers(dest="eval_command", required=True, metavar="EVAL_COMMAND")
    run = eval_sub.add_parser("run", help="replay a labeled dataset through the graph, propose-only")
    run.add_argument("--dataset", required=True, type=Path, help="labeled JSONL dataset")
    run.add_argument("--split", choices=["all", "dev", "test"], default="all", help="which half (default all)")
    run.add_argument("--engine", choices=["auto", "rulebook", "llm"], help="override MITIGATE_ENGINE")
    run.add_argument("--label", default="", help="a name for this eval run")
    run.add_argument("--json", action="store_true", help="print one JSON object of metrics")
    run.add_argument("--cases", action="store_true", help="with --json: include every case's prediction")
    run.add_argument("--no-store", action="store_true", help="do not record the eval run in the database")
    run.add_argument("--model", help="LLM model name (overrides MITIGATE_LLM_MODEL)")
    run.add_argument("--base-url", help="OpenAI-compatible endpoint (overrides MITIGATE_LLM_BASE_URL)")
    run.add_argument("--concurrency", type=int, default=1, help="cases replayed at once (default 1)")
    run.add_argument("--resume", metavar="EVAL_RUN_ID", help="continue an interrupted eval run")
    run.add_argument("--limit", type=int, metavar="N", help="only the first N cases of the split (a quick look)")
    run.add_argument(
        "--no-retrieval", action="store_true", help="replay without precedents even when a postmortem index exists"
    )
    run.set_defaults(func=cmd_eval_run)

    retrieval = eval_sub.add_parser("retrieval", help="hit@1, hit@5 and MRR of same-kind precedents, per search mode")
    retrieval.add_argument("--dataset", required=True, type=Path, help="labeled JSONL dataset")
    retrieval.add_argument(
        "--postmortems",
        type=Path,
        default=Path("data/postmortems"),
        help="postmortem folder (default data/postmortems); its index is kept in MITIGATE_STATE_DIR and reused "
        "while the files do not change",
    )
    retrieval.add_argument("--json", action="store_true")
    retrieval.set_defaults(func=cmd_eval_retrieval)

    comp = eval_sub.add_parser("compare", help="metric deltas, McNemar test and flipped cases between two runs")
    comp.add_argument("a", help="baseline: an eval run id (or unique prefix), or a file from `eval run --json --cases`")
    comp.add_argument("b", help="candidate: an eval run id (or unique prefix) or such a file")
    comp.add_argument("--json", action="store_true")
    comp.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    comp.set_defaults(func=cmd_eval_compare)
    gate = eval_sub.add_parser("gate", help="exit 1 when the candidate is significantly worse than the baseline")
    gate.add_argument("--baseline", required=True, help="an eval run id or file")
    gate.add_argument("--candidate", required=True, help="an eval run id or file")
    gate.add_argument("--resamples", type=int, default=1000)
    gate.set_defaults(func=cmd_eval_gate)

    from api.lists_cli import add_eval_list
    from learn.cli import add_cv_command

    add_eval_list(eval_sub)
    add_cv_command(eval_sub)


def add_report_commands(sub: Any) -> None:
    report = sub.add_parser("report", help="reports over labeled incidents or the incident store")
    report_sub = report.add_subparsers(dest="report_command", required=True, metavar="REPORT_COMMAND")
    gaps = report_sub.add_parser("gaps", help="the automation-gap report (paper Tables 2-3, Figures 1-3, TTM)")
    source = gaps.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", type=Path, help="labeled JSONL dataset")
    source.add_argument(
        "--since", type=_since, metavar="DATE", help="incidents in the store since DATE (ISO), labelled by mitigate"
    )
    gaps.add_argument("--format", choices=["md", "csv", "json"], default="md", help="output format (default md)")
    gaps.set_defaults(func=cmd_report_gaps)
