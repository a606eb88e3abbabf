"""`mitigate approve|reject|resume`, `mitigate runs show|retry`, `mitigate approvers token`.

Approving from the CLI is a person approving: the token in MITIGATE_APPROVER_TOKEN (or --token-file)
must be one person's own token from the approvers file; there is no `--by NAME`.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import Any

from api.cli_errors import fail as _fail

BUSY = "run {run_id} is being executed by a worker right now; try again when it is not (mitigate runs show {run_id})"


def _resolve_run(store: Any, given: str) -> str:
    """The full run id from an id or a unique prefix (`LookupFailed` otherwise)."""
    from api.lookup import resolve

    return resolve(store.sessions, "run", given)


def _show(outcome: dict[str, Any], as_json: bool) -> None:
    from api.render import print_report

    if as_json:
        report = outcome["report"]
        body = report if report is not None and outcome["status"] != "awaiting_approval" else None
        if body is None:  # a paused run: what it waits on, with its category, plan, risk and dry run
            waiting = outcome.get("waiting_for") or {}
            body = {**(waiting.get("summary") or {}), "run_id": outcome["run_id"], "status": outcome["status"]}
            body["waiting_for"] = waiting
        print(json.dumps(body, default=str))
    else:
        print_report(outcome)


def _token(args: argparse.Namespace) -> str:
    if getattr(args, "token_file", None):
        return Path(args.token_file).read_text(encoding="utf-8").strip()
    return os.environ.get("MITIGATE_APPROVER_TOKEN", "")


def cmd_decide(args: argparse.Namespace) -> int:
    """Approve or reject through the same checks and audit as every other door, then resume here."""
    from api.approvals_flow import Identity, audit_refusal, decide
    from api.lookup import LookupFailed
    from api.runs import NotWaiting, resume_run
    from api.settings import get_settings
    from api.wiring import make_approvers, make_context, open_checkpointer, open_store

    settings = get_settings()
    store = open_store(settings)
    try:
        args.run_id = _resolve_run(store, args.run_id)
    except LookupFailed as exc:
        return _fail(str(exc))
    context = make_context(settings, store.recorder)
    approvers = make_approvers(settings)
    person = approvers.by_token(_token(args))
    where = f"cli:{getpass.getuser()}@{socket.gethostname()}"
    identity = Identity(person.id if person else None, "cli", person.id if person else "", where)
    approved = args.command == "approve"
    run = store.recorder.run(args.run_id) or {}
    message = ""
    if run.get("status") != "awaiting_approval":
        message = (
            f"run {args.run_id} is {run.get('status')}, not waiting for an approval: nothing to "
            f"{args.command} (mitigate runs list --status waiting)"
        )
    elif person is None:
        message = "set MITIGATE_APPROVER_TOKEN (or --token-file) to your own token from the approvers file"
    elif approved and (context.cluster is None or context.propose_only):
        # A run resumed here without a cluster would record the plan as a proposal and drop the answer.
        message = (
            "this CLI cannot act on a cluster (MITIGATE_KUBECONFIG unset or propose-only): "
            "approve where the run can act"
        )
    if message:
        audit_refusal(store.recorder, args.run_id, identity, approved, message, args.reason or "")
        return _fail(message)
    answers: list[dict[str, Any]] = []
    result = decide(
        recorder=store.recorder,
        approvers=approvers,
        approval_ttl_s=context.policy.approval_ttl_seconds,
        submit=lambda _run, answer: answers.append(answer),
        run_id=args.run_id,
        identity=identity,
        approved=approved,
        reason=args.reason or "",
    )
    if not answers:
        return _fail(result.message)
    from api.pg_queue import exclusive_run

    with exclusive_run(settings.database_url, args.run_id) as held, open_checkpointer(settings.database_url) as cp:
        if not held:
            return _fail(BUSY.format(run_id=args.run_id))
        try:
            outcome = resume_run(
                args.run_id, recorder=store.recorder, context=context, checkpointer=cp, answer=answers[0]
            )
        except NotWaiting as exc:
            return _fail(str(exc))
    print(result.message, file=sys.stderr)
    _show(outcome.as_dict(), args.json)
    return 0


def cmd_resume(args: argparse.Namespace, *, retry: bool = False) -> int:
    """Continue a run from its checkpoint; `runs retry` also starts its fault attempts afresh."""
    from api.lookup import LookupFailed
    from api.run_faults import run_to_end
    from api.runs import resume_run
    from api.settings import get_settings
    from api.wiring import make_context, open_checkpointer, open_store

    settings = get_settings()
    store = open_store(settings)
    try:
        args.run_id = _resolve_run(store, args.run_id)
    except LookupFailed as exc:
        return _fail(str(exc))
    if retry:
        store.recorder.set_run_retry(args.run_id, 0, None)
    context = make_context(settings, store.recorder)
    from api.pg_queue import exclusive_run

    with (
        exclusive_run(settings.database_url, args.run_id) as held,
        open_checkpointer(settings.database_url) as checkpointer,
    ):
        if not held:
            return _fail(BUSY.format(run_id=args.run_id))

        def attempt() -> Any:
            return resume_run(args.run_id, recorder=store.recorder, context=context, checkpointer=checkpointer)

        try:
            outcome = run_to_end(
                attempt,
                attempt,
                args.run_id,
                recorder=store.recorder,
                context=context,
                checkpointer=checkpointer,
                retry=settings.retry_policy(),
            )
        except LookupError as exc:
            return _fail(str(exc))
    _show(outcome.as_dict(), args.json)
    return 0


def cmd_runs_show(args: argparse.Namespace) -> int:
    from api.lookup import LookupFailed
    from api.settings import get_settings
    from api.wiring import open_store

    store = open_store(get_settings())
    try:
        run = store.recorder.run(_resolve_run(store, args.run_id))
    except LookupFailed as exc:
        return _fail(str(exc))
    if run is None:
        return _fail(f"no run {args.run_id}")
    if args.json:
        print(json.dumps(run, default=str))
        return 0
    report = run["report"] or {}
    plan = report.get("plan") or {}
    print(f"run {run['id']} ({run['incident_id']}): {run['status']}, attempts {run['attempts']}")
    operation, risk = plan.get("operation"), report.get("risk")
    print(f"  {run['category']}/{run['subcategory']} -> {run['mitigation']} {operation} risk {risk}")
    if report.get("dry_run"):
        print(f"  dry run: {report['dry_run'].get('status')}: {report['dry_run'].get('reason')}")
    for step in run["steps"]:
        print(f"  {step['node']}: {step['summary']}")
    return 0


def cmd_approver_token(_: argparse.Namespace) -> int:
    """A new personal token (shown once, give it to its owner) and the hash for the approvers file."""
    from tools.approvers import token_hash

    token = secrets.token_urlsafe(32)
    print(f"token (give to its owner, store nowhere else): {token}")
    print(f"token_sha256 (for the approvers file): {token_hash(token)}")
    return 0


def add_run_commands(sub: Any) -> None:
    for name, text in (
        ("approve", "approve the action a paused run is waiting for (as the owner of MITIGATE_APPROVER_TOKEN)"),
        ("reject", "reject the action a paused run is waiting for (as the owner of MITIGATE_APPROVER_TOKEN)"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("run_id", help="the run id or a unique prefix of it")
        p.add_argument("--reason", help="why (required to approve a deletion)")
        p.add_argument("--token-file", type=Path, help="read your personal token from this file")
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=cmd_decide)
    resume = sub.add_parser("resume", help="continue a run from its last checkpoint (after a crash or restart)")
    resume.add_argument("run_id", help="the run id or a unique prefix of it")
    resume.add_argument("--json", action="store_true")
    resume.set_defaults(func=cmd_resume)

    runs = sub.add_parser("runs", help="list, inspect and retry runs")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True, metavar="RUNS_COMMAND")
    from api.lists_cli import add_runs_list

    add_runs_list(runs_sub)
    show = runs_sub.add_parser("show", help="a run's status, category, plan, risk, dry run and steps")
    show.add_argument("run_id", help="the run id or a unique prefix of it")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_runs_show)
    retry = runs_sub.add_parser(
        "retry", help="run again a run that a dependency fault escalated, from the step that failed"
    )
    retry.add_argument("run_id", help="the run id or a unique prefix of it")
    retry.add_argument("--json", action="store_true")
    retry.set_defaults(func=lambda args: cmd_resume(args, retry=True))

    approvers = sub.add_parser("approvers", help="the approvers file (tools/approvers.py)")
    approvers_sub = approvers.add_subparsers(dest="approvers_command", required=True, metavar="APPROVERS_COMMAND")
    token = approvers_sub.add_parser("token", help="make a personal API token and the hash to put in the file")
    token.set_defaults(func=cmd_approver_token)
