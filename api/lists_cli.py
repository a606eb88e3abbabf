"""`mitigate incidents list|show`, `mitigate runs list`, `mitigate eval list`: finding things again.

Newest first; plain columns (pipe-friendly) or `--json`. Every id argument of the CLI may be a unique
prefix of the id (`api/lookup.py`).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from api.cli_errors import fail


def _sessions() -> Any:
    from api.settings import get_settings
    from api.wiring import open_store

    return open_store(get_settings()).sessions


def _short(value: Any, width: int) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _since(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO date or datetime: {text!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _page(fetch: Any, args: argparse.Namespace, **filters: Any) -> list[dict[str, Any]] | None:
    """Rows of one page; the next page's cursor goes to stderr so stdout stays the rows (pipe-friendly)."""
    from api.lookup import BadCursor

    try:
        page = fetch(_sessions(), since=args.since, cursor=args.cursor, limit=args.limit, **filters)
    except BadCursor as exc:
        fail(str(exc))
        return None
    if page.next_cursor:
        print(f"more: --cursor {page.next_cursor}", file=sys.stderr)
    return [_category(r) for r in page.rows]


def _print_rows(rows: list[dict[str, Any]], columns: list[tuple[str, str, int]], as_json: bool, empty: str) -> None:
    if as_json:
        print(json.dumps(rows, default=str))
        return
    if not rows:
        print(empty)
        return
    print("  ".join(title.ljust(width) for _, title, width in columns).rstrip())
    for row in rows:
        print("  ".join(_short(row.get(key), width).ljust(width) for key, _, width in columns).rstrip())


def _category(row: dict[str, Any]) -> dict[str, Any]:
    shown = f"{row['category']}/{row['subcategory']}" if row.get("category") else ""
    return row | {"class": shown, "when": str(row.get("received_at") or row.get("created_at") or "")[:19]}


def cmd_incidents_list(args: argparse.Namespace) -> int:
    from api.lookup import incidents_page

    rows = _page(incidents_page, args, status=args.status, search=args.search, source=args.source)
    if rows is None:
        return 2
    columns = [
        ("when", "received (UTC)", 19),
        ("id", "incident", 28),
        ("severity", "severity", 8),
        ("status", "status", 18),
        ("class", "category", 22),
        ("mitigation", "plan", 4),
        ("title", "title", 60),
    ]
    filtered = args.status or args.search or args.source or args.since or args.cursor
    _print_rows(rows, columns, args.json, "no incidents match" if filtered else "no incidents yet")
    return 0


def cmd_incidents_show(args: argparse.Namespace) -> int:
    from api.lookup import LookupFailed, resolve
    from store.incident_queries import IncidentQueries

    sessions = _sessions()
    try:
        incident_id = resolve(sessions, "incident", args.incident_id)
    except LookupFailed as exc:
        return fail(str(exc))
    timeline = IncidentQueries(sessions).timeline(incident_id)
    if timeline is None:
        return fail(f"no incident {args.incident_id}")
    if args.json:
        print(json.dumps(timeline, default=str))
        return 0
    print(f"{timeline['id']}: {timeline['title']}")
    print(f"  from {timeline['source']}, received {timeline['received_at'][:19]}, {timeline['status']}")
    for run in timeline["runs"]:
        report = run.get("report") or {}
        print(f"  run {run['id']}: {run['status']} {report.get('category', '')}/{report.get('subcategory', '')} ")
        for step in run["steps"]:
            print(f"    {step['at'][11:19]} {step['node']}: {step['summary']}")
        for check in run["sla_checks"]:
            print(f"    SLA {check['status']}: {check['details'].get('reason', '')}")
    return 0


def cmd_runs_list(args: argparse.Namespace) -> int:
    from api.lookup import runs_page

    rows = _page(runs_page, args, status=args.status, source=args.source)
    if rows is None:
        return 2
    columns = [
        ("when", "created (UTC)", 19),
        ("id", "run", 32),
        ("status", "status", 18),
        ("class", "category", 22),
        ("mitigation", "plan", 4),
        ("risk", "risk", 8),
        ("title", "incident", 50),
    ]
    filtered = args.status or args.source or args.since or args.cursor
    _print_rows(rows, columns, args.json, "no runs match" if filtered else "no runs yet")
    return 0


def cmd_eval_list(args: argparse.Namespace) -> int:
    from api.lookup import eval_runs_page

    rows = _page(eval_runs_page, args)
    if rows is None:
        return 2
    for row in rows:
        for key in ("category_accuracy", "mitigation_accuracy"):
            row[key] = f"{row[key]:.3f}" if isinstance(row[key], float) else row[key]
    columns = [
        ("when", "created (UTC)", 19),
        ("id", "eval run", 32),
        ("label", "label", 20),
        ("engine", "engine", 8),
        ("split", "split", 10),
        ("n", "n", 4),
        ("category_accuracy", "category", 8),
        ("mitigation_accuracy", "mitigation", 10),
        ("status", "status", 9),
    ]
    empty = "no eval runs yet: mitigate eval run --dataset evals/datasets/paper156.jsonl --label NAME"
    _print_rows(rows, columns, args.json, empty)
    return 0


def _listing(parser: Any, limit: int = 50) -> None:
    parser.add_argument("--limit", type=int, default=limit, help=f"at most this many, newest first (default {limit})")
    parser.add_argument("--since", type=_since, help="only those since this ISO date or time (UTC unless given)")
    parser.add_argument(
        "--cursor", help="the next page: the cursor the previous page printed on stderr (`more: --cursor ...`)"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list")


def add_list_commands(sub: Any) -> None:
    incidents = sub.add_parser("incidents", help="list incidents, show one's timeline")
    inc_sub = incidents.add_subparsers(dest="incidents_command", required=True, metavar="INCIDENTS_COMMAND")
    listing = inc_sub.add_parser("list", help="incidents newest first, with severity, status and category")
    listing.add_argument("--status", help="only this status (open, proposed, waiting, mitigated, escalated, ...)")
    listing.add_argument("--search", help="only incidents whose id, title or text contains this")
    listing.add_argument("--source", help="only incidents that came in this way (alertmanager, slack, cli, rest, ...)")
    _listing(listing)
    listing.set_defaults(func=cmd_incidents_list)
    show = inc_sub.add_parser("show", help="an incident's timeline: runs, steps, SLA checks")
    show.add_argument("incident_id", help="the id or a unique prefix of it")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_incidents_show)


def add_runs_list(runs_sub: Any) -> None:
    listing = runs_sub.add_parser("list", help="triage runs newest first")
    listing.add_argument("--status", help="only this status; `waiting`: the runs waiting for an approval")
    listing.add_argument("--source", help="only runs of incidents that came in this way (alertmanager, slack, ...)")
    _listing(listing)
    listing.set_defaults(func=cmd_runs_list)


def add_eval_list(eval_sub: Any) -> None:
    listing = eval_sub.add_parser("list", help="recorded eval runs newest first, with their headline figures")
    _listing(listing)
    listing.set_defaults(func=cmd_eval_list)
