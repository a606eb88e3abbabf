"""The `mitigate` command. Heavy libraries are imported inside the commands so --help stays fast."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from api.cli_errors import fail, masked_url, run_command

# The closed-loop demo's scenarios (sim/faults.py has them all); kept here so --help stays fast.
# cpu_hog is the RCA paper's self-stabilisation experiment: localisation picks the pod to restart.
SCENARIOS = (
    "timeout",
    "resource_exhaustion",
    "latency_spike",
    "transient",
    "bad_node",
    "header_misconfig",
    "cpu_hog",
    "bad_rollout",
)


def _read_source(source: str) -> tuple[str, str]:
    """The text of a file, of stdin (`-`), and the name to use for it in messages."""
    if source == "-":
        if sys.stdin.isatty():
            print("reading the incident from stdin (JSON, YAML or plain text; end with Ctrl-D)", file=sys.stderr)
        return sys.stdin.read(), "stdin"
    return Path(source).read_text(encoding="utf-8"), source


def _no_index_hint(settings: Any) -> None:
    from api.wiring import make_retriever

    if make_retriever(settings) is None:
        print(
            f"note: no postmortem index in {settings.state_dir}: triage cites no precedents. "
            "Index the shipped ones once with: mitigate postmortems ingest data/postmortems",
            file=sys.stderr,
        )


def cmd_triage(args: argparse.Namespace) -> int:
    import uuid

    from api.incident_input import IncidentInputError, parse_incident
    from api.run_faults import run_to_end
    from api.runs import create_run, execute_run, resume_run
    from api.runs_cli import _show
    from api.settings import get_settings
    from api.wiring import make_cluster, make_context, open_checkpointer, open_store

    try:
        text, name = _read_source(args.file)
        parsed = parse_incident(text, name)
    except (OSError, UnicodeDecodeError, IncidentInputError) as exc:
        return fail(str(exc))
    # Every check that can refuse comes before anything is stored.
    settings = get_settings()
    settings.model_copy(update={"engine": args.engine or settings.engine}).use_llm()
    make_cluster(settings)  # an unusable kubeconfig is refused here, not after the incident is stored
    incident, payload = parsed.incident, parsed.payload
    store = open_store(settings)
    context = make_context(settings, store.recorder, engine=args.engine)
    for note in parsed.notes:
        print(f"note: {note}", file=sys.stderr)
    _no_index_hint(settings)
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
    print(f"database at {masked_url(settings.database_url)} is at the newest schema")
    return 0


def cmd_db_prune(args: argparse.Namespace) -> int:
    from api.settings import get_settings
    from api.wiring import open_store
    from store.retention import parse_duration, prune, vacuum

    try:
        older_than = parse_duration(args.older_than)
    except ValueError as exc:
        return fail(str(exc))
    store = open_store(get_settings())
    print(prune(store.engine, older_than).describe())
    if args.vacuum:
        vacuum(store.engine)
        print("vacuumed: the freed space is back with the file system")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mitigate",
        description="Incident copilot for LLM serving platforms: classify by the rulebook taxonomy (A1-A4), "
        "plan a mitigation (M1-M6, Algorithm 1), act through guarded tools, verify the SLA.",
        epilog="First day: `mitigate postmortems ingest data/postmortems`, then `mitigate triage FILE`; find "
        "things again with `mitigate incidents list`, `runs list --status waiting`, `eval list` (ids may be "
        "shortened to a unique prefix). Settings come from MITIGATE_* environment variables or .env (README, "
        "Configuration); state lives in MITIGATE_STATE_DIR (default ~/.local/state/mitigate). "
        "Exit codes: 0 ok, 1 failure, 2 bad input or usage.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from api.lists_cli import add_list_commands

    add_list_commands(sub)

    triage = sub.add_parser(
        "triage",
        help="triage one incident: JSON, YAML, an Alertmanager payload or plain text, from a file or stdin",
        description="Triage one incident. The input may be an incident as JSON or YAML (docs/datasets.md), an "
        "Alertmanager webhook payload, or plain text (the first line is the title). Without an id one is made.",
    )
    triage.add_argument("file", help="the incident file, or - to read stdin")
    triage.add_argument("--json", action="store_true", help="print one JSON object instead of a report")
    triage.add_argument("--engine", choices=["auto", "rulebook", "llm"], help="override MITIGATE_ENGINE")
    triage.set_defaults(func=cmd_triage)

    from api.runs_cli import add_run_commands

    add_run_commands(sub)

    from api.ask_cli import add_ask_command

    add_ask_command(sub)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    upgrade = db_sub.add_parser("upgrade", help="apply schema migrations (also done on first use)")
    upgrade.set_defaults(func=cmd_db_upgrade)
    prune = db_sub.add_parser(
        "prune",
        help="delete checkpoints and step rows of runs finished longer ago than a duration (keeps the audit trail)",
        description="Delete the LangGraph checkpoints and per-node step rows of runs finished (not queued, running, "
        "retrying or waiting for an approval) before now minus --older-than. Incidents, run reports, actions, "
        "approvals, approval attempts and SLA checks are kept. A pruned run can no longer be retried from where "
        "it stopped. `mitigate serve` does this hourly (MITIGATE_PRUNE_AFTER_DAYS).",
    )
    prune.add_argument("--older-than", required=True, help="a duration: 30d, 12h, 2w, 90m, 3600s")
    prune.add_argument("--vacuum", action="store_true", help="then give the space back to the file system")
    prune.set_defaults(func=cmd_db_prune)

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
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="PostgreSQL: serve HTTP only and leave runs to `mitigate worker` processes (MITIGATE_SERVE_WORKER=false)",
    )
    serve.set_defaults(func=cmd_serve)
    from api.worker_cli import add_worker_command

    add_worker_command(sub)

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
    demo.add_argument(
        "--hold",
        action="store_true",
        help="after the scenarios, keep the fleet, Prometheus and the dashboard up to look around, until Ctrl-C",
    )
    demo.add_argument(
        "--workdir", type=Path, help="state of this run, wiped first (default: demo/ in MITIGATE_STATE_DIR)"
    )
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
    from api.progress import Progress
    from api.settings import get_settings
    from api.wiring import open_postmortem_index

    if not args.path.exists():
        return fail(f"{args.path} does not exist")
    settings = get_settings()
    index = open_postmortem_index(settings.state_dir, settings.chroma_url)
    with Progress("ingesting postmortems") as progress:
        report = index.ingest(args.path, progress.update)
    where = settings.chroma_url or settings.state_dir
    print(
        f"added {len(report.added)}, updated {len(report.updated)}, unchanged {report.unchanged}, "
        f"failed {len(report.failed)}; {report.chunks} chunks written; {index.count()} postmortems indexed in {where}"
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
        print(
            f"no postmortems match; the index in {settings.state_dir} may be empty: "
            "mitigate postmortems ingest data/postmortems"
        )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from api.settings import get_settings
    from api.wiring import make_cluster, open_store

    settings = get_settings()  # a wrong setting, an unreachable database: a message now, not a traceback later
    if args.no_worker:
        settings = settings.model_copy(update={"serve_worker": False})
    make_cluster(settings)
    open_store(settings)
    # uvicorn handles SIGTERM/SIGINT gracefully: the lifespan stops the worker after runs in flight finish.
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=30)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    if args.offline:
        from api.demo_offline import run_offline_demo

        return run_offline_demo()
    from api.demo import run_demo
    from api.settings import get_settings

    workdir = args.workdir or get_settings().state_dir / "demo"
    return run_demo(list(SCENARIOS) if args.all else [args.scenario], args.hold, workdir)


def main(argv: list[str] | None = None) -> int:
    from tools.no_phone_home import quiet

    quiet()  # before any library that could call home is imported
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv:  # bare `mitigate`: what it can do, not "the following arguments are required"
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
