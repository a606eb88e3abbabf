"""The `mitigate` command. Heavy libraries are imported inside the commands so --help stays fast."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# The closed-loop demo's scenarios (sim/faults.py has them all); kept here so --help stays fast.
# cpu_hog is the RCA paper's self-stabilisation experiment: localisation picks the pod to restart.
SCENARIOS = ("timeout", "resource_exhaustion", "latency_spike", "transient", "bad_node", "header_misconfig", "cpu_hog")

EXIT_USAGE = 2


def _fail(message: str) -> int:
    print(f"mitigate: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _read_incident(source: str) -> tuple[Any, dict[str, Any]]:
    from pydantic import ValidationError

    from agent.schemas import Incident

    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source} is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise ValueError(f"{source} must hold one JSON object (an incident)")
    visible = dict(payload)
    if isinstance(payload.get("timeline"), dict) and payload["timeline"].get("started_at"):
        visible.setdefault("started_at", payload["timeline"]["started_at"])
    try:
        return Incident.model_validate(visible), payload
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'incident'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{source} is not a valid incident: {problems}") from exc


def cmd_triage(args: argparse.Namespace) -> int:
    import uuid

    from api.run_faults import run_to_end
    from api.runs import create_run, execute_run, resume_run
    from api.runs_cli import _show
    from api.settings import get_settings
    from api.wiring import make_context, open_checkpointer, open_store

    try:
        incident, payload = _read_incident(args.file)
    except (OSError, ValueError) as exc:
        return _fail(str(exc))
    settings = get_settings()
    store = open_store(settings)
    context = make_context(settings, store.recorder, engine=args.engine)
    engine = "llm" if context.llm else "rulebook"
    run_id = create_run(incident, source="cli", payload=payload, recorder=store.recorder, engine=engine)
    if run_id is None:  # a repeated incident id gets a new run on the stored incident
        run_id = uuid.uuid4().hex
        store.recorder.start_run(run_id, incident.id, engine, status="queued")
    with open_checkpointer(settings.database_url) as checkpointer:
        outcome = run_to_end(
            lambda: execute_run(run_id, recorder=store.recorder, context=context, checkpointer=checkpointer),
            lambda: resume_run(run_id, recorder=store.recorder, context=context, checkpointer=checkpointer),
            run_id,
            recorder=store.recorder,
            context=context,
            checkpointer=checkpointer,
            retry=settings.retry_policy(),
        )
    _show(outcome.as_dict(), args.json)
    return 0


def cmd_db_upgrade(_: argparse.Namespace) -> int:
    from api.settings import get_settings
    from api.wiring import open_store

    settings = get_settings()
    open_store(settings)
    print(f"database at {settings.database_url} is at the newest schema")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mitigate",
        description="Incident copilot for LLM serving platforms: classify by the rulebook taxonomy (A1-A4), "
        "plan a mitigation (M1-M6, Algorithm 1), act through guarded tools, verify the SLA.",
        epilog="Settings come from MITIGATE_* environment variables or .env (see README). "
        "Exit codes: 0 ok, 1 failure, 2 bad input or usage.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    triage = sub.add_parser("triage", help="triage one incident (JSON file, or - for stdin)")
    triage.add_argument("file", help="incident JSON file (see docs/datasets.md), or - to read stdin")
    triage.add_argument("--json", action="store_true", help="print one JSON object instead of a report")
    triage.add_argument("--engine", choices=["auto", "rulebook", "llm"], help="override MITIGATE_ENGINE")
    triage.set_defaults(func=cmd_triage)

    from api.runs_cli import add_run_commands

    add_run_commands(sub)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    upgrade = db_sub.add_parser("upgrade", help="apply schema migrations (also done on first use)")
    upgrade.set_defaults(func=cmd_db_upgrade)

    postmortems = sub.add_parser("postmortems", help="the index of past postmortems (docs/postmortems.md)")
    pm_sub = postmortems.add_subparsers(dest="pm_command", required=True, metavar="POSTMORTEMS_COMMAND")
    ingest = pm_sub.add_parser("ingest", help="add or update postmortems from a folder or file (idempotent)")
    ingest.add_argument("path", type=Path, help="a Markdown postmortem or a folder of them")
    ingest.set_defaults(func=cmd_postmortems_ingest)
    search = pm_sub.add_parser("search", help="hybrid (vector + BM25) search of the index")
    search.add_argument("text", help="what to look for")
    search.add_argument("-k", type=int, default=5, help="how many postmortems (default 5)")
    search.add_argument("--json", action="store_true", help="print a JSON list")
    search.set_defaults(func=cmd_postmortems_search)

    serve = sub.add_parser("serve", help="run the service: webhooks, REST, approvals, chat bots, /metrics, /dashboard")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.set_defaults(func=cmd_serve)

    demo = sub.add_parser(
        "demo",
        help="the closed loop on this machine: fault, alert, triage, action, SLA verified",
        description="Starts the local Kubernetes control plane, the simulated fleet, Prometheus, Alertmanager and "
        "mitigate serve; injects a fault and follows it to the end. Stops everything it started on exit.",
    )
    demo.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="timeout",
        help="the fault to inject (default timeout); cpu_hog: localisation picks the pod to restart",
    )
    demo.add_argument(
        "--all", action="store_true", help="every demo scenario in turn (all of --scenario's), and a table of their TTM"
    )
    demo.add_argument("--hold", action="store_true", help="keep everything (and the dashboard) up until Ctrl-C")
    demo.add_argument("--workdir", type=Path, default=Path(".mitigate/demo"), help="state of this run (wiped first)")
    demo.add_argument(
        "--offline", action="store_true", help="no cluster or Prometheus: triage examples/ and score paper156"
    )
    demo.set_defaults(func=cmd_demo)
    from evals.cli import add_eval_commands, add_report_commands
    from evals.rca_cli import add_rca_commands
    from learn.cli import add_model_commands
    from sim.cli import add_sim_commands

    add_eval_commands(sub)
    add_report_commands(sub)
    add_sim_commands(sub)
    add_rca_commands(sub)
    add_model_commands(sub)
    return parser


def cmd_postmortems_ingest(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from api.settings import get_settings
    from api.wiring import open_postmortem_index

    if not args.path.exists():
        return _fail(f"{args.path} does not exist")
    settings = get_settings()
    index = open_postmortem_index(settings.state_dir, settings.chroma_url)
    console = Console(stderr=True)
    with Progress(
        TextColumn("ingesting"), BarColumn(), MofNCompleteColumn(), console=console, transient=True
    ) as progress:
        task = progress.add_task("ingest", total=None)
        report = index.ingest(args.path, lambda done, total: progress.update(task, completed=done, total=total))
    print(
        f"added {len(report.added)}, updated {len(report.updated)}, unchanged {report.unchanged}, "
        f"failed {len(report.failed)}; {report.chunks} chunks written; {index.count()} postmortems indexed"
    )
    for _path, reason in report.failed:
        print(f"skipped: {reason}", file=sys.stderr)
    return 0


def cmd_postmortems_search(args: argparse.Namespace) -> int:
    from api.settings import get_settings
    from api.wiring import open_postmortem_index

    settings = get_settings()
    results = open_postmortem_index(settings.state_dir, settings.chroma_url).search(args.text, args.k)
    if args.json:
        print(json.dumps(results))
        return 0
    for r in results:
        print(
            f"{r['id']}  {r['score']:.4f}  {r['category']}/{r['subcategory']} fixed by {r['mitigation']}  "
            f"{r['title']}\n    [{r['section']}] {r['snippet'][:200]}"
        )
    if not results:
        print("no postmortems match (is the index empty? run: mitigate postmortems ingest PATH)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app

    # uvicorn handles SIGTERM/SIGINT gracefully: the lifespan stops the worker after runs in flight finish.
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=30)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    if args.offline:
        from api.demo_offline import run_offline_demo

        return run_offline_demo()
    from api.demo import run_demo

    return run_demo(list(SCENARIOS) if args.all else [args.scenario], args.hold, args.workdir)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
