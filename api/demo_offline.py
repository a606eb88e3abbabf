"""`mitigate demo --offline`: triage the example incidents into the local store, then score the labeled
dataset. Runs with no LLM, no cluster and no Prometheus configured, and says so in every report."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent  # the repository: the demo works from any directory
EXAMPLES = ROOT / "examples"
POSTMORTEMS = ROOT / "data" / "postmortems"
DATASET = ROOT / "evals" / "datasets" / "paper156.jsonl"


def run_offline_demo() -> int:
    from api.cli_errors import masked_url
    from api.incident_input import parse_incident
    from api.runs import start_run
    from api.settings import get_settings
    from api.wiring import make_context, open_checkpointer, open_store
    from evals.run import run_eval

    console = Console()
    settings = get_settings()
    store = open_store(settings)
    if POSTMORTEMS.is_dir():
        from api.wiring import open_postmortem_index

        with console.status(f"indexing {POSTMORTEMS} (first run only; later runs skip unchanged files)"):
            ingested = open_postmortem_index(settings.state_dir, settings.chroma_url).ingest(POSTMORTEMS)
        console.print(
            f"postmortems: {len(ingested.added)} added, {ingested.unchanged} unchanged, {len(ingested.failed)} failed"
        )
    context = make_context(settings, store.recorder)
    table = Table(title=f"Triage of {EXAMPLES}/ (store: {masked_url(settings.database_url)})")
    for column in ("incident", "class", "conf", "plan", "status", "what was not done"):
        table.add_column(column, overflow="fold")
    files = sorted(EXAMPLES.glob("*.json"))
    if not files:
        console.print(f"no example incidents in {EXAMPLES.resolve()}; its examples/ folder is missing")
        return 2
    with open_checkpointer(settings.database_url) as checkpointer:
        for path in files:
            parsed = parse_incident(path.read_text(encoding="utf-8"), str(path))
            outcome = start_run(
                parsed.incident,
                source="demo",
                payload=parsed.payload,
                recorder=store.recorder,
                context=context,
                checkpointer=checkpointer,
            )
            report = outcome.report or {}
            plan = report.get("plan", {})
            table.add_row(
                path.stem,
                f"{report.get('category')}/{report.get('subcategory')}",
                f"{report.get('confidence', 0):.2f}",
                f"{plan.get('mitigation')} {plan.get('operation')}",
                outcome.status,
                "; ".join(report.get("notes", [])),
            )
    console.print(table)
    if DATASET.exists():
        console.print(f"\nScoring the rulebook engine on {DATASET} (test half):")
        args = argparse.Namespace(
            dataset=DATASET,
            split="test",
            engine="rulebook",
            label="demo",
            json=False,
            cases=False,
            no_store=False,
            model=None,
            base_url=None,
            concurrency=1,
            resume=None,
            no_retrieval=False,
            limit=None,
        )
        return run_eval(args)
    return 0
